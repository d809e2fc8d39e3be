"""Retention: ``apply_retention(policy)`` over the backend's ``retention_batch``.

What a user who declares "keep runs for 30 days" relies on, on every backend: exactly the
older runs go and the receipt counts them; the session's next turn continues its seq; the
newest run of a session, a running run and the runs under a running one stay; an idle
session goes with all of its runs; a dry run counts and removes nothing; a call bounded by
``max_batches`` does part of the work and the next call finishes it; memories and learnings
are never touched.

Retention acts on the whole database, so these scenarios need a database of their own per
test (the suites' recipes get the test's ``tmp_path``; kern's own suites give every test a
fresh database, schema or key prefix). Old rows are written with their timestamps:
``append_run`` stores a run's ``created_at``; ``import_records`` keeps a session's
``updated_at`` (``append_run`` may move it to the run's time).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kern.db.transfer import RecordPage
from kern.errors import RetentionError
from kern.records import Learning, Memory, Run, RunStatus, Session, SessionType
from kern.retention import RetentionPolicy, RetentionRule, RuleKind
from kern.testing.conformance.base import ScenarioBase, Store
from kern.testing.conformance.common import _turn, _uid

__all__ = ["RetentionScenarios"]

#: Day 0 of the scenarios' calendar: every old row is dated from here.
DAY0 = datetime(2024, 1, 1, 12, tzinfo=UTC)


def day(n: float) -> datetime:
    return DAY0 + timedelta(days=n)


async def _runs_on_days(
    store: Store, days: list[float], *, session_id: str | None = None, user: str | None = None
) -> tuple[str, list[Run]]:
    """A session whose runs were created on ``days`` (one run each, in that order)."""
    sid = session_id or _uid("s")
    runs = [
        await store.append_run(_turn(sid, i, user, created_at=day(d)))
        for i, d in enumerate(days, start=1)
    ]
    return sid, runs


async def _seqs(store: Store, session_id: str) -> list[int]:
    return [run.seq or 0 for run in await store.get_last_runs(session_id, 1000)]


async def _idle_session(store: Store, updated: float, runs: int, *, user: str) -> Session:
    """A session last updated on day ``updated`` with ``runs`` runs of that day."""
    session = Session(
        session_id=_uid("idle"),
        session_type=SessionType.AGENT,
        user_id=user,
        created_at=day(updated - 1),
        updated_at=day(updated),
        version=1,
    )
    stored = [
        _turn(session.session_id, i, user, seq=i, created_at=day(updated - 1))
        for i in range(1, runs + 1)
    ]
    await store.import_records(RecordPage("sessions", [session]))
    await store.import_records(RecordPage("runs", stored))
    return session


class RetentionScenarios(ScenarioBase):
    """``apply_retention`` / ``retention_batch``."""

    async def test_retention_removes_exactly_the_runs_older_than_the_policy(
        self, store: Store
    ) -> None:
        sid, runs = await _runs_on_days(store, [float(d) for d in range(61)], user=_uid("u"))

        receipt = await store.apply_retention(RetentionPolicy(runs_days=30), now=day(60))

        assert receipt.deleted == {"sessions": 0, "runs": 30}, receipt
        assert receipt.finished and not receipt.dry_run
        assert await _seqs(store, sid) == list(range(31, 62))
        assert await store.get_run(runs[29].run_id) is None
        assert await store.get_run(runs[30].run_id) == runs[30]
        nxt = await store.append_run(_turn(sid, 62, created_at=day(60)))
        assert nxt.seq == 62, "the next append continues the session's seq"
        again = await store.apply_retention(RetentionPolicy(runs_days=30), now=day(60))
        assert again.deleted == {"sessions": 0, "runs": 0}

    async def test_a_dry_run_counts_and_removes_nothing(self, store: Store) -> None:
        sid, _ = await _runs_on_days(store, [0, 1, 2, 40, 41])
        idle = await _idle_session(store, 5, 2, user=_uid("u"))
        policy = RetentionPolicy(runs_days=30, idle_session_days=20)

        dry = await store.apply_retention(policy, now=day(45), dry_run=True)

        assert dry.dry_run
        assert await _seqs(store, sid) == [1, 2, 3, 4, 5]
        assert await store.get_session(idle.session_id) is not None
        real = await store.apply_retention(policy, now=day(45))
        assert [part.counts for part in real.rules] == [
            {"sessions": 1, "runs": 2},
            {"runs": 3},
        ]
        # A dry run counts each rule on its own: the idle session's old runs appear under
        # both of its rules, so its totals are at least the real ones.
        assert dry.rules[0].counts == real.rules[0].counts
        assert dry.deleted["runs"] >= real.deleted["runs"]
        assert await _seqs(store, sid) == [4, 5]

    async def test_the_newest_run_of_a_session_stays_and_the_seq_goes_on(
        self, store: Store
    ) -> None:
        sid, _ = await _runs_on_days(store, [0, 1, 2])

        receipt = await store.apply_retention(RetentionPolicy(runs_days=1), now=day(90))

        assert receipt.deleted["runs"] == 2
        assert await _seqs(store, sid) == [3]
        assert (await store.append_run(_turn(sid, 4))).seq == 4

    async def test_runs_of_unfinished_workflows_stay(self, store: Store) -> None:
        sid = _uid("wf")
        done = await store.append_run(Run(session_id=sid, created_at=day(0)))
        done_step = await store.append_run(
            Run(session_id=sid, parent_run_id=done.run_id, created_at=day(0))
        )
        running = await store.append_run(
            Run(session_id=sid, status=RunStatus.RUNNING, created_at=day(1))
        )
        step = await store.append_run(
            Run(session_id=sid, parent_run_id=running.run_id, created_at=day(1))
        )
        await store.append_run(Run(session_id=sid, created_at=day(2)))  # the newest

        receipt = await store.apply_retention(RetentionPolicy(runs_days=10), now=day(60))

        assert receipt.deleted["runs"] == 2
        assert await store.get_run(done.run_id) is None
        assert await store.get_run(done_step.run_id) is None
        assert await store.get_run(running.run_id) is not None
        assert await store.get_run(step.run_id) is not None
        # Finished, the workflow's runs go like any others.
        await store.update_run(running.run_id, status=RunStatus.COMPLETED)
        receipt = await store.apply_retention(RetentionPolicy(runs_days=10), now=day(60))
        assert receipt.deleted["runs"] == 2
        assert await _seqs(store, sid) == [5]

    async def test_keep_last_runs_keeps_each_sessions_newest(self, store: Store) -> None:
        long_sid, _ = await _runs_on_days(store, [1, 2, 3, 4, 5, 6])
        short_sid, _ = await _runs_on_days(store, [1, 2])
        rowless_sid, _ = await _runs_on_days(store, [1, 2, 3])  # runs only, as a workflow logs
        for sid in (long_sid, short_sid):
            await store.upsert_session(Session(session_id=sid), expected_version=None)
        running = await store.append_run(
            Run(session_id=long_sid, status=RunStatus.RUNNING, created_at=day(7))
        )
        await store.append_run(_turn(long_sid, 8, created_at=day(8)))
        await store.append_run(_turn(long_sid, 9, created_at=day(9)))

        receipt = await store.apply_retention(RetentionPolicy(keep_last_runs=2))

        assert receipt.deleted == {"sessions": 0, "runs": 7}
        assert await _seqs(store, long_sid) == [7, 8, 9]  # 7 is running: it stays
        assert await _seqs(store, short_sid) == [1, 2]
        assert await _seqs(store, rowless_sid) == [2, 3]
        assert running.seq == 7

    async def test_idle_sessions_go_with_their_runs(self, store: Store) -> None:
        user = _uid("u")
        idle = await _idle_session(store, 10, 3, user=user)
        recent = await _idle_session(store, 95, 2, user=user)
        busy = await _idle_session(store, 10, 1, user=user)
        await store.append_run(
            Run(session_id=busy.session_id, status=RunStatus.RUNNING, created_at=day(9))
        )

        receipt = await store.apply_retention(RetentionPolicy(idle_session_days=30), now=day(100))

        assert receipt.deleted == {"sessions": 1, "runs": 3}
        assert await store.get_session(idle.session_id) is None
        assert await store.get_last_runs(idle.session_id, 10) == []
        assert await store.get_session(recent.session_id) is not None
        assert await store.get_session(busy.session_id) is not None, "it has a running run"
        listed = {s.session_id for s in await store.list_sessions(user_id=user)}
        assert listed == {recent.session_id, busy.session_id}

    async def test_memories_and_learnings_are_never_removed(self, store: Store) -> None:
        user = _uid("u")
        memory = await store.upsert_memory(
            Memory(user_id=user, content="likes tea", created_at=day(0), updated_at=day(0))
        )
        learning = await store.upsert_learning(
            Learning(kind="user_profile", namespace="user", user_id=user, content={"a": 1})
        )
        await _idle_session(store, 0, 2, user=user)

        await store.apply_retention(
            RetentionPolicy(runs_days=1, keep_last_runs=1, idle_session_days=1), now=day(400)
        )

        assert await store.get_memory(memory.memory_id) is not None
        assert await store.get_learning(learning.learning_id) is not None

    async def test_batches_are_bounded_and_a_later_call_finishes(self, store: Store) -> None:
        sids = [(await _runs_on_days(store, [0, 1, 50]))[0] for _ in range(3)]  # 6 old runs
        policy = RetentionPolicy(runs_days=30)

        first = await store.apply_retention(policy, now=day(60), batch_size=2, max_batches=1)

        assert not first.finished and first.rules[0].batches == 1
        assert first.deleted["runs"] <= 2
        rest = await store.apply_retention(policy, now=day(60), batch_size=2)
        assert rest.finished
        assert first.deleted["runs"] + rest.deleted["runs"] == 6
        for sid in sids:
            assert await _seqs(store, sid) == [3]

    async def test_a_cursor_walks_the_candidates_without_removing_in_a_dry_run(
        self, store: Store
    ) -> None:
        await _runs_on_days(store, [0, 1, 2, 3, 4, 50])  # 5 candidates
        rule = RetentionRule(kind=RuleKind.RUNS_BEFORE, cutoff=day(30))
        counted, after, batches = 0, None, 0
        while True:
            batch = await store.retention_batch(rule, limit=2, after=after, dry_run=True)
            counted += batch.counts.get("runs", 0)
            batches += 1
            after = batch.after
            if after is None:
                break
            assert batches < 10, "the cursor must move on"
        assert counted == 5 and batches == 3

    async def test_bad_arguments_are_refused_and_nothing_is_removed(self, store: Store) -> None:
        sid, _ = await _runs_on_days(store, [0, 1, 2])
        with pytest.raises(RetentionError, match="batch_size"):
            await store.apply_retention(RetentionPolicy(runs_days=1), batch_size=0)
        with pytest.raises(RetentionError, match="timezone"):
            await store.apply_retention(RetentionPolicy(runs_days=1), now=datetime(2030, 1, 1))
        with pytest.raises(RetentionError, match="RetentionRule"):
            await store.retention_batch("runs_before", limit=10)  # type: ignore[arg-type]
        with pytest.raises(RetentionError, match="limit"):
            rule = RetentionRule(kind=RuleKind.RUNS_BEFORE, cutoff=day(30))
            await store.retention_batch(rule, limit=0)
        with pytest.raises(RetentionError, match="unknown key 'runs'"):
            await store.apply_retention({"runs": 30})  # type: ignore[arg-type]
        assert await _seqs(store, sid) == [1, 2, 3]
