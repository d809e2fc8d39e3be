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

Faults. ``unavailable`` picks the psycopg errors that mean the server cannot be reached:
a connection that could not be made or was lost (psycopg raises those without a SQLSTATE;
SQLAlchemy marks a broken connection as invalidated), SQLSTATE class 08 (connection
exception), and 57P01-57P03 (the server shutting down, crashed, or still starting up). A
statement timeout (57014), a lock timeout or a deadlock are ``OperationalError`` too, and
stay what they are.

Migrations. ``create_tables`` runs in one transaction that first takes a second advisory
lock (two-int key space, so it never meets a session lock) scoped to the schema; the
schema is created under that lock if missing. Several processes starting at once queue on
it, and each re-reads ``kern_schema_versions`` before doing anything. Besides the generic
tables, Postgres's own migrations add the search columns (``kern.db.postgres.search``) and
a partial index for the history an agent turn reads (``kern.db.postgres.history``).

Vectors. Where the ``vector`` extension can be used, ``use_pgvector`` turns on
``kern.db.postgres.vectors``: its migrations (the ``embedding_vec`` column and HNSW
indexes), its search, and ``hnsw.iterative_scan`` on each connection. Until then, or without
it, ``vector_search`` is the SQL layer's exact scan.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Collection, Mapping
from typing import Any, ClassVar

import psycopg
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
from sqlalchemy.exc import DBAPIError

from kern.db.base import VectorTable
from kern.db.postgres import search
from kern.db.postgres.history import history_expectations, history_plan
from kern.db.postgres.vectors import CONNECTION_SETTING, PgVector, VectorPath
from kern.db.sql.dialect import Scored, SqlDialect
from kern.db.sql.migrations import Plan
from kern.db.sql.prepared import Link
from kern.db.sql.schema import Tables
from kern.db.sql.verify import Expectations, Expected
from kern.records import Embedding

#: The first key of kern's two-int advisory locks ("kern" in ASCII); the second is the
#: schema's hash.
MIGRATION_LOCK_CLASS = 0x6B65726E
_SCHEMA_EXISTS = text("SELECT 1 FROM pg_namespace WHERE nspname = :name")
#: Which of the given names exist in the schema: relations (tables, indexes) by name, and
#: columns as ``<table>.<column>``. One catalog query.
_EXISTING = text(
    """
    SELECT c.relname::text AS name
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = coalesce(CAST(:schema AS text), current_schema())
      AND c.relname::text = ANY(CAST(:names AS text[]))
    UNION ALL
    SELECT c.relname::text || '.' || a.attname::text
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = coalesce(CAST(:schema AS text), current_schema())
      AND a.attnum > 0 AND NOT a.attisdropped
      AND c.relname::text || '.' || a.attname::text = ANY(CAST(:names AS text[]))
    """
)
#: SQLSTATEs of a server that is going away or not there yet: admin_shutdown,
#: crash_shutdown, cannot_connect_now ("the database system is starting up").
SERVER_GONE = frozenset({"57P01", "57P02", "57P03"})
#: The same as psycopg's classes, for the contract's door (``unavailable_errors``): raw
#: driver errors that reach it unwrapped are turned into StorageUnavailableError too.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.errors.ConnectionException,
    psycopg.errors.AdminShutdown,
    psycopg.errors.CrashShutdown,
    psycopg.errors.CannotConnectNow,
)


def table_key(tables: Tables) -> int:
    """A stable number for this schema + prefix: the seed of the session lock hash,
    so that two kern tables in one database never make each other's writers wait."""
    runs = tables.runs
    return zlib.crc32(f"{runs.schema or ''}.{runs.name}".encode())


_CONFIGURED = "kern_postgres"
_PGVECTOR_CONFIGURED = "kern_pgvector"


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


def _configure_pgvector(dbapi_connection: Any) -> None:
    """Once per connection, while pgvector is used: iterative index scans (see
    ``kern.db.postgres.vectors``), so that filters never cut a search short."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(CONNECTION_SETTING)
    finally:
        cursor.close()


class PostgresDialect(SqlDialect):
    """Advisory-locked seq, autocommit reads, tsvector search, pgvector where it can."""

    name = "postgresql"
    # The advisory lock serialises next_seq + insert per session (see the module docstring).
    seq_serialised: ClassVar[bool] = True
    # An append is one autocommitted statement first; the lock only after a collision.
    one_statement_append: ClassVar[bool] = True
    # The idle-session candidates probe each session for a running run: a subplan whose
    # estimate, times the candidates, passes jit_above_cost, so a batch with nothing to
    # remove spent ~10 ms compiling (0.1 ms without). Short statements gain nothing from JIT.
    retention_setup: ClassVar[tuple[str, ...]] = ("SET LOCAL jit = off",)
    array_parameters: ClassVar[bool] = True
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
        self.session_search = search.TextSearch(
            tables.sessions, sql_dialect, self.prepare, keyed=True
        )
        #: The pgvector path, once ``use_pgvector`` turned it on.
        self.pgvector: PgVector | None = None

    def use_pgvector(self, path: VectorPath) -> None:
        """Search (and migrate) with pgvector from now on; ``path`` names its schema."""
        self.pgvector = PgVector(self.tables, self.sql_dialect, self.prepare, path)

    # -- connections and transactions ----------------------------------------------------
    def prepare_connection(self, pooled: Any) -> Callable[[], None] | None:
        dbapi_connection = pooled.dbapi_connection
        previous = dbapi_connection.autocommit
        if not previous:
            dbapi_connection.autocommit = True
        if _CONFIGURED not in pooled.info:
            _configure(dbapi_connection)
            pooled.info[_CONFIGURED] = True
        if self.pgvector is not None and _PGVECTOR_CONFIGURED not in pooled.info:
            _configure_pgvector(dbapi_connection)
            pooled.info[_PGVECTOR_CONFIGURED] = True
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

    def unavailable(self, exc: BaseException) -> BaseException | None:
        driver = exc.orig if isinstance(exc, DBAPIError) else exc
        if not isinstance(driver, psycopg.Error):
            return None
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return driver  # SQLAlchemy found the connection closed or broken
        if not isinstance(driver, psycopg.OperationalError):
            return None
        state = driver.sqlstate
        if state is None or state.startswith("08") or state in SERVER_GONE:
            return driver
        return None

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

    # -- the start-up check of the schema -------------------------------------------------
    def server_version(self, conn: Connection) -> str | None:
        return f"PostgreSQL {conn.exec_driver_sql('SHOW server_version').scalar_one()}"

    def existing_objects(self, conn: Connection, names: Collection[str]) -> set[str]:
        params = {"schema": self.tables.runs.schema, "names": list(names)}
        return {row[0] for row in conn.execute(_EXISTING, params)}

    def search_expectations(self) -> Expectations:
        """The search columns and indexes, the history index, and the runs' unique
        ``(session_id, seq)`` (an index of its own in Postgres, dropped by dropping the
        constraint; added back only if no two runs of a session share a seq)."""
        tables, dialect = self.tables, self.sql_dialect
        runs = tables.runs
        quote = dialect.identifier_preparer
        unique = f"uq_{runs.name}_session_seq"
        add = (
            f"ALTER TABLE {quote.format_table(runs)} ADD CONSTRAINT {quote.quote(unique)} "
            "UNIQUE (session_id, seq)"
        )

        def restore_unique(conn: Connection, missing: frozenset[str]) -> None:
            conn.exec_driver_sql(add)

        return {
            f"{runs.name}_unique_seq": Expected((unique,), restore_unique),
            **search.search_expectations(tables.memories, tables.learnings, dialect),
            **search.session_search_expectations(tables.sessions, dialect),
            **history_expectations(tables, dialect),
            **(self.pgvector.expectations() if self.pgvector is not None else {}),
        }

    # -- Postgres's own migrations ---------------------------------------------------------
    def search_plan(self) -> Plan:
        """The tsvector columns and GIN indexes, the history index of agent turns, and the
        pgvector columns when pgvector is used."""
        tables, dialect = self.tables, self.sql_dialect
        return {
            **search.search_plan(tables.memories, tables.learnings, dialect),
            **search.session_search_plan(tables.sessions, dialect),
            **history_plan(tables, dialect),
            **(self.pgvector.plan() if self.pgvector is not None else {}),
        }

    # -- vector search ---------------------------------------------------------------------
    def vector_search(
        self,
        link: Link,
        table: VectorTable,
        embedding: Embedding,
        filters: Mapping[str, Any],
        limit: int,
    ) -> list[Scored]:
        """pgvector's answer when it is used (``kern.db.postgres.vectors``), else exact."""
        if self.pgvector is None:
            return super().vector_search(link, table, embedding, filters, limit)
        return self.pgvector.search(
            link, table, embedding, filters, limit, self.exact_vectors.search
        )
