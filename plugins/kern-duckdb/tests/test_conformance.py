"""kern's backend conformance suite against DuckDB, run exactly as a third party would.

The read counter is DuckDB's own profiler: the rows that the table scans of each statement
read (``rows_scanned`` of every ``TABLE_SCAN`` operator, an index lookup counting the rows it
fetched), summed over the statements the measured read issues. See ``rows_scanned``.

The raw scan (``duckdb_rows``) reads every row of every table of the db's prefix (the term
tables of text search and the run counters included) with plain SQL.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from kern.testing.conformance import AsyncBackendConformance, BackendConformance, Capabilities

PROFILING = (
    "PRAGMA enable_profiling = 'no_output'",
    "SET profiling_mode = 'detailed'",  # per-operator metrics, rows_scanned among them
    "SET profiling_coverage = 'ALL'",
)


def _scanned(node: dict[str, Any]) -> int:
    own = int(node.get("rows_scanned", 0)) if node.get("type") == "TABLE_SCAN" else 0
    return own + sum(_scanned(child) for child in node.get("children", ()))


@contextmanager
def rows_scanned(engine: Engine) -> Iterator[list[int]]:
    """Count the rows DuckDB's table scans read for statements run on ``engine``.

    Yields a one-item list holding the running count. A statement's profile is complete
    once its rows are fetched, so it is read when its connection runs the next statement
    or ends its transaction (SQLAlchemy's ``commit``/``rollback`` events fire before the
    driver's, which would replace the profile). Listening to the engine also routes kern's
    statements through SQLAlchemy's events (see ``kern.db.sql.prepared``).
    """
    count = [0]
    profiled: set[Any] = set()
    pending: set[Any] = set()

    def collect(dbapi_connection: Any) -> None:
        if dbapi_connection in pending:
            pending.discard(dbapi_connection)
            profile = json.loads(dbapi_connection.get_profiling_information(format="json"))
            count[0] += sum(_scanned(node) for node in profile.get("operator", ()))

    def before_cursor_execute(conn, cursor, statement, parameters, context, executemany):
        dbapi_connection = conn.connection.dbapi_connection
        collect(dbapi_connection)
        if dbapi_connection not in profiled:
            for setting in PROFILING:
                dbapi_connection.execute(setting)
            profiled.add(dbapi_connection)
        pending.add(dbapi_connection)

    def end_of_transaction(conn):
        collect(conn.connection.dbapi_connection)

    event.listen(engine, "before_cursor_execute", before_cursor_execute)
    event.listen(engine, "commit", end_of_transaction)
    event.listen(engine, "rollback", end_of_transaction)
    try:
        yield count
    finally:
        event.remove(engine, "before_cursor_execute", before_cursor_execute)
        event.remove(engine, "commit", end_of_transaction)
        event.remove(engine, "rollback", end_of_transaction)
    assert not pending, "a profiled statement was not counted"


def duckdb_rows(engine: Engine, prefix: str) -> list[str]:
    """``<table>: <column values>`` for every row of every base table named ``<prefix>...``."""
    rows: list[str] = []
    with engine.connect() as conn:
        tables = conn.execute(
            text(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_type = 'BASE TABLE' ORDER BY table_schema, table_name"
            )
        ).all()
        for schema, name in tables:
            if not name.startswith(prefix):
                continue
            quoted = ".".join('"' + part.replace('"', '""') + '"' for part in (schema, name))
            for row in conn.exec_driver_sql(f"SELECT * FROM {quoted}"):
                rows.append(f"{name}: " + " | ".join(str(value) for value in row))
    return rows


class TestDuckDbConformance(BackendConformance):
    #: Every capability: the full contract (kern.testing.capabilities).
    capabilities = Capabilities()

    def db_factory(self, tmp_path: Path) -> tuple[str, dict[str, Any]]:
        return "kern.db.duckdb:DuckDb", {"db_file": str(tmp_path / "kern.duckdb")}

    def count_reads(self, db: Any, fn: Callable[[], Any]) -> int:
        with rows_scanned(db.engine) as count:
            fn()
        return count[0]

    def raw_scan(self, db: Any) -> list[str]:
        return duckdb_rows(db.engine, db.table_prefix)


class TestAsyncDuckDbConformance(AsyncBackendConformance):
    #: Every capability: the full contract (kern.testing.capabilities).
    capabilities = Capabilities()

    def db_factory(self, tmp_path: Path) -> tuple[str, dict[str, Any]]:
        return "kern.db.duckdb:AsyncDuckDb", {"db_file": str(tmp_path / "kern.duckdb")}

    async def count_reads(self, db: Any, fn: Callable[[], Awaitable[Any]]) -> int:
        with rows_scanned(db.engine) as count:
            await fn()
        return count[0]

    def raw_scan(self, db: Any) -> list[str]:
        return duckdb_rows(db.engine, db.table_prefix)
