"""Forking a session: ``fork_session(session_id, *, at_seq, new_session_id)``.

What the Agent's "continue from an earlier turn" relies on, on every backend: the fork's
history is the source's runs up to the fork point, with their seqs, under new run ids
(``<new_session_id>:<seq>``), and nothing after it; the next turn of the fork continues at
``at_seq + 1``; the source is left as it was; the fork belongs to the source's user, has the
state the fork point's run recorded (else the source's current state) and names its parent.
Refusals write nothing.
"""

from __future__ import annotations

import pytest

from kern.db.fork import FORKED_FROM, STATE_KEY, fork_run_id
from kern.errors import ForkError, InvalidIdError, SessionNotFoundError
from kern.records import Run, Session
from kern.testing.conformance.base import ScenarioBase, Store
from kern.testing.conformance.common import _turn, _uid

__all__ = ["ForkScenarios"]


async def _session_with_turns(
    store: Store, turns: int, *, states: bool = True
) -> tuple[Session, list[Run]]:
    """A user's session of ``turns`` turns; with ``states``, each run records the state it
    left (``{"turn": i}``), as the Agent does."""
    user = _uid("u")
    session = await store.upsert_session(
        Session(session_id=_uid("s"), user_id=user, state={"turn": 0}, summary="all of it"),
        expected_version=None,
    )
    runs = []
    for i in range(1, turns + 1):
        metrics = {STATE_KEY: {"turn": i}} if states else {}
        run = _turn(session.session_id, i, user, metrics=metrics)
        stored, session = await store.commit_turn(
            run,
            session.model_copy(update={"state": {"turn": i}}),
            expected_version=session.version,
        )
        runs.append(stored)
    return session, runs


class ForkScenarios(ScenarioBase):
    """``fork_session``."""

    async def test_the_fork_holds_the_runs_up_to_the_fork_point(self, store: Store) -> None:
        source, runs = await _session_with_turns(store, 5)
        new_id = _uid("fork")

        fork = await store.fork_session(source.session_id, at_seq=3, new_session_id=new_id)

        assert fork.session_id == new_id and fork.user_id == source.user_id
        assert fork == await store.get_session(new_id)
        assert fork.metadata[FORKED_FROM] == {
            "session_id": source.session_id,
            "seq": 3,
            "state": "run",
        }
        assert fork.state == {"turn": 3} and fork.summary is None
        copied = await store.get_last_runs(new_id, 10)
        assert [r.seq for r in copied] == [1, 2, 3]
        assert [r.run_id for r in copied] == [fork_run_id(new_id, i) for i in (1, 2, 3)]
        assert [r.input for r in copied] == [r.input for r in runs[:3]]
        assert [r.messages for r in copied] == [r.messages for r in runs[:3]]
        assert all(r.session_id == new_id and r.user_id == source.user_id for r in copied)
        assert await store.get_run(fork_run_id(new_id, 2)) == copied[1]

    async def test_the_source_is_left_as_it_was(self, store: Store) -> None:
        source, runs = await _session_with_turns(store, 4)
        await store.fork_session(source.session_id, at_seq=2, new_session_id=_uid("fork"))
        assert await store.get_session(source.session_id) == source
        assert await store.get_last_runs(source.session_id, 10) == runs

    async def test_the_forks_next_turn_continues_after_the_fork_point(self, store: Store) -> None:
        source, _ = await _session_with_turns(store, 5)
        new_id = _uid("fork")
        fork = await store.fork_session(source.session_id, at_seq=2, new_session_id=new_id)

        run, _ = await store.commit_turn(
            _turn(new_id, 99, source.user_id), fork, expected_version=fork.version
        )

        assert run.seq == 3
        assert [r.input for r in await store.get_last_runs(new_id, 10)] == [
            "question 1",
            "question 2",
            "question 99",
        ]
        assert [r.seq for r in await store.get_last_runs(source.session_id, 10)] == [
            1,
            2,
            3,
            4,
            5,
        ]

    async def test_a_fork_at_the_last_run_copies_every_run(self, store: Store) -> None:
        source, runs = await _session_with_turns(store, 3)
        new_id = _uid("fork")
        await store.fork_session(source.session_id, at_seq=3, new_session_id=new_id)
        assert [r.output for r in await store.get_last_runs(new_id, 10)] == [r.output for r in runs]

    async def test_without_a_recorded_state_the_fork_has_the_current_one(
        self, store: Store
    ) -> None:
        source, _ = await _session_with_turns(store, 3, states=False)
        new_id = _uid("fork")
        fork = await store.fork_session(source.session_id, at_seq=1, new_session_id=new_id)
        assert fork.state == source.state == {"turn": 3}
        assert fork.metadata[FORKED_FROM] == {
            "session_id": source.session_id,
            "seq": 1,
            "state": "current",
        }

    async def test_a_member_run_points_to_the_copy_of_its_parent(self, store: Store) -> None:
        source, _ = await _session_with_turns(store, 1)
        user = source.user_id
        leader = await store.append_run(_turn(source.session_id, 2, user))
        member = await store.append_run(
            _turn(source.session_id, 3, user, parent_run_id=leader.run_id)
        )
        new_id = _uid("fork")
        await store.fork_session(source.session_id, at_seq=member.seq or 0, new_session_id=new_id)
        copied = await store.get_run(fork_run_id(new_id, member.seq or 0))
        assert copied is not None
        assert copied.parent_run_id == fork_run_id(new_id, leader.seq or 0)
        top = await store.get_last_runs(new_id, 10, top_level_only=True)
        assert [r.seq for r in top] == [1, 2]

    async def test_a_fork_can_be_forked(self, store: Store) -> None:
        source, _ = await _session_with_turns(store, 4)
        first, second = _uid("fork"), _uid("fork")
        await store.fork_session(source.session_id, at_seq=3, new_session_id=first)
        again = await store.fork_session(first, at_seq=2, new_session_id=second)
        assert again.metadata[FORKED_FROM] == {"session_id": first, "seq": 2, "state": "run"}
        assert [r.seq for r in await store.get_last_runs(second, 10)] == [1, 2]

    async def test_refusals_write_nothing(self, store: Store) -> None:
        source, runs = await _session_with_turns(store, 2)
        other, _ = await _session_with_turns(store, 1)
        new_id = _uid("fork")

        with pytest.raises(SessionNotFoundError, match="no such session"):
            await store.fork_session(_uid("missing"), at_seq=1, new_session_id=new_id)
        with pytest.raises(ForkError, match="its last run is seq 2"):
            await store.fork_session(source.session_id, at_seq=3, new_session_id=new_id)
        with pytest.raises(ForkError, match="already taken"):
            await store.fork_session(source.session_id, at_seq=1, new_session_id=other.session_id)
        for bad in (0, -1, "1", True, None, 1.0):
            with pytest.raises(ForkError, match="positive int"):
                await store.fork_session(source.session_id, at_seq=bad, new_session_id=new_id)  # type: ignore[arg-type]
        for bad_id in ("", None, "x\x00y", 7):
            with pytest.raises(InvalidIdError, match="new_session_id"):
                await store.fork_session(
                    source.session_id,
                    at_seq=1,
                    new_session_id=bad_id,  # type: ignore[arg-type]
                )
        with pytest.raises(ForkError, match="characters long"):
            await store.fork_session(source.session_id, at_seq=1, new_session_id="f" * 250)

        assert await store.get_session(new_id) is None
        assert await store.get_last_runs(new_id, 10) == []
        assert await store.get_session(source.session_id) == source
        assert await store.get_last_runs(source.session_id, 10) == runs
        assert len(await store.get_last_runs(other.session_id, 10)) == 1

    async def test_runs_stored_under_the_new_id_make_it_taken(self, store: Store) -> None:
        source, _ = await _session_with_turns(store, 2)
        logged = _uid("fork")
        await store.append_run(_turn(logged, 1))  # runs, no session row (a workflow's log)
        with pytest.raises(ForkError, match="already taken"):
            await store.fork_session(source.session_id, at_seq=1, new_session_id=logged)
        assert await store.get_session(logged) is None
