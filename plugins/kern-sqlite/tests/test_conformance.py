"""kern's backend conformance suite against SQLite, run exactly as a third party would.

The read counter is SQLite's own: the number of virtual-machine instructions the statements
of a read execute (``sqlite3.Connection.set_progress_handler(counter, 1)``), installed on
each DBAPI connection the read uses through SQLAlchemy's ``before_cursor_execute`` event.

The raw scan (``sqlite_rows``) reads every row of every table of the db's prefix, the FTS5
index's shadow tables (``*_fts_data``, ``*_fts_idx``...) included, with plain SQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from kern.testing.conformance import AsyncBackendConformance, BackendConformance, Capabilities


@contextmanager
def vm_instructions(engine: Engine) -> Iterator[list[int]]:
    """Count the SQLite VM instructions run by statements on ``engine`` inside the block.

    Yields a one-item list holding the running count.
    """
    count = [0]
    connections: list[sqlite3.Connection] = []

    def step() -> int:
        count[0] += 1
        return 0  # non-zero would abort the statement

    def before_cursor_execute(conn, cursor, statement, parameters, context, executemany):
        dbapi_connection = cursor.connection
        dbapi_connection.set_progress_handler(step, 1)
        connections.append(dbapi_connection)

    event.listen(engine, "before_cursor_execute", before_cursor_execute)
    try:
        yield count
    finally:
        event.remove(engine, "before_cursor_execute", before_cursor_execute)
        for dbapi_connection in connections:
            # closed, or owned by another thread: it is no longer counted either way
            with suppress(sqlite3.Error):
                dbapi_connection.set_progress_handler(None, 1)


def raw_text(value: Any) -> str:
    """A stored value as text; blobs byte for byte (latin-1), so ASCII in them stays legible."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("latin-1")
    return str(value)


def sqlite_rows(engine: Engine, prefix: str) -> list[str]:
    """``<table>: <column values>`` for every row of every table named ``<prefix>...``
    (virtual FTS5 tables and their shadow tables included; views left out)."""
    rows: list[str] = []
    with engine.connect() as conn:
        names = conn.execute(
            text("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        ).scalars()
        for name in [name for name in names if name.startswith(prefix)]:
            quoted = '"' + name.replace('"', '""') + '"'
            for row in conn.exec_driver_sql(f"SELECT * FROM {quoted}"):
                rows.append(f"{name}: " + " | ".join(raw_text(value) for value in row))
    return rows


class TestSqliteConformance(BackendConformance):
    #: Every capability: the full contract (kern.testing.capabilities).
    capabilities = Capabilities()

    def db_factory(self, tmp_path: Path) -> tuple[str, dict[str, Any]]:
        return "kern.db.sqlite:SqliteDb", {"db_file": str(tmp_path / "kern.db")}

    def count_reads(self, db: Any, fn: Callable[[], Any]) -> int:
        with vm_instructions(db.engine) as count:
            fn()
        return count[0]

    def raw_scan(self, db: Any) -> list[str]:
        return sqlite_rows(db.engine, db.table_prefix)


class TestAsyncSqliteConformance(AsyncBackendConformance):
    #: Every capability: the full contract (kern.testing.capabilities).
    capabilities = Capabilities()

    def db_factory(self, tmp_path: Path) -> tuple[str, dict[str, Any]]:
        return "kern.db.sqlite:AsyncSqliteDb", {"db_file": str(tmp_path / "kern.db")}

    async def count_reads(self, db: Any, fn: Callable[[], Awaitable[Any]]) -> int:
        with vm_instructions(db.sync_db.engine) as count:
            await fn()
        return count[0]

    def raw_scan(self, db: Any) -> list[str]:
        return sqlite_rows(db.engine, db.table_prefix)
