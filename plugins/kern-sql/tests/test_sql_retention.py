"""Retention on the SQL backends (SQLite, DuckDB, Postgres), sync and async, beyond the
conformance topic: the receipt equals the rows a raw ``COUNT(*)`` sees go; cursors walk the
candidates ``limit`` at a time; dry runs write nothing; what is kept stays (a running run,
a step of a running workflow, a session's newest run, a session holding a running run);
the next append continues the seq; the candidate read of ``runs_before`` goes through the
``(created_at, run_id)`` index (``EXPLAIN``); existing databases get that index from the
schema migration, and ``storage_report`` names it when it is gone.

Postgres: ``KERN_TEST_POSTGRES_URL`` or a server on 127.0.0.1:5432 trusting ``postgres``
(as in test_sql_transfer.py); each test works in a schema of its own. Without one they skip.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from kern.db.base import AsyncBaseDb
from kern.db.sql import SqlDb
from kern.db.sql.retention import SqlRetention
from kern.db.transfer import RecordPage
from kern.errors import RetentionError
from kern.records import Run, RunStatus, Session, SessionType
from kern.retention import RetentionPolicy, RetentionRule, RuleKind
from kern.retention.rules import RetentionBatch

DAY0 = datetime(2024, 1, 1, 12, tzinfo=UTC)


def day(n: float) -> datetime:
    return DAY0 + timedelta(days=n)


@dataclass
class Backend:
    name: str
    open_sync: Callable[[], SqlDb]
    open_async: Callable[[], AsyncBaseDb]
    #: Prefix that qualifies a table name in plain SQL (a Postgres schema).
    qualifier: str = ""


@pytest.fixture(params=["sqlite", "duckdb", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        from kern.db.sqlite import AsyncSqliteDb, SqliteDb

        file = tmp_path / "kern.db"
        yield Backend("sqlite", lambda: SqliteDb(db_file=file), lambda: AsyncSqliteDb(db_file=file))
    elif request.param == "duckdb":
        pytest.importorskip("duckdb_engine")
        from kern.db.duckdb import AsyncDuckDb, DuckDb

        file = tmp_path / "kern.duckdb"
        yield Backend("duckdb", lambda: DuckDb(db_file=file), lambda: AsyncDuckDb(db_file=file))
    else:
        url = request.getfixturevalue("pg_url")
        from kern.db.postgres import AsyncPostgresDb, PostgresDb

        schema = f"r_{uuid.uuid4().hex[:12]}"
        async_url = url.replace("postgresql://", "postgresql+psycopg_async://", 1)
        yield Backend(
            "postgres",
            lambda: PostgresDb(db_url=url, schema=schema),
            lambda: AsyncPostgresDb(db_url=async_url, schema=schema),
            f'"{schema}".',
        )


class Store:
    """The sync or the async Db behind one sync face, and raw counts beside it."""

    def __init__(self, backend: Backend, mode: str) -> None:
        self.backend = backend
        self.sync = backend.open_sync()
        self.aio: AsyncBaseDb | None = None
        if mode == "async":
            self.aio = backend.open_async()
            self.loop = asyncio.new_event_loop()

    def __getattr__(self, name: str) -> Any:
        if self.aio is None:
            return getattr(self.sync, name)
        method = getattr(self.aio, name)
        return lambda *a, **kw: self.loop.run_until_complete(method(*a, **kw))

    def count(self, table: str, where: str = "") -> int:
        sql = f"SELECT count(*) FROM {self.backend.qualifier}kern_{table} {where}"
        with self.sync._ddl_connection() as conn:
            return int(conn.execute(text(sql)).scalar_one())

    def close(self) -> None:
        if self.aio is not None:
            self.loop.run_until_complete(self.aio.close())
            self.loop.close()
        self.sync.close()


@pytest.fixture(params=["sync", "async"])
def store(request: pytest.FixtureRequest, backend: Backend) -> Iterator[Store]:
    store = Store(backend, request.param)
    store.sync.create_tables()
    yield store
    store.close()


def _sid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def runs_on_days(
    store: Store, days: list[float], *, session_id: str | None = None, **fields: Any
) -> tuple[str, list[Run]]:
    """A session whose runs (seq 1, 2, ...) were created on ``days``, imported as they
    are (timestamps kept), with its session row last updated on the last day."""
    sid = session_id or _sid("s")
    session = Session(
        session_id=sid,
        session_type=SessionType.AGENT,
        created_at=day(days[0]),
        updated_at=day(days[-1]),
    )
    store.import_records(RecordPage(kind="sessions", records=[session]))
    runs = [
        Run(session_id=sid, seq=i, created_at=day(d), input=f"q{i}", **fields)
        for i, d in enumerate(days, start=1)
    ]
    store.import_records(RecordPage(kind="runs", records=runs))
    return sid, runs


def seqs(store: Store, sid: str) -> list[int]:
    return [run.seq or 0 for run in store.get_last_runs(sid, 1000)]


def before(days: float) -> RetentionRule:
    return RetentionRule(kind=RuleKind.RUNS_BEFORE, cutoff=day(days))


def idle(days: float) -> RetentionRule:
    return RetentionRule(kind=RuleKind.IDLE_SESSIONS, cutoff=day(days))


def keep_last(keep: int) -> RetentionRule:
    return RetentionRule(kind=RuleKind.KEEP_LAST_RUNS, keep=keep)


# -- the acceptance case ------------------------------------------------------------------------
def test_runs_older_than_the_policy_go_and_the_receipt_counts_them(store: Store) -> None:
    sid, runs = runs_on_days(store, [float(d) for d in range(61)])
    other, _ = runs_on_days(store, [59.0, 60.0])
    stored = store.count("runs")

    receipt = store.apply_retention(RetentionPolicy(runs_days=30), now=day(60))

    assert receipt.deleted["runs"] == stored - store.count("runs") == 30
    assert receipt.finished and not receipt.dry_run
    assert seqs(store, sid) == list(range(31, 62))  # day 30 is not older than 30 days
    assert store.get_run(runs[29].run_id) is None
    assert store.get_run(runs[30].run_id) is not None
    assert seqs(store, other) == [1, 2]
    assert store.append_run(Run(session_id=sid)).seq == 62
    assert store.apply_retention(RetentionPolicy(runs_days=30), now=day(60)).deleted["runs"] == 0


# -- dry runs -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rule", [before(10), idle(10), keep_last(2)], ids=["runs_before", "idle", "keep_last"]
)
def test_a_dry_run_counts_what_a_real_one_removes_and_writes_nothing(
    store: Store, rule: RetentionRule
) -> None:
    runs_on_days(store, [1, 2, 3, 4, 5])
    runs_on_days(store, [1, 2, 20])
    runs_on_days(store, [30, 31, 32])
    before_counts = store.count("sessions"), store.count("runs")

    dry = store.retention_batch(rule, limit=100, dry_run=True)

    assert (store.count("sessions"), store.count("runs")) == before_counts
    real = store.retention_batch(rule, limit=100)
    assert dry == real
    gone = {"sessions": before_counts[0] - store.count("sessions")}
    gone["runs"] = before_counts[1] - store.count("runs")
    assert real.counts == {k: v for k, v in gone.items() if k in real.counts}
    assert real.counts["runs"] > 0


# -- cursors and batches ------------------------------------------------------------------------
def walk(store: Store, rule: RetentionRule, *, dry_run: bool) -> list[RetentionBatch]:
    batches = []
    after = None
    for _ in range(10):
        batch = store.retention_batch(rule, limit=2, after=after, dry_run=dry_run)
        batches.append(batch)
        after = batch.after
        if after is None:
            break
    return batches


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry", "real"])
def test_runs_before_walks_five_candidates_two_at_a_time(store: Store, dry_run: bool) -> None:
    sid, _ = runs_on_days(store, [0, 1, 2, 3, 4, 50])  # five candidates, the newest stays

    batches = walk(store, before(10), dry_run=dry_run)

    assert [b.counts["runs"] for b in batches] == [2, 2, 1]
    assert [b.after is None for b in batches] == [False, False, True]
    assert seqs(store, sid) == ([1, 2, 3, 4, 5, 6] if dry_run else [6])


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry", "real"])
def test_idle_sessions_walks_five_candidates_two_at_a_time(store: Store, dry_run: bool) -> None:
    idle_ids = [runs_on_days(store, [d, d + 0.5])[0] for d in (0, 1, 2, 3, 4)]
    recent, _ = runs_on_days(store, [40])

    batches = walk(store, idle(10), dry_run=dry_run)

    assert [b.counts for b in batches] == [
        {"sessions": 2, "runs": 4},
        {"sessions": 2, "runs": 4},
        {"sessions": 1, "runs": 2},
    ]
    assert batches[-1].after is None
    left = {s.session_id for s in store.list_sessions(limit=100)}
    assert left == ({*idle_ids, recent} if dry_run else {recent})


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry", "real"])
def test_keep_last_runs_walks_five_sessions_two_at_a_time(store: Store, dry_run: bool) -> None:
    sids = [runs_on_days(store, [1, 2, 3, 4])[0] for _ in range(5)]

    batches = walk(store, keep_last(1), dry_run=dry_run)

    assert [b.counts["runs"] for b in batches] == [6, 6, 3]
    assert batches[-1].after is None
    for sid in sids:
        assert seqs(store, sid) == ([1, 2, 3, 4] if dry_run else [4])


def test_a_cursor_of_another_rule_or_none_at_all_is_refused(store: Store) -> None:
    runs_on_days(store, [0, 1, 2, 3])
    first = store.retention_batch(before(10), limit=1, dry_run=True)
    assert first.after is not None
    for after in (first.after, "not json", '["idle_sessions"]'):
        with pytest.raises(RetentionError, match="is not a cursor of a keep_last_runs"):
            store.retention_batch(keep_last(1), limit=1, after=after)
    assert store.count("runs") == 4


# -- what is kept -------------------------------------------------------------------------------
def test_running_runs_and_steps_of_running_workflows_stay(store: Store) -> None:
    sid = _sid("wf")
    store.upsert_session(
        Session(session_id=sid, session_type=SessionType.WORKFLOW), expected_version=None
    )
    done = store.append_run(Run(session_id=sid, created_at=day(1)))
    done_step = store.append_run(Run(session_id=sid, parent_run_id=done.run_id, created_at=day(1)))
    running = store.append_run(Run(session_id=sid, status=RunStatus.RUNNING, created_at=day(2)))
    step = store.append_run(Run(session_id=sid, parent_run_id=running.run_id, created_at=day(2)))
    newest = store.append_run(Run(session_id=sid, created_at=day(3)))
    stored = store.count("runs")

    receipt = store.apply_retention(RetentionPolicy(runs_days=1), now=day(30))

    assert receipt.deleted["runs"] == stored - store.count("runs") == 2
    assert store.get_run(done.run_id) is None
    assert store.get_run(done_step.run_id) is None
    for kept in (running, step, newest):
        assert store.get_run(kept.run_id) is not None

    # keep_last_runs keeps them too; once the workflow is finished they may go.
    assert store.retention_batch(keep_last(1), limit=10).counts == {"runs": 0}
    store.update_run(running.run_id, status=RunStatus.COMPLETED)
    assert store.retention_batch(keep_last(1), limit=10).counts == {"runs": 2}
    assert seqs(store, sid) == [5]
    assert store.append_run(Run(session_id=sid)).seq == 6


def test_the_newest_run_stays_even_when_older_than_the_cutoff(store: Store) -> None:
    sid, _ = runs_on_days(store, [1, 2, 3])
    receipt = store.retention_batch(before(100), limit=10)
    assert receipt.counts == {"runs": 2}
    assert seqs(store, sid) == [3]
    assert store.append_run(Run(session_id=sid)).seq == 4


def test_keep_last_runs_then_the_seq_goes_on(store: Store) -> None:
    sid, _ = runs_on_days(store, [1, 2, 3, 4, 5])
    short, _ = runs_on_days(store, [1])
    assert store.retention_batch(keep_last(2), limit=10).counts == {"runs": 3}
    assert seqs(store, sid) == [4, 5]
    assert seqs(store, short) == [1]
    assert store.append_run(Run(session_id=sid)).seq == 6


def test_an_idle_session_holding_a_running_run_stays(store: Store) -> None:
    busy, _ = runs_on_days(store, [1, 2])
    store.import_records(
        RecordPage(
            kind="runs",
            records=[Run(session_id=busy, seq=3, status=RunStatus.RUNNING, created_at=day(2))],
        )
    )
    gone, _ = runs_on_days(store, [1, 2, 3])
    sessions, runs = store.count("sessions"), store.count("runs")

    batch = store.retention_batch(idle(10), limit=10)

    assert batch.counts == {"sessions": 1, "runs": 3}
    assert (sessions - store.count("sessions"), runs - store.count("runs")) == (1, 3)
    assert store.get_session(gone) is None
    assert store.get_last_runs(gone, 10) == []
    assert store.get_session(busy) is not None
    assert seqs(store, busy) == [1, 2, 3]


def test_an_idle_session_leaves_no_search_rows(store: Store) -> None:
    user = _sid("u")
    for name, when in (("kayak trip to norway", 1), ("kayak rental prices", 40)):
        session = Session(
            session_id=_sid("s"),
            session_type=SessionType.AGENT,
            user_id=user,
            name=name,
            created_at=day(when),
            updated_at=day(when),
        )
        store.import_records(RecordPage(kind="sessions", records=[session]))
    assert len(store.search_sessions(user, "kayak")) == 2

    assert store.retention_batch(idle(10), limit=10).counts == {"sessions": 1, "runs": 0}

    assert [s.name for s in store.search_sessions(user, "kayak")] == ["kayak rental prices"]
    assert store.search_sessions(user, "norway") == []


def test_a_session_removed_as_idle_can_start_again(store: Store) -> None:
    """Its id, run ids and (DuckDB) run keys were deleted and are written again."""
    sid, runs = runs_on_days(store, [1, 2, 3])
    assert store.retention_batch(idle(10), limit=10).counts == {"sessions": 1, "runs": 3}
    again = store.append_run(Run(run_id=runs[0].run_id, session_id=sid))
    assert again.seq == 1
    assert seqs(store, sid) == [1]


# -- a batch past DuckDB's index-lookup threshold (2,048 rows) ------------------------------
def test_a_large_batch_removes_exactly_its_runs(backend: Backend) -> None:
    store = Store(backend, "sync")
    try:
        sid = _sid("big")
        runs = [Run(session_id=sid, seq=i, created_at=day(i / 10000)) for i in range(1, 3002)]
        store.import_records(RecordPage(kind="runs", records=runs))
        stored = store.count("runs")
        batch = store.retention_batch(before(100), limit=5000)
        assert batch == type(batch)(counts={"runs": 3000}, after=None)
        assert stored - store.count("runs") == 3000
        assert store.append_run(Run(session_id=sid)).seq == 3002
    finally:
        store.close()


# -- plans ------------------------------------------------------------------------------------
def explained(backend: Backend, db: SqlDb, statement: Any) -> list[str]:
    """The database's plan of ``statement`` as kern sends it (SQL text and bound values of
    ``Prepared``), one line per step."""
    from kern.db.sql.prepared import Prepared

    params = {"cutoff": day(10), "limit": 500, "a_at": day(5), "a_id": "x"}
    form = Prepared(statement, db.engine.dialect).form(params)
    with db._ddl_connection() as conn:
        if backend.name == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + form.sql, form.bind(params))
            return [str(row[-1]) for row in rows]
        for table in ("runs", "sessions"):
            conn.exec_driver_sql(f"ANALYZE {backend.qualifier}kern_{table}")
        rows = conn.exec_driver_sql("EXPLAIN " + form.sql, form.bind(params))
        return [str(row[0]) for row in rows]


def test_the_candidates_of_runs_before_are_read_through_the_created_at_index(
    backend: Backend,
) -> None:
    if backend.name == "duckdb":
        pytest.skip("DuckDB never reads an ART index in order (kern.db.duckdb.retention)")
    db = backend.open_sync()
    try:
        runs = [
            Run(session_id=f"s{i % 50}", seq=i // 50 + 1, created_at=day(i / 100))
            for i in range(5000)
        ]
        db.import_records(RecordPage(kind="runs", records=runs))
        retention = SqlRetention(db._ops)
        for after in (False, True):
            plan = explained(backend, db, retention.runs_before_candidates(after))
            assert any("ix_kern_runs_created" in line for line in plan[:3]), plan
            assert not any("TEMP B-TREE" in line or "Sort" in line for line in plan), plan
            assert not any("Seq Scan" in line or line.startswith("SCAN") for line in plan)
    finally:
        db.close()


def test_idle_candidates_probe_runs_by_session_never_scan_them(backend: Backend) -> None:
    """Whether a candidate session holds a running run is a probe of its own runs (not
    Postgres's hashed subplan over every running run of the table)."""
    if backend.name == "duckdb":
        pytest.skip("DuckDB looks the running runs up by key (kern.db.duckdb.retention)")
    db = backend.open_sync()
    try:
        sessions = [
            Session(session_id=f"s{i}", session_type=SessionType.AGENT, updated_at=day(i / 100))
            for i in range(2000)
        ]
        db.import_records(RecordPage(kind="sessions", records=sessions))
        runs = [Run(session_id=f"s{i % 2000}", seq=i // 2000 + 1) for i in range(6000)]
        db.import_records(RecordPage(kind="runs", records=runs))
        retention = SqlRetention(db._ops)
        for after in (False, True):
            plan = explained(backend, db, retention.idle_candidates(after, lock=False))
            assert any("ix_kern_sessions_updated" in line for line in plan[:6]), plan
            assert not any("Seq Scan" in line or line.startswith("SCAN") for line in plan)
    finally:
        db.close()


# -- the schema migration ---------------------------------------------------------------------
def test_a_database_made_before_the_index_gets_it_and_doctor_names_it(backend: Backend) -> None:
    if backend.name == "duckdb":
        pytest.skip("DuckDB keeps its own indexes (kern.db.duckdb.schema)")
    db = backend.open_sync()
    db.create_tables()
    q = backend.qualifier
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"DROP INDEX {q}ix_kern_runs_created")
        conn.exec_driver_sql(
            f"UPDATE {q}kern_schema_versions SET version = 1 WHERE name = 'kern_runs'"
        )
    db.close()

    old = backend.open_sync()
    try:
        report = old.storage_report()
        assert "ix_kern_runs_created" in report.missing
        assert report.pending_migrations["kern_runs"] == (1, 2)
        old.create_tables()
        assert old.schema_versions()["kern_runs"] == 2
        assert old.storage_report().missing == []
    finally:
        old.close()


def test_the_newest_stored_run_stays_when_a_later_one_was_forgotten(store: Store) -> None:
    """``forget_user`` may remove a session's last run; the highest seq still stored is
    then the newest (DuckDB finds it below its counter's last seq)."""
    sid, _ = runs_on_days(store, [1, 2, 3, 4])
    store.import_records(
        RecordPage(kind="runs", records=[Run(session_id=sid, seq=5, user_id="gone")])
    )
    assert store.forget_user("gone")["runs"] == 1
    assert store.retention_batch(before(100), limit=10).counts == {"runs": 3}
    assert seqs(store, sid) == [4]
