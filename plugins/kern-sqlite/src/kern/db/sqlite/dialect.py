"""SQLite's answers to the SQL layer's dialect seams (see ``kern.db.sql.dialect``)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from types import ModuleType
from typing import Any, ClassVar, cast

from sqlalchemy import Connection, Dialect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from kern.db.base import VectorTable
from kern.db.sql.dialect import Scored, SqlDialect
from kern.db.sql.migrations import Plan
from kern.db.sql.prepared import Link
from kern.db.sql.schema import Tables
from kern.db.sql.verify import Expectations
from kern.db.sqlite import engine as sqlite_engine
from kern.db.sqlite.fts import (
    MEMORY_COLUMNS,
    SECURE_DELETE_SINCE,
    SESSION_COLUMNS,
    FtsIndex,
    all_fts_specs,
    fts_expectations,
    fts_plan,
    fts_specs,
    optimize_ddl,
    secure_delete_on,
    session_spec,
    setting_name,
)
from kern.db.sqlite.vectors import SqliteVecSearch, choose_vector_index, load_sqlite_vec
from kern.records import Embedding

#: Longest wait (ms) of forget_user's log checkpoint for readers to move on.
CHECKPOINT_WAIT_MS = 2000


#: ``pooled.info`` key: sqlite-vec is loaded into this connection.
VEC_LOADED = "kern_sqlite_vec"


class SqliteDialect(SqlDialect):
    """Writes run under ``BEGIN IMMEDIATE`` (one writer per file), search runs on FTS5,
    vector search on sqlite-vec where it loads (``kern.db.sqlite.vectors``)."""

    name = "sqlite"
    # BEGIN IMMEDIATE holds the database's single write lock from max(seq) to the insert.
    seq_serialised: ClassVar[bool] = True
    insert_construct = staticmethod(sqlite_insert)

    def __init__(self, tables: Tables, sql_dialect: Dialect) -> None:
        super().__init__(tables, sql_dialect)
        #: True when the driver's SQLite runs the FTS indexes with secure-delete (see
        #: ``kern.db.sqlite.fts``); else forget_user merges them after its deletes.
        self.secure_delete = tuple(sql_dialect.loaded_dbapi.sqlite_version_info) >= (
            SECURE_DELETE_SINCE
        )
        self.memory_search = FtsIndex(tables.memories, self.prepare, key_columns=MEMORY_COLUMNS)
        self.learning_search = FtsIndex(tables.learnings, self.prepare)
        self.session_search = FtsIndex(tables.sessions, self.prepare, key_columns=SESSION_COLUMNS)
        #: The vector search in use and why (``SqliteDb.vector_index``).
        self.vector_index = choose_vector_index(cast(ModuleType, sql_dialect.loaded_dbapi))
        self.vec_search = (
            SqliteVecSearch(tables, self.prepare) if self.vector_index.in_sql else None
        )

    def prepare_connection(self, pooled: Any) -> Callable[[], None] | None:
        undo = sqlite_engine.prepare_connection(pooled)
        if self.vec_search is not None and VEC_LOADED not in pooled.info:
            load_sqlite_vec(pooled.dbapi_connection)
            pooled.info[VEC_LOADED] = True
        return undo

    def begin_write(self, link: Link) -> None:
        link.sql("BEGIN IMMEDIATE")

    def begin_ddl(self, conn: Connection) -> None:
        # Also the migration lock: one BEGIN IMMEDIATE at a time per database file.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    def search_plan(self) -> Plan:
        return fts_plan(self.tables)

    # -- the start-up check of the schema -------------------------------------------------
    def server_version(self, conn: Connection) -> str | None:
        """The SQLite library the driver links (``sqlite3.sqlite_version``)."""
        return f"SQLite {conn.exec_driver_sql('SELECT sqlite_version()').scalar_one()}"

    def existing_objects(self, conn: Connection, names: Collection[str]) -> set[str]:
        """Tables, indexes, views and triggers from ``sqlite_master`` (one query), and each
        index's secure-delete setting where kern uses it."""
        found = {name for (name,) in conn.exec_driver_sql("SELECT name FROM sqlite_master")}
        if self.secure_delete:
            for spec in all_fts_specs(self.tables):
                if f"{spec.name}_config" in found and secure_delete_on(conn, spec):
                    found.add(setting_name(spec))
        return found & set(names)

    def search_expectations(self) -> Expectations:
        return fts_expectations(self.tables, secure_delete=self.secure_delete)

    # -- forget_user ----------------------------------------------------------------------
    def purge_deleted(self, link: Link, deleted: Mapping[str, int]) -> None:
        """Without secure-delete, merge each FTS index that lost rows into one segment, so
        that none of the deleted rows' words stay in it (about 0.15 s per 10,000 memories,
        under forget_user's write lock)."""
        if self.secure_delete:
            return  # the deletes already took the words out
        memories, learnings = fts_specs(self.tables)
        sessions = session_spec(self.tables)
        for logical, spec in (
            ("memories", memories),
            ("learnings", learnings),
            ("sessions", sessions),
        ):
            if deleted.get(logical):
                link.sql(optimize_ddl(spec))

    def after_forget(self, link: Link) -> None:
        """Checkpoint the write-ahead log and truncate it: the pages that held the forgotten
        rows are overwritten in the file (with ``secure_delete`` on, zeroed) and no copy of
        them stays in the ``-wal`` file. If a reader keeps an older snapshot past
        ``CHECKPOINT_WAIT_MS``, the next checkpoint finishes the work."""
        cursor = link.dbapi_connection.cursor()
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                return  # in memory: no file to clean
            timeout = int(cursor.execute("PRAGMA busy_timeout").fetchone()[0])
            cursor.execute(f"PRAGMA busy_timeout = {min(timeout, CHECKPOINT_WAIT_MS)}")
            try:
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            finally:
                cursor.execute(f"PRAGMA busy_timeout = {timeout}")
        finally:
            cursor.close()

    # -- vector search ------------------------------------------------------------------
    def vector_search(
        self,
        link: Link,
        table: VectorTable,
        embedding: Embedding,
        filters: Mapping[str, Any],
        limit: int,
    ) -> list[Scored]:
        """In SQL with sqlite-vec when it is loaded, else the numpy scan of the base class."""
        if self.vec_search is None:
            return super().vector_search(link, table, embedding, filters, limit)
        return self.vec_search.search(link, table, embedding, filters, limit)
