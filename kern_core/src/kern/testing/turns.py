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

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from kern.errors import VersionConflictError
from kern.records import Message, Run, Session

__all__ = ["TurnScenarios"]


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _run(session_id: str, text: str, user_id: str | None = None) -> Run:
    return Run(
        session_id=session_id,
        user_id=user_id,
        input=text,
        messages=[Message(role="user", content=text), Message(role="assistant", content="ok")],
        output="ok",
    )


class TurnScenarios:
    """``commit_turn`` scenarios, mixed into ``kern.testing.conformance._Scenarios``."""

    async def _concurrently(self, calls: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
        raise NotImplementedError  # provided by each suite (threads or tasks)

    async def test_commit_turn_creates_the_session_with_its_first_run(self, store: Any) -> None:
        sid, user = _uid("s"), _uid("u")
        session = Session(session_id=sid, user_id=user, state={"turns": 1})
        run, stored = await store.commit_turn(
            _run(sid, "hello", user), session, expected_version=None
        )
        assert run.seq == 1 and stored.version == 1 and stored.state == {"turns": 1}
        assert await store.get_session(sid) == stored
        assert await store.get_run(run.run_id) == run
        assert [r.run_id for r in await store.get_last_runs(sid, 5)] == [run.run_id]

    async def test_commit_turn_writes_state_and_run_together(self, store: Any) -> None:
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
        assert stored.state == {"turns": 2} and stored.version == 2
        assert [r.input for r in await store.get_last_runs(sid, 5)] == ["one", "two"]

    async def test_a_version_conflict_stores_no_run(self, store: Any) -> None:
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
        assert (await store.get_session(sid)).state == {"n": 50}

        # Creating a session that exists is a conflict too, and stores no run.
        racing = _run(sid, "racing")
        with pytest.raises(VersionConflictError):
            await store.commit_turn(racing, Session(session_id=sid), expected_version=None)
        assert await store.get_run(racing.run_id) is None

    async def test_a_run_that_cannot_be_stored_leaves_the_session_as_it_was(
        self, store: Any
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

    async def test_a_retried_commit_stores_nothing_twice(self, store: Any) -> None:
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
        assert (await store.get_session(sid)).version == 2

    async def test_commits_and_appends_at_once_keep_seq_and_state_exact(self, store: Any) -> None:
        sid = _uid("s")
        await store.commit_turn(
            _run(sid, "start"), Session(session_id=sid, state={"turns": 1}), expected_version=None
        )

        async def commit_one(index: int) -> None:
            while True:  # what the Agent's caller does with a conflict: read, re-apply, retry
                current = await store.get_session(sid)
                state = {"turns": current.state["turns"] + 1}
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
            calls.append(lambda i=index: commit_one(i))
            calls.append(lambda i=index: append_one(i))
        await self._concurrently(calls)

        runs = await store.get_last_runs(sid, 100)
        assert sorted(r.seq for r in runs) == list(range(1, 18))
        assert (await store.get_session(sid)).state == {"turns": 9}
        assert sum(r.input.startswith(("turn", "start")) for r in runs) == 9
