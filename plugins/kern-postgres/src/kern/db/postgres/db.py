"""``PostgresDb``: kern's storage in PostgreSQL through SQLAlchemy 2 Core and psycopg 3.

Vectors: before its first migration a Db chooses its vector search once (pgvector or
exact, ``kern.db.postgres.vectors``), logs which, and from then on makes sure each vector
dimension it writes has its HNSW index before the write.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from kern.db.base import VectorTable
from kern.db.postgres import engine as pg_engine
from kern.db.postgres.dialect import UNAVAILABLE_ERRORS, PostgresDialect
from kern.db.postgres.failover import (
    POLICIES,
    ConnectionLostError,
    PoolWatch,
    Stage,
    lost,
    retrying,
)
from kern.db.postgres.report import TEXT_SEARCH, vector_capability
from kern.db.postgres.vectors import (
    PGVECTOR,
    PgVector,
    VectorPath,
    choose_path,
    find_extension,
    inspect_path,
    log,
)
from kern.db.report import Capability
from kern.db.sql import SqlDb
from kern.db.sql.migrations import Plan
from kern.db.sql.schema import DEFAULT_PREFIX
from kern.db.sql.verify import Expectations
from kern.db.transfer import RecordPage
from kern.errors import ConfigurationError, StorageUnavailableError
from kern.records import Embedding, Learning, Memory

if TYPE_CHECKING:
    from kern.db.sql.prepared import Link


class PostgresSqlDb(SqlDb):
    """The storage contract on any Postgres ``Engine`` (also the sync face of an async one).

    No URL handling: ``PostgresDb`` checks what users give it, ``AsyncPostgresDb`` runs one
    of these on its engine's ``sync_engine`` inside SQLAlchemy's greenlet bridge. A lost
    connection is retried where nothing can be stored twice, and on an engine kern built
    dead pooled connections are replaced at checkout (``kern.db.postgres.failover``).
    """

    backend_name = "postgres"
    dialect_class: ClassVar[type[PostgresDialect]] = PostgresDialect
    # The connection-level classes only: a plain psycopg OperationalError is also a
    # statement timeout, so most faults are told apart in SqlDb (PostgresDialect.unavailable).
    unavailable_errors = UNAVAILABLE_ERRORS
    dialect: PostgresDialect

    def __init__(self, engine: Engine, *, owns_engine: bool = True, **kwargs: Any) -> None:
        super().__init__(engine, owns_engine=owns_engine, **kwargs)
        self._vector_path: VectorPath | None = None
        self._vector_lock = threading.Lock()
        #: On kern's own engines only: listeners on a user's engine would reconfigure it.
        self._pool_watch = PoolWatch(engine) if owns_engine else None

    # -- lost connections (kern.db.postgres.failover) ------------------------------------------
    @contextmanager
    def _link(self, *, write: bool) -> Iterator[Link]:
        """As ``SqlDb._link``; a connection lost after it was made raises
        ``ConnectionLostError``, saying where, so that ``retrying`` can tell whether running
        the operation again is safe."""
        stage: Stage = "enter"
        try:
            with super()._link(write=write) as link:
                stage = "body"
                yield link
                stage = "exit"
        except StorageUnavailableError as error:
            replaced = (
                None
                if isinstance(error, ConnectionLostError)
                else lost(error, write=write, stage=stage)
            )
            if replaced is None:
                raise
            if self._pool_watch is not None:  # the others made so far are suspect too
                self._pool_watch.renew()
            raise replaced from error.__cause__

    # -- which vector search ---------------------------------------------------------------
    @property
    def vector_index(self) -> str | None:
        """``"pgvector hnsw"`` or ``"exact"``: the vector search in use; None until the
        first use of the db (or ``create_tables()``) chose it."""
        return None if self._vector_path is None else self._vector_path.index

    @property
    def vector_index_reason(self) -> str | None:
        """Why the search is exact (None when pgvector is used, or not chosen yet)."""
        return None if self._vector_path is None else self._vector_path.reason

    def create_tables(self) -> None:
        """Choose the vector search (once), then create and migrate the tables."""
        if not self._ready and not self._closed and self._vector_path is None:
            self._choose_vector_path()
        super().create_tables()

    def _choose_vector_path(self) -> None:
        with self._vector_lock:
            if self._vector_path is not None:
                return
            dialect = self.dialect
            with self._ddl_connection() as conn:
                path = choose_path(
                    conn,
                    begin=dialect.begin_ddl,
                    lock=dialect.lock_for_migrations,
                    unavailable=dialect.unavailable,
                )
            if path.index == PGVECTOR:
                dialect.use_pgvector(path)
            self._vector_path = path
            log.info(path.describe(self.storage_target()))

    # -- writes of vectors: their dimension's index first ------------------------------------
    def _index_dimensions(self, table: VectorTable, embeddings: Iterable[Embedding]) -> None:
        """Make sure the HNSW index of each dimension in ``embeddings`` exists (pgvector)."""
        if not self._ready:
            self.create_tables()
        pgvector = self.dialect.pgvector
        if pgvector is None:
            return
        dimensions = {len(e.vector) for e in embeddings}
        for dims in sorted(d for d in dimensions if not pgvector.indexed(table, d)):
            try:
                with self._ddl_connection() as conn:
                    pgvector.ensure_index(
                        conn,
                        table,
                        dims,
                        exists=self._has_object,
                        begin=self.dialect.begin_ddl,
                        lock=self.dialect.lock_for_migrations,
                    )
            except DBAPIError as exc:
                if self.dialect.unavailable(exc) is not None:
                    raise
                # The write does not need the index (the search is then exact in SQL).
                log.warning("kern could not create the HNSW index of %d dimensions: %s", dims, exc)

    def _has_object(self, conn: Connection, name: str) -> bool:
        found = name in self.dialect.existing_objects(conn, [name])
        conn.rollback()
        return found

    def upsert_memory(self, memory: Memory, *, embedding: Embedding | None = None) -> Memory:
        if embedding is not None:
            self._index_dimensions("memories", [embedding])
        return super().upsert_memory(memory, embedding=embedding)

    def upsert_learning(
        self, learning: Learning, *, embedding: Embedding | None = None
    ) -> Learning:
        if embedding is not None:
            self._index_dimensions("learnings", [embedding])
        return super().upsert_learning(learning, embedding=embedding)

    def set_embeddings(self, table: VectorTable, embeddings: Mapping[str, Embedding]) -> int:
        if embeddings:
            self._index_dimensions(table, embeddings.values())
        return super().set_embeddings(table, embeddings)

    def import_records(self, batch: RecordPage) -> int:
        """As ``SqlDb.import_records``, the HNSW index of each dimension made first, as
        ``upsert_memory`` makes it."""
        if batch.embeddings:
            table: VectorTable = "memories" if batch.kind == "memories" else "learnings"
            self._index_dimensions(table, batch.embeddings.values())
        return super().import_records(batch)

    # -- storage_report: read-only ----------------------------------------------------------
    def _report_plan(self, conn: Connection) -> tuple[Plan, Expectations]:
        """With pgvector's migrations where kern would use it (in use by this Db, or the
        extension created and new enough): read from the catalog, never created here."""
        plan, expected = super()._report_plan(conn)
        if self.dialect.pgvector is not None:
            return plan, expected
        path = inspect_path(find_extension(conn))
        if path.index != PGVECTOR:
            return plan, expected
        pgvector = PgVector(self.tables, self.engine.dialect, self.dialect.prepare, path)
        return {**plan, **pgvector.plan()}, {**expected, **pgvector.expectations()}

    def _report_capabilities(self, conn: Connection) -> list[Capability]:
        info = self.engine.dialect.server_version_info
        major = int(info[0]) if info else None
        return [TEXT_SEARCH, vector_capability(find_extension(conn), major)]

    def storage_target(self) -> str:
        """The URL with its password masked."""
        return pg_engine.shown(self.engine.url)

    @property
    def schema(self) -> str | None:
        return self.tables.runs.schema


# Each contract method that uses a connection, retried as its policy allows (reads;
# commit_turn; other writes only when their BEGIN failed).
for _name, _policy in POLICIES.items():
    setattr(PostgresSqlDb, _name, retrying(getattr(PostgresSqlDb, _name), _policy))
del _name, _policy


def one_location(cls: str, db_url: object, engine: object) -> None:
    if (db_url is None) == (engine is None):
        given = "both" if db_url is not None else "neither"
        raise ConfigurationError(
            f"{cls} needs exactly one of db_url or engine (got {given}): e.g. "
            f"{cls}(db_url='postgresql://user:pass@localhost:5432/app')."
        )


class PostgresDb(PostgresSqlDb):
    """kern's storage in a PostgreSQL database (sync; see ``AsyncPostgresDb`` for async code).

    Give exactly one of ``db_url`` (``postgresql://``, ``postgresql+psycopg://`` or
    ``postgres://``; always run on psycopg 3) or ``engine`` (a SQLAlchemy ``Engine`` on
    ``postgresql+psycopg``, which kern then neither reconfigures nor disposes of).
    ``schema`` puts the tables in that Postgres schema (created on first use if missing;
    default: the connection's current schema, normally ``public``); ``table_prefix``
    prefixes every table name. ``engine_kwargs`` go to ``create_engine`` (pool size...).
    Several hosts (``postgresql://h1:5432,h2:5432/db?target_session_attrs=read-write``) are
    tried in order. Tables, indexes and migrations are applied on first use.
    """

    def __init__(
        self,
        db_url: str | URL | None = None,
        *,
        engine: Engine | None = None,
        schema: str | None = None,
        table_prefix: str = DEFAULT_PREFIX,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        cls = type(self).__name__
        one_location(cls, db_url, engine)
        schema = pg_engine.check_schema(schema)
        if engine is not None:
            target = pg_engine.sync_engine(engine, cls=cls)
        else:
            assert db_url is not None
            target = pg_engine.build_sync_engine(pg_engine.sync_url(db_url, cls=cls), engine_kwargs)
        super().__init__(
            target, table_prefix=table_prefix, schema=schema, owns_engine=engine is None
        )

    @property
    def vector_index(self) -> str | None:
        """``"pgvector hnsw"`` or ``"exact"``: the vector search in use (connects first if
        this db was not used yet). ``vector_index_reason`` says why it is exact."""
        if self._vector_path is None and not self._closed:
            self.create_tables()
        return super().vector_index

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(db_url={pg_engine.shown(self.engine.url)!r}, "
            f"schema={self.schema!r}, table_prefix={self.table_prefix!r})"
        )


__all__ = ["PostgresDb", "PostgresSqlDb"]
