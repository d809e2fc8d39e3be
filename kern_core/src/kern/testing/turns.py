"""A turn is one atomic write: the conformance cases of ``commit_turn``.

``TurnScenarios`` is a mixin of the conformance suite's scenarios (``kern.testing.conformance``),
run like the others against ``store`` in the sync and the async suite of every backend. It
holds each backend to the docstring of ``BaseDb.commit_turn``:

- the run and the session's new state are stored together, or neither is: a version conflict
  stores no run, and a run that cannot be stored (its id belongs to another session's run)
  leaves the session as it was;
- a new session is created with its first run (``expected_version=None``);
- a retry with a stored ``run_id`` writes nothing and returns what is stored;
- turns committed at once on one session, mixed with plain appends, get distinct ``seq``
  values, and the state counts exactly the committed turns.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from kern.errors import VersionConflictError
from kern.records import Memory, Message, Run, Session
from kern.testing.capabilities import requires

if TYPE_CHECKING:  # at run time, a cycle: kern.testing.conformance imports this module
    from kern.testing.conformance.base import Store

__all__ = ["Awaiting", "TurnScenarios", "a_turn", "fault_between_halves"]


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _seq(run: Run) -> int:
    """A stored run's ``seq``, which the contract assigns to every run it stores."""
    assert run.seq is not None, f"a stored run without seq: {run!r}"
    return run.seq


def _run(session_id: str, text: str, user_id: str | None = None) -> Run:
    return Run(
        session_id=session_id,
        user_id=user_id,
        input=text,
        messages=[Message(role="user", content=text), Message(role="assistant", content="ok")],
        output="ok",
    )


def _numbered(session_id: str, i: int, **fields: Any) -> Run:
    return Run(
        session_id=session_id,
        input=f"question {i}",
        messages=[Message(role="user", content=f"question {i}")],
        **fields,
    )


class TurnScenarios:
    """``commit_turn`` scenarios, mixed into ``kern.testing.conformance``'s scenarios."""

    async def _concurrently(self, calls: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
        raise NotImplementedError  # provided by each suite (threads or tasks)

    async def test_commit_turn_creates_the_session_with_its_first_run(self, store: Store) -> None:
        sid, user = _uid("s"), _uid("u")
        session = Session(session_id=sid, user_id=user, state={"turns": 1})
        run, stored = await store.commit_turn(
            _run(sid, "hello", user), session, expected_version=None
        )
        assert run.seq == 1 and stored.version == 1 and stored.state == {"turns": 1}
        assert await store.get_session(sid) == stored
        assert await store.get_run(run.run_id) == run
        assert [r.run_id for r in await store.get_last_runs(sid, 5)] == [run.run_id]

    async def test_commit_turn_writes_state_and_run_together(self, store: Store) -> None:
        sid = _uid("s")
        first, v1 = await store.commit_turn(
            _run(sid, "one"), Session(session_id=sid, state={"turns": 1}), expected_version=None
        )
        second, v2 = await store.commit_turn(
            _run(sid, "two"), v1.model_copy(update={"state": {"turns": 2}}), expected_version=1
        )
        assert (first.seq, second.seq) == (1, 2)
        assert v2.version == 2 and v2.created_at == v1.created_at
        assert v2.updated_at >= v1.updated_at
        stored = await store.get_session(sid)
        assert stored is not None
        assert stored.state == {"turns": 2} and stored.version == 2
        assert [r.input for r in await store.get_last_runs(sid, 5)] == ["one", "two"]

    async def test_a_version_conflict_stores_no_run(self, store: Store) -> None:
        sid = _uid("s")
        _, v1 = await store.commit_turn(
            _run(sid, "one"), Session(session_id=sid, state={"n": 1}), expected_version=None
        )
        await store.upsert_session(v1.model_copy(update={"state": {"n": 50}}), expected_version=1)
        stale = _run(sid, "stale")
        with pytest.raises(VersionConflictError):
            await store.commit_turn(
                stale, v1.model_copy(update={"state": {"n": 2}}), expected_version=1
            )
        assert await store.get_run(stale.run_id) is None
        assert [r.input for r in await store.get_last_runs(sid, 5)] == ["one"]
        session = await store.get_session(sid)
        assert session is not None and session.state == {"n": 50}

        # Creating a session that exists is a conflict too, and stores no run.
        racing = _run(sid, "racing")
        with pytest.raises(VersionConflictError):
            await store.commit_turn(racing, Session(session_id=sid), expected_version=None)
        assert await store.get_run(racing.run_id) is None

    async def test_a_run_that_cannot_be_stored_leaves_the_session_as_it_was(
        self, store: Store
    ) -> None:
        """The second half fails (the run id belongs to another session's run): the
        session write of the same commit is undone."""
        other, sid = _uid("other"), _uid("s")
        taken = await store.append_run(_run(other, "theirs"))
        _, v1 = await store.commit_turn(
            _run(sid, "one"), Session(session_id=sid, state={"n": 1}), expected_version=None
        )
        clash = _run(sid, "clash").model_copy(update={"run_id": taken.run_id})
        with pytest.raises(ValueError):
            await store.commit_turn(
                clash, v1.model_copy(update={"state": {"n": 2}}), expected_version=1
            )
        assert await store.get_session(sid) == v1
        assert [r.input for r in await store.get_last_runs(sid, 5)] == ["one"]
        assert await store.get_run(taken.run_id) == taken

        new_sid = _uid("s")
        with pytest.raises(ValueError):
            await store.commit_turn(
                clash.model_copy(update={"session_id": new_sid}),
                Session(session_id=new_sid, state={"n": 1}),
                expected_version=None,
            )
        assert await store.get_session(new_sid) is None

    async def test_a_retried_commit_stores_nothing_twice(self, store: Store) -> None:
        sid = _uid("s")
        turn = _run(sid, "once")
        run, stored = await store.commit_turn(
            turn, Session(session_id=sid, state={"n": 1}), expected_version=None
        )
        again, session = await store.commit_turn(
            turn, Session(session_id=sid, state={"n": 1}), expected_version=None
        )
        assert again == run and session == stored
        later, v2 = await store.commit_turn(
            _run(sid, "next"), stored.model_copy(update={"state": {"n": 2}}), expected_version=1
        )
        retry, current = await store.commit_turn(  # the reply of "next" was lost: retry it
            later.model_copy(update={"seq": None}),
            stored.model_copy(update={"state": {"n": 2}}),
            expected_version=1,
        )
        assert retry == later and current == v2
        assert [r.input for r in await store.get_last_runs(sid, 5)] == ["once", "next"]
        latest = await store.get_session(sid)
        assert latest is not None and latest.version == 2

    @requires("concurrent_use")
    async def test_commits_and_appends_at_once_keep_seq_and_state_exact(self, store: Store) -> None:
        sid = _uid("s")
        await store.commit_turn(
            _run(sid, "start"), Session(session_id=sid, state={"turns": 1}), expected_version=None
        )

        async def commit_one(index: int) -> None:
            while True:  # what the Agent's caller does with a conflict: read, re-apply, retry
                current = await store.get_session(sid)
                assert current is not None
                turns = current.state["turns"]
                assert isinstance(turns, int)
                state = {"turns": turns + 1}
                try:
                    await store.commit_turn(
                        _run(sid, f"turn {index}"),
                        current.model_copy(update={"state": state}),
                        expected_version=current.version,
                    )
                    return
                except VersionConflictError:
                    continue

        async def append_one(index: int) -> None:
            await store.append_run(_run(sid, f"append {index}"))

        calls: list[Callable[[], Awaitable[Any]]] = []
        for index in range(8):
            calls.append(functools.partial(commit_one, index))
            calls.append(functools.partial(append_one, index))
        await self._concurrently(calls)

        runs = await store.get_last_runs(sid, 100)
        assert sorted(_seq(r) for r in runs) == list(range(1, 18))
        session = await store.get_session(sid)
        assert session is not None and session.state == {"turns": 9}
        inputs = [r.input for r in runs if isinstance(r.input, str)]
        assert len(inputs) == len(runs)  # every run's input is the text it was stored with
        assert sum(text.startswith(("turn", "start")) for text in inputs) == 9


# -- a fault between the two halves, for backends with a seam to inject it -----------------
class Awaiting:
    """A sync db whose methods can be awaited, so one scenario serves both classes."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.db, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call


def injected(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected: after the session write, before the commit")


async def fault_between_halves(
    store: Store, seam: Any, attribute: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``commit_turn`` with a fault injected between its two halves: ``seam.<attribute>``
    (the backend's step that stores the run, after the session was written) raises. For a
    backend with such a seam (kern-sql's ``SqlOps.store_run``): neither half is stored, on
    create and on update; then conflicts, retries with any version, a run id of another
    session and a run stamped later than now behave as the contract says."""
    sid = f"s-{uuid.uuid4().hex[:8]}"
    first = _numbered(sid, 0)
    new = Session(session_id=sid, user_id="u", state={"n": 1})

    # a fault after the session was written (creating it) leaves neither
    monkeypatch.setattr(seam, attribute, injected)
    with pytest.raises(RuntimeError, match="injected"):
        await store.commit_turn(first, new, expected_version=None)
    assert await store.get_session(sid) is None
    assert await store.get_run(first.run_id) is None
    monkeypatch.undo()

    run, session = await store.commit_turn(first, new, expected_version=None)
    assert (run.seq, session.version, session.state) == (1, 1, {"n": 1})
    assert await store.get_run(first.run_id) == run
    assert await store.get_session(sid) == session

    # ... and updating it
    second = _numbered(sid, 1)
    changed = session.model_copy(update={"state": {"n": 2}})
    monkeypatch.setattr(seam, attribute, injected)
    with pytest.raises(RuntimeError, match="injected"):
        await store.commit_turn(second, changed, expected_version=1)
    monkeypatch.undo()
    assert await store.get_session(sid) == session
    assert await store.get_run(second.run_id) is None

    # a version conflict stores no run
    with pytest.raises(VersionConflictError):
        await store.commit_turn(second, changed, expected_version=7)
    with pytest.raises(VersionConflictError):
        await store.commit_turn(second, changed, expected_version=None)
    assert await store.get_run(second.run_id) is None
    assert await store.get_session(sid) == session

    run2, session2 = await store.commit_turn(second, changed, expected_version=1)
    assert (run2.seq, session2.version, session2.state) == (2, 2, {"n": 2})
    assert session2.created_at == session.created_at

    # a retry (same run_id, whatever version or state it carries) returns what is stored
    for expected in (1, None, 2):
        retried = changed.model_copy(update={"state": {"n": 99}})
        assert await store.commit_turn(second, retried, expected_version=expected) == (
            run2,
            session2,
        )
    assert await store.get_last_runs(sid, 10) == [run, run2]
    assert await store.get_session(sid) == session2

    # a run_id stored in another session: ValueError, this session untouched
    other_sid = f"o-{uuid.uuid4().hex[:8]}"
    other = await store.upsert_session(Session(session_id=other_sid), expected_version=None)
    stolen = Run(run_id=second.run_id, session_id=other_sid, input="x")
    with pytest.raises(ValueError, match="already stored"):
        await store.commit_turn(
            stolen, other.model_copy(update={"state": {"x": 1}}), expected_version=1
        )
    assert await store.get_session(other_sid) == other
    assert await store.get_last_runs(other_sid, 10) == []
    with pytest.raises(ValueError, match="belongs to the session"):
        await store.commit_turn(_numbered(other_sid, 0), session2, expected_version=2)

    # a run stamped later than now moves the session's updated_at to it, as append_run does
    later = _numbered(sid, 2, created_at=datetime.now(UTC) + timedelta(hours=1))
    run3, session3 = await store.commit_turn(later, session2, expected_version=2)
    assert session3.updated_at == later.created_at
    assert await store.get_session(sid) == session3
    assert await store.get_run(later.run_id) == run3


def a_turn(db: Any, sid: str, **history: Any) -> None:
    """What an agent turn does, on a sync db: state, a run, history (read with
    ``get_last_runs(..., **history)``), recall. The SQL backends' schema-repair tests check a
    repaired database with it."""
    session = db.upsert_session(Session(session_id=sid, user_id="u"), expected_version=None)
    db.upsert_memory(Memory(user_id="u", content=f"likes hiking {sid}"))
    run = db.append_run(_numbered(sid, 0))
    db.commit_turn(
        _numbered(sid, 1), session.model_copy(update={"state": {"k": 1}}), expected_version=1
    )
    runs = db.get_last_runs(sid, 10, **history)
    assert [r.seq for r in runs] == [1, 2] and runs[0].run_id == run.run_id
    assert db.search_memories("u", f"hiking {sid}")
