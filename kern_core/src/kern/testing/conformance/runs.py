"""Runs: ``seq`` per session, exact round trips, history reads and their cost, ``update_run``.

Appends racing from several processes or threads are in ``concurrency``; ``commit_turn``
is in ``kern.testing.turns``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from kern.errors import RunFinishedError, RunNotFoundError
from kern.records import Message, Run, RunStatus, Session, ToolCall
from kern.testing.capabilities import requires
from kern.testing.conformance.base import ScenarioBase, Store
from kern.testing.conformance.common import _ids, _json, _seq, _seqs, _tick, _turn, _uid

__all__ = ["RunScenarios"]

#: Runs in the long session of the history-cost acceptance case.
LONG_SESSION_RUNS = 10_000
#: How far the history-cost measures may differ (a fraction of the short session's cost).
READ_COST_TOLERANCE = 0.05


class RunScenarios(ScenarioBase):
    """``append_run`` / ``get_run`` / ``get_last_runs`` / ``update_run``."""

    async def test_append_run_assigns_seq_per_session(self, store: Store) -> None:
        """seq is 1, 2, 3... in each session independently, whatever seq the caller set;
        the session row need not exist."""
        a, b = _uid("a"), _uid("b")
        await store.upsert_session(Session(session_id=a), expected_version=None)  # b has none
        order = [a, b, a, a, b]
        stored = [await store.append_run(Run(session_id=sid)) for sid in order]
        assert _seqs(stored) == [1, 1, 2, 3, 2]

        ignored = await store.append_run(Run(session_id=b, seq=99))
        assert ignored.seq == 3

        assert _seqs(await store.get_last_runs(a, 10)) == [1, 2, 3]
        assert _ids(await store.get_last_runs(b, 10), "run_id") == [
            stored[1].run_id,
            stored[4].run_id,
            ignored.run_id,
        ]

    async def test_append_run_returns_the_stored_run(self, store: Store) -> None:
        """Records round-trip exactly: messages with tool calls, nested JSON, unicode and
        timezone-aware timestamps come back as they went in."""
        created = datetime(2024, 5, 17, 14, 3, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
        run = Run(
            session_id=_uid("s"),
            parent_run_id=_uid("parent"),
            component_id="weather-agent",
            user_id=_uid("ü"),
            status=RunStatus.COMPLETED,
            input={"question": "Wie wird das Wetter in Zürich? 🌦", "options": [1, 2.5, None]},
            messages=[
                Message(role="system", content="You are terse."),
                Message(role="user", content="Wie wird das Wetter in Zürich? 🌦"),
                Message(
                    role="assistant",
                    content=None,
                    tool_calls=[
                        ToolCall(id="call_1", name="get_weather", arguments='{"city": "Zürich"}')
                    ],
                ),
                Message(
                    role="tool", tool_call_id="call_1", name="get_weather", content='{"t": 21.5}'
                ),
                Message(role="assistant", content='Sonnig, 21.5 °C — "schön"\n\\ 東京でも晴れ'),
            ],
            output={"answer": "Sonnig", "confidence": 0.9, "ok": True, "n": 2, "x": 2.0},
            metrics={"tokens": {"input": 120, "output": 8}, "cost": 0.0012, "tags": []},
            created_at=created,
        )
        stored = await store.append_run(run)

        assert stored.seq == 1
        assert stored == run.model_copy(update={"seq": 1})
        for fetched in (
            await store.get_run(run.run_id),
            *(await store.get_last_runs(run.session_id, 1)),
        ):
            assert fetched == stored
            assert fetched.created_at.tzinfo is not None
            assert fetched.created_at == created
            for field in ("input", "output", "metrics"):
                assert _json(getattr(fetched, field)) == _json(getattr(run, field))
            assert _json([m.model_dump() for m in fetched.messages]) == _json(
                [m.model_dump() for m in run.messages]
            )

    async def test_append_run_with_a_stored_run_id_raises_value_error(self, store: Store) -> None:
        sid, other = _uid("s"), _uid("other")
        first = await store.append_run(_turn(sid, 0))
        with pytest.raises(ValueError):
            await store.append_run(first)
        with pytest.raises(ValueError):  # the same run_id in another session
            await store.append_run(_turn(other, 0).model_copy(update={"run_id": first.run_id}))

        assert await store.get_last_runs(sid, 10) == [first]
        assert await store.get_run(first.run_id) == first
        assert await store.get_last_runs(other, 10) == []

    async def test_append_run_moves_session_updated_at_not_version(self, store: Store) -> None:
        sid = _uid("s")
        before = await store.upsert_session(
            Session(session_id=sid, state={"k": 1}), expected_version=None
        )
        _tick()
        await store.append_run(
            _turn(sid, 0).model_copy(
                update={"created_at": before.updated_at + timedelta(seconds=1)}
            )
        )

        after = await store.get_session(sid)
        assert after is not None
        assert after.updated_at > before.updated_at
        assert after.version == before.version == 1
        assert after.state == before.state
        # the version was not touched: a writer holding version 1 still succeeds
        assert (await store.upsert_session(after, expected_version=1)).version == 2

    async def test_get_run(self, store: Store) -> None:
        stored = await store.append_run(_turn(_uid("s"), 0))
        assert await store.get_run(stored.run_id) == stored
        assert await store.get_run(_uid("missing")) is None

    async def test_get_last_runs_order_limit_and_paging(self, store: Store) -> None:
        """The newest ``limit`` runs, returned oldest first; before_seq pages backwards."""
        sid = _uid("s")
        runs = [await store.append_run(_turn(sid, i)) for i in range(7)]

        assert await store.get_last_runs(sid, 3) == runs[4:]
        assert await store.get_last_runs(sid, 100) == runs
        assert _seqs(await store.get_last_runs(sid, 3, before_seq=5)) == [2, 3, 4]
        assert _seqs(await store.get_last_runs(sid, 3, before_seq=3)) == [1, 2]
        assert await store.get_last_runs(sid, 3, before_seq=1) == []
        assert await store.get_last_runs(_uid("unknown"), 3) == []

    async def test_read_turn_is_the_session_and_its_last_runs(self, store: Store) -> None:
        """``read_turn`` answers exactly as ``get_session`` + ``get_last_runs`` would, for
        every filter; runs without a session row come back too; ``limit`` 0 reads none."""
        sid = _uid("s")
        await store.upsert_session(
            Session(session_id=sid, user_id=_uid("u"), state={"n": 1}), expected_version=None
        )
        leader = await store.append_run(_turn(sid, 0, status=RunStatus.COMPLETED))
        await store.append_run(_turn(sid, 1, parent_run_id=leader.run_id))
        await store.append_run(_turn(sid, 2, status=RunStatus.ERROR))
        for i in range(3, 7):
            await store.append_run(_turn(sid, i, status=RunStatus.COMPLETED))
        session = await store.get_session(sid)
        assert session is not None
        for limit, top, status in [
            (3, False, None),
            (3, True, RunStatus.COMPLETED),
            (100, True, None),
            (2, False, RunStatus.ERROR),
            (1, True, RunStatus.RUNNING),
        ]:
            expected = await store.get_last_runs(sid, limit, top_level_only=top, status=status)
            got = await store.read_turn(sid, limit, top_level_only=top, status=status)
            assert got == (session, expected), (limit, top, status)
        assert await store.read_turn(sid, 0) == (session, [])

        loose = _uid("no-session")  # a workflow may log runs before it writes a session
        logged = [await store.append_run(_turn(loose, i)) for i in range(2)]
        assert await store.read_turn(loose, 5) == (None, logged)
        assert await store.read_turn(_uid("unknown"), 3) == (None, [])

    async def test_get_last_runs_top_level_only(self, store: Store) -> None:
        """top_level_only drops runs with a parent_run_id, before the limit applies."""
        sid = _uid("team")
        leader1 = await store.append_run(_turn(sid, 1))
        await store.append_run(_turn(sid, 2, parent_run_id=leader1.run_id))
        await store.append_run(_turn(sid, 3, parent_run_id=leader1.run_id))
        leader2 = await store.append_run(_turn(sid, 4))
        await store.append_run(_turn(sid, 5, parent_run_id=leader2.run_id))
        await store.append_run(_turn(sid, 6, parent_run_id=leader2.run_id))

        assert await store.get_last_runs(sid, 10, top_level_only=True) == [leader1, leader2]
        assert await store.get_last_runs(sid, 1, top_level_only=True) == [leader2]
        assert await store.get_last_runs(sid, 10, top_level_only=True, before_seq=4) == [leader1]
        assert _seqs(await store.get_last_runs(sid, 2)) == [5, 6]

    async def test_get_last_runs_status_filter(self, store: Store) -> None:
        sid = _uid("s")
        statuses = [
            RunStatus.COMPLETED,
            RunStatus.ERROR,
            RunStatus.COMPLETED,
            RunStatus.RUNNING,
            RunStatus.ERROR,
            RunStatus.COMPLETED,
        ]
        for i, status in enumerate(statuses):
            await store.append_run(_turn(sid, i, status=status))

        async def seqs(**kw: Any) -> list[int | None]:
            return _seqs(await store.get_last_runs(sid, kw.pop("limit", 10), **kw))

        assert await seqs(status=RunStatus.ERROR) == [2, 5]
        assert await seqs(status=RunStatus.ERROR, limit=1) == [5]
        assert await seqs(status=RunStatus.RUNNING) == [4]
        assert await seqs(status=RunStatus.COMPLETED, before_seq=6) == [1, 3]
        assert await seqs(status=RunStatus.CANCELLED) == []

    async def test_update_run_finishes_a_running_run(self, store: Store) -> None:
        started = await store.append_run(
            Run(session_id=_uid("s"), status=RunStatus.RUNNING, input="hi")
        )
        answer = [Message(role="user", content="hi"), Message(role="assistant", content="hello")]
        finished = await store.update_run(
            started.run_id,
            status=RunStatus.COMPLETED,
            output={"text": "hello", "parts": [1, {"a": None}]},
            messages=answer,
            metrics={"tokens": 7, "latency": {"ms": 12.5}},
        )

        assert finished == started.model_copy(
            update={
                "status": RunStatus.COMPLETED,
                "output": {"text": "hello", "parts": [1, {"a": None}]},
                "messages": answer,
                "metrics": {"tokens": 7, "latency": {"ms": 12.5}},
            }
        )
        assert await store.get_run(started.run_id) == finished

    async def test_update_run_none_leaves_fields_as_they_are(self, store: Store) -> None:
        started = await store.append_run(
            Run(
                session_id=_uid("s"),
                status=RunStatus.RUNNING,
                output="partial",
                messages=[Message(role="user", content="hi")],
                metrics={"tokens": 3},
            )
        )
        remarked = await store.update_run(started.run_id, status=RunStatus.RUNNING)
        assert remarked == started

        done = await store.update_run(started.run_id, status=RunStatus.ERROR, output="failed")
        assert done == started.model_copy(update={"status": RunStatus.ERROR, "output": "failed"})
        assert await store.get_run(started.run_id) == done

    async def test_update_run_unknown_id_raises_run_not_found(self, store: Store) -> None:
        with pytest.raises(RunNotFoundError):
            await store.update_run(_uid("missing"), status=RunStatus.COMPLETED)

    async def test_update_run_on_a_finished_run_raises_run_finished(self, store: Store) -> None:
        sid = _uid("s")
        completed = await store.append_run(_turn(sid, 0))  # appended already finished
        started = await store.append_run(Run(session_id=sid, status=RunStatus.RUNNING))
        cancelled = await store.update_run(started.run_id, status=RunStatus.CANCELLED)

        for run in (completed, cancelled):
            with pytest.raises(RunFinishedError):
                await store.update_run(run.run_id, status=RunStatus.COMPLETED, output="late")
            assert await store.get_run(run.run_id) == run

    @requires("bounded_history_reads")
    async def test_last_runs_cost_does_not_grow_with_session(self, db: Any, store: Store) -> None:
        """Acceptance case 3: reading the last 3 runs of a 10,000-run session costs what it
        costs in a 10-run session (``count_reads``), and returns exactly the 3 newest."""
        user, big, small = _uid("u"), _uid("big"), _uid("small")
        for sid in (big, small):
            await store.upsert_session(Session(session_id=sid, user_id=user), expected_version=None)
        big_runs = await self._append_many(
            store, [_turn(big, i, user) for i in range(LONG_SESSION_RUNS)]
        )
        await self._append_many(store, [_turn(small, i, user) for i in range(10)])
        for sid in (small, big):  # warm caches, so that neither measure pays for set-up
            await store.get_last_runs(sid, 3)

        small_cost, small_last = await self._measure(db, lambda: store.get_last_runs(small, 3))
        big_cost, big_last = await self._measure(db, lambda: store.get_last_runs(big, 3))

        newest = sorted(big_runs, key=_seq)[-3:]
        assert _ids(big_last, "run_id") == _ids(newest, "run_id")
        assert _seqs(big_last) == [LONG_SESSION_RUNS - 2, LONG_SESSION_RUNS - 1, LONG_SESSION_RUNS]
        assert _seqs(small_last) == [8, 9, 10]
        assert small_cost > 0, "count_reads measured nothing: is the counter installed?"
        assert abs(big_cost - small_cost) <= READ_COST_TOLERANCE * small_cost, (
            f"last 3 runs of a {LONG_SESSION_RUNS}-run session cost {big_cost}, "
            f"of a 10-run session {small_cost}"
        )
