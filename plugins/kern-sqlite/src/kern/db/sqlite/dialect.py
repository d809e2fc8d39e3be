"""SQLite's answers to the SQL layer's dialect seams (see ``kern.db.sql.dialect``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from sqlalchemy import Connection, Dialect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from kern.db.sql.dialect import SqlDialect
from kern.db.sql.migrations import Plan
from kern.db.sql.prepared import Link
from kern.db.sql.schema import Tables
from kern.db.sqlite import engine as sqlite_engine
from kern.db.sqlite.fts import MEMORY_COLUMNS, FtsIndex, fts_plan


class SqliteDialect(SqlDialect):
    """Writes run under ``BEGIN IMMEDIATE`` (one writer per file), search runs on FTS5."""

    name = "sqlite"
    # BEGIN IMMEDIATE holds the database's single write lock from max(seq) to the insert.
    seq_serialised: ClassVar[bool] = True
    insert_construct = staticmethod(sqlite_insert)

    def __init__(self, tables: Tables, sql_dialect: Dialect) -> None:
        super().__init__(tables, sql_dialect)
        self.memory_search = FtsIndex(tables.memories, self.prepare, key_columns=MEMORY_COLUMNS)
        self.learning_search = FtsIndex(tables.learnings, self.prepare)

    def prepare_connection(self, pooled: Any) -> Callable[[], None] | None:
        return sqlite_engine.prepare_connection(pooled)

    def begin_write(self, link: Link) -> None:
        link.sql("BEGIN IMMEDIATE")

    def begin_ddl(self, conn: Connection) -> None:
        # Also the migration lock: one BEGIN IMMEDIATE at a time per database file.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    def search_plan(self) -> Plan:
        return fts_plan(self.tables)
