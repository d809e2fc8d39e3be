"""Postgres's answers to the SQL layer's dialect seams (see ``kern.db.sql.dialect``).

Transactions. While kern uses a pooled connection, psycopg is in autocommit mode (given
back as it was afterwards): a read is one statement and one round trip, with no
``BEGIN``/``ROLLBACK`` around it. A write says ``BEGIN ISOLATION LEVEL READ COMMITTED``
itself, whatever the engine's or server's default, because the reasoning below is about
read committed. Each connection is set to ``plan_cache_mode = force_custom_plan`` the
first time kern uses it (see ``_configure``).

``seq``. ``append_run`` takes a transaction-level advisory lock on the session
(``pg_advisory_xact_lock(hashtextextended(session_id, <table key>))``) and then reads
``max(seq) + 1`` through the ``(session_id, seq)`` index, in a second statement: under read
committed that statement's snapshot is taken after the lock was granted, so it sees the
previous holder's committed run. The lock is released when the transaction ends, so two
writers of one session (threads, tasks or processes) take turns, writers of different
sessions never wait for each other, and no attempt is wasted on a collision. The unique
``(session_id, seq)`` key stays as the backstop.

Migrations. ``create_tables`` runs in one transaction that first takes a second advisory
lock (two-int key space, so it never meets a session lock) scoped to the schema; the
schema is created under that lock if missing. Several processes starting at once queue on
it, and each re-reads ``kern_schema_versions`` before doing anything. Besides the generic
tables, Postgres's own migrations add the search columns (``kern.db.postgres.search``) and
a partial index for the history an agent turn reads (``kern.db.postgres.history``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Connection,
    Dialect,
    String,
    bindparam,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert

from kern.db.postgres import search
from kern.db.postgres.history import history_plan
from kern.db.sql.dialect import SqlDialect
from kern.db.sql.migrations import Plan
from kern.db.sql.prepared import Link
from kern.db.sql.schema import Tables

#: The first key of kern's two-int advisory locks ("kern" in ASCII); the second is the
#: schema's hash.
MIGRATION_LOCK_CLASS = 0x6B65726E
_SCHEMA_EXISTS = text("SELECT 1 FROM pg_namespace WHERE nspname = :name")


def table_key(tables: Tables) -> int:
    """A stable number for this schema + prefix: the seed of the session lock hash,
    so that two kern tables in one database never make each other's writers wait."""
    runs = tables.runs
    return zlib.crc32(f"{runs.schema or ''}.{runs.name}".encode())


_CONFIGURED = "kern_postgres"


def _configure(dbapi_connection: Any) -> None:
    """Once per connection (in autocommit): custom plans for every statement.

    psycopg prepares a statement it has run 5 times, and the server then may settle on a
    generic plan, chosen once from the statistics of that moment and kept until the next
    ANALYZE. A plan chosen while ``kern_runs`` was nearly empty (a sequential scan: cheapest
    over one page) would then read a 10,000-run session whole on every append, for as long
    as autovacuum is off or has not run yet. ``force_custom_plan`` keeps the parse saved by
    preparing and plans each execution for its values and the table as it is now: a few
    microseconds for kern's one-table statements.
    """
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET plan_cache_mode = force_custom_plan")
    finally:
        cursor.close()


class PostgresDialect(SqlDialect):
    """Advisory-locked seq, autocommit reads, tsvector search."""

    name = "postgresql"
    # The advisory lock serialises next_seq + insert per session (see the module docstring).
    seq_serialised: ClassVar[bool] = True
    insert_construct = staticmethod(pg_insert)

    def __init__(self, tables: Tables, sql_dialect: Dialect) -> None:
        super().__init__(tables, sql_dialect)
        session_id = bindparam("session_id", type_=String)
        key = literal(table_key(tables), BigInteger)
        self._seq_lock = self.prepare(
            select(func.pg_advisory_xact_lock(func.hashtextextended(session_id, key)))
        )
        self.memory_search = search.TextSearch(
            tables.memories, sql_dialect, self.prepare, keyed=True
        )
        self.learning_search = search.TextSearch(tables.learnings, sql_dialect, self.prepare)

    # -- connections and transactions ----------------------------------------------------
    def prepare_connection(self, pooled: Any) -> Callable[[], None] | None:
        dbapi_connection = pooled.dbapi_connection
        previous = dbapi_connection.autocommit
        if not previous:
            dbapi_connection.autocommit = True
        if _CONFIGURED not in pooled.info:
            _configure(dbapi_connection)
            pooled.info[_CONFIGURED] = True
        if previous:
            return None

        def undo() -> None:
            # After commit or rollback the connection is idle again; a broken one is
            # discarded by the pool, whatever its mode.
            if not dbapi_connection.closed:
                dbapi_connection.autocommit = False

        return undo

    def begin_write(self, link: Link) -> None:
        link.sql("BEGIN ISOLATION LEVEL READ COMMITTED")

    def begin_ddl(self, conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN ISOLATION LEVEL READ COMMITTED")

    def lock_for_migrations(self, conn: Connection) -> None:
        schema = self.tables.runs.schema
        conn.execute(
            select(func.pg_advisory_xact_lock(MIGRATION_LOCK_CLASS, func.hashtext(schema or "")))
        )
        if schema is None:
            return
        # Checked first: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on the
        # database even when the schema is there, which a kern role may well not have.
        if conn.execute(_SCHEMA_EXISTS, {"name": schema}).first() is None:
            quoted = self.sql_dialect.identifier_preparer.quote_schema(schema)
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quoted}")

    # -- runs -------------------------------------------------------------------------
    def next_seq(self, link: Link, session_id: str) -> int:
        link.first(self._seq_lock, {"session_id": session_id})
        return super().next_seq(link, session_id)

    # -- Postgres's own migrations ---------------------------------------------------------
    def search_plan(self) -> Plan:
        """The tsvector columns and GIN indexes, and the history index of agent turns."""
        tables, dialect = self.tables, self.sql_dialect
        return {
            **search.search_plan(tables.memories, tables.learnings, dialect),
            **history_plan(tables, dialect),
        }
