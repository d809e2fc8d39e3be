"""Moving data in the SQL backends (SQLite, DuckDB, Postgres), beyond the conformance topic:

- cursors are the last key as JSON headed by the kind; anything else is refused;
- an import writes a page with one bulk statement per table, never a statement per row;
- a run at a seq another run holds, or a stored run moved to another seq, refuses the whole
  page: nothing of it is written;
- ``storage_report`` only reads: a database kern never used stays without tables, a table
  dropped by hand stays missing (and is listed) until ``create_tables`` puts it back.

Postgres: ``KERN_TEST_POSTGRES_URL`` or a server on 127.0.0.1:5432 trusting ``postgres``, as
in test_sql_vectors.py; each test works in a schema of its own. Without one they skip.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, inspect

from kern.db.sql import SqlDb
from kern.db.transfer import RecordPage
from kern.db.transfer import key_cursor as encode_cursor
from kern.db.transfer import read_key_cursor as decode_cursor
from kern.records import Run, Session


@dataclass
class Backend:
    name: str
    open: Callable[[], SqlDb]
    #: Prefix that qualifies a table name in plain SQL (a Postgres schema).
    qualifier: str = ""

    def sql(self, db: SqlDb, statement: str) -> None:
        with db.engine.begin() as conn:
            conn.exec_driver_sql(statement.format(q=self.qualifier))

    def tables(self, db: SqlDb) -> set[str]:
        with db.engine.connect() as conn:
            schema = db.tables.runs.schema
            return {t for t in inspect(conn).get_table_names(schema=schema) if "kern_" in t}


@pytest.fixture(params=["sqlite", "duckdb", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        from kern.db.sqlite import SqliteDb

        yield Backend("sqlite", lambda: SqliteDb(db_file=tmp_path / "kern.db"))
    elif request.param == "duckdb":
        pytest.importorskip("duckdb_engine")
        from kern.db.duckdb import DuckDb

        yield Backend("duckdb", lambda: DuckDb(db_file=tmp_path / "kern.duckdb"))
    else:
        url = request.getfixturevalue("pg_url")
        from kern.db.postgres import PostgresDb

        schema = f"m_{uuid.uuid4().hex[:12]}"
        yield Backend("postgres", lambda: PostgresDb(db_url=url, schema=schema), f'"{schema}".')


@pytest.fixture
def db(backend: Backend) -> Iterator[SqlDb]:
    db = backend.open()
    yield db
    db.close()


def runs_of(session: Session, seqs: range, **fields: Any) -> list[Run]:
    return [Run(session_id=session.session_id, seq=seq, **fields) for seq in seqs]


def statements(db: SqlDb, fn: Callable[[], Any]) -> list[tuple[str, bool]]:
    """``(first word, executemany)`` of every statement ``fn`` runs on ``db``'s engine."""
    seen: list[tuple[str, bool]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool):
        seen.append((statement.split(None, 1)[0].upper(), many))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        fn()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    return seen


# -- cursors ----------------------------------------------------------------------------------
def test_a_cursor_is_the_last_key_and_anything_else_is_refused() -> None:
    cursor = encode_cursor("runs", ["s/1 é", 7])
    assert decode_cursor("runs", cursor) == ("s/1 é", 7)
    assert decode_cursor("memories", encode_cursor("memories", ["m1"])) == ("m1",)
    for kind, bad in [
        ("memories", cursor),  # another kind's
        ("runs", encode_cursor("runs", ["s", True])),  # a bool is no seq
        ("runs", encode_cursor("sessions", ["s"])),
        ("sessions", "not json"),
        ("sessions", '{"kind": "sessions"}'),
    ]:
        with pytest.raises(ValueError, match="not the cursor of a"):
            decode_cursor(kind, bad)  # type: ignore[arg-type]


def test_export_refuses_a_foreign_cursor(db: SqlDb) -> None:
    with pytest.raises(ValueError, match="not the cursor of a runs export"):
        db.export_records("runs", after=encode_cursor("sessions", ["s"]))


# -- bulk writes --------------------------------------------------------------------------------
def test_a_page_is_one_bulk_write_per_table(backend: Backend, db: SqlDb) -> None:
    session = Session(user_id="u")
    db.import_records(RecordPage(kind="sessions", records=[session]))
    page = RecordPage(kind="runs", records=runs_of(session, range(1, 301), input="hi"))
    seen = statements(db, lambda: db.import_records(page))
    inserts = [many for word, many in seen if word == "INSERT"]
    if backend.name == "duckdb":
        # the runs and the session's seq counter, each one statement of column lists
        assert inserts == [False, False], seen
    else:
        assert inserts == [True], seen  # one executemany
    selects = [word for word, _ in seen if word in ("SELECT", "WITH")]
    # the check of the page's run ids and seqs: one statement of arrays, or one per 256
    assert len(selects) == (2 if backend.name == "sqlite" else 1), seen
    assert len(seen) <= 6, seen
    assert [r.seq for r in db.get_last_runs(session.session_id, 3)] == [298, 299, 300]
    assert db.append_run(Run(session_id=session.session_id)).seq == 301


# -- refused pages ------------------------------------------------------------------------------
def test_a_run_at_a_held_seq_refuses_the_whole_page(db: SqlDb) -> None:
    session = Session(user_id="u")
    db.import_records(RecordPage(kind="sessions", records=[session]))
    stored = runs_of(session, range(1, 4))
    db.import_records(RecordPage(kind="runs", records=stored))

    fresh = runs_of(session, range(4, 6))
    intruder = Run(session_id=session.session_id, seq=2, input="not the stored run 2")
    with pytest.raises(ValueError) as refused:
        db.import_records(RecordPage(kind="runs", records=[*fresh, intruder]))
    message = str(refused.value)
    for part in (session.session_id, "seq 2", stored[1].run_id, intruder.run_id):
        assert part in message, message
    assert [db.get_run(run.run_id) for run in fresh] == [None, None]
    assert db.get_run(stored[1].run_id) == stored[1]

    # Two runs of one page at one seq: refused the same way, naming both.
    twins = [Run(session_id=session.session_id, seq=9), Run(session_id=session.session_id, seq=9)]
    with pytest.raises(ValueError, match="seq 9") as refused:
        db.import_records(RecordPage(kind="runs", records=twins))
    assert twins[0].run_id in str(refused.value) and twins[1].run_id in str(refused.value)
    assert db.get_run(twins[0].run_id) is None


def test_a_stored_run_keeps_its_seq(db: SqlDb) -> None:
    session = Session(user_id="u")
    run = Run(session_id=session.session_id, seq=1, input="first")
    db.import_records(RecordPage(kind="runs", records=[run]))
    moved = run.model_copy(update={"seq": 3})
    with pytest.raises(ValueError, match="keeps its seq"):
        db.import_records(RecordPage(kind="runs", records=[moved]))
    assert db.get_run(run.run_id) == run
    # The same run at its own seq is replaced as given.
    done = run.model_copy(update={"output": "done"})
    db.import_records(RecordPage(kind="runs", records=[done]))
    assert db.get_run(run.run_id) == done


def test_a_run_of_the_user_in_another_users_session_is_exported_with_both(db: SqlDb) -> None:
    """forget_user deletes a run by its session's user and by its own user_id."""
    owner, guest = Session(user_id="owner"), Session(user_id="guest")
    db.import_records(RecordPage(kind="sessions", records=[owner, guest]))
    visit = Run(session_id=owner.session_id, seq=1, user_id="guest")
    db.import_records(RecordPage(kind="runs", records=[visit]))
    for user in ("owner", "guest"):
        assert db.export_records("runs", user_id=user).records == [visit], user
    assert db.export_records("runs", user_id="nobody").records == []


# -- storage_report -------------------------------------------------------------------------
def test_storage_report_of_a_database_kern_never_used_creates_nothing(
    backend: Backend, db: SqlDb
) -> None:
    report = db.storage_report()
    assert report.backend == backend.name
    assert report.schema_versions == {} and report.counts == {}
    assert {"kern_sessions", "kern_runs", "kern_schema_versions"} <= set(report.missing)
    # Version 2 of runs adds retention's (created_at, run_id) index; DuckDB keeps its own.
    assert report.expected_versions["kern_runs"] == (1 if backend.name == "duckdb" else 2)
    assert report.pending_migrations and not report.healthy
    assert backend.tables(db) == set()  # nothing was created


def test_storage_report_shows_a_table_dropped_by_hand_and_leaves_it_missing(
    backend: Backend, db: SqlDb
) -> None:
    session = Session(user_id="u")
    db.import_records(RecordPage(kind="sessions", records=[session]))
    db.import_records(RecordPage(kind="runs", records=runs_of(session, range(1, 4))))
    report = db.storage_report()
    assert report.healthy, report
    assert report.schema_versions == report.expected_versions
    assert report.counts == {"sessions": 1, "runs": 3, "memories": 0, "learnings": 0}
    assert report.server_version and report.capabilities

    backend.sql(db, "DROP TABLE {q}kern_sessions")
    for _ in range(2):  # a report does not put it back
        report = db.storage_report()
        assert "kern_sessions" in report.missing and not report.healthy
        assert "sessions" not in report.counts and report.counts["runs"] == 3
    assert "kern_sessions" not in backend.tables(db)

    again = backend.open()  # a new Db's first use checks the schema and restores it
    try:
        again.create_tables()
        assert again.storage_report().healthy
    finally:
        again.close()
