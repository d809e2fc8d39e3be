"""``SqlDb``: the whole storage contract for any SQLAlchemy engine, given a dialect strategy.

A backend is a subclass that sets ``dialect_class`` and builds its engine: the contract,
the transactions, the lazy schema set-up and the retries live here once. Statements run on
the pooled DBAPI connection (see ``kern.db.sql.prepared``); DDL and migrations go through a
SQLAlchemy ``Connection``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, ClassVar

from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.exc import DBAPIError, IntegrityError

from kern.db.base import BaseDb
from kern.db.sql.dialect import SqlDialect
from kern.db.sql.migrations import (
    Plan,
    is_current,
    migrate,
    read_versions,
    table_plan,
    target_versions,
)
from kern.db.sql.ops import SqlOps
from kern.db.sql.prepared import Link
from kern.db.sql.schema import DEFAULT_PREFIX, build_tables, check_prefix
from kern.errors import KernError
from kern.records import (
    Learning,
    LearningStatus,
    Memory,
    Run,
    RunStatus,
    ScoredLearning,
    ScoredMemory,
    Session,
    SessionType,
)


class SqlDb(BaseDb):
    """The storage contract on SQLAlchemy Core. Subclasses set ``dialect_class``.

    ``engine`` is the SQLAlchemy ``Engine``; ``table_prefix`` the prefix of every table.
    Tables are created (and migrated) on first use, once per instance.
    """

    dialect_class: ClassVar[type[SqlDialect]] = SqlDialect

    def __init__(
        self,
        engine: Engine,
        *,
        table_prefix: str = DEFAULT_PREFIX,
        schema: str | None = None,
        owns_engine: bool = True,
    ) -> None:
        self.engine = engine
        self.table_prefix = check_prefix(table_prefix)
        self.tables = build_tables(table_prefix, schema=schema)
        self.dialect = self.dialect_class(self.tables, engine.dialect)
        self.dialect.prepare_engine(engine)
        self._ops = SqlOps(self.tables, self.dialect, engine.dialect)
        #: Held around every use of a connection; a lock where connections are shared.
        self._guard: AbstractContextManager[Any] = nullcontext()
        self._owns_engine = owns_engine
        self._ready = False
        self._ready_lock = threading.Lock()
        self._closed = False

    # -- connections --------------------------------------------------------------------
    @contextmanager
    def _link(self, *, write: bool) -> Iterator[Link]:
        """A pooled connection for one operation; a committed transaction if ``write``."""
        if not self._ready:
            self.create_tables()
        with self._guard:
            observed: Connection | None = None
            if getattr(self.engine, "_has_events", True):
                # Someone listens to this engine's statement events (a tracer, a counter):
                # run through SQLAlchemy's Connection so that they see every statement.
                observed = self.engine.connect()
                pooled: Any = observed.connection
            else:
                pooled = self.engine.raw_connection()
            undo = None
            try:
                undo = self.dialect.prepare_connection(pooled)
                link = Link(pooled.dbapi_connection, self.engine.dialect, observed)
                if write:
                    self.dialect.begin_write(link)
                yield link
                if write:
                    link.commit()
            except BaseException as exc:
                lost = isinstance(exc, DBAPIError) and exc.connection_invalidated
                if lost and observed is None:  # (SQLAlchemy invalidates observed ones itself)
                    pooled.invalidate()  # the pool must not hand it out again
                else:
                    link.rollback()
                raise
            finally:
                if undo is not None:
                    undo()
                (observed or pooled).close()

    def _read(self) -> AbstractContextManager[Link]:
        return self._link(write=False)

    def _write(self) -> AbstractContextManager[Link]:
        return self._link(write=True)

    @contextmanager
    def _ddl_connection(self) -> Iterator[Connection]:
        """A SQLAlchemy connection for schema work, prepared like any other."""
        with self._guard, self.engine.connect() as conn:
            undo = self.dialect.prepare_connection(conn.connection)
            try:
                yield conn
            finally:
                if undo is not None:
                    undo()

    # -- lifecycle ----------------------------------------------------------------------
    def migration_plan(self) -> Plan:
        """Every name's migrations: the generic tables, then the dialect's search objects."""
        return {**table_plan(self.tables), **self.dialect.search_plan()}

    def create_tables(self) -> None:
        if self._closed:
            raise KernError(f"{self!r} is closed: create a new one to keep using the database.")
        with self._ready_lock:
            if self._ready:
                return
            plan = self.migration_plan()
            targets = target_versions(plan)
            sv = self.tables.schema_versions
            with self._ddl_connection() as conn:
                current = inspect(conn).has_table(sv.name, schema=sv.schema) and is_current(
                    read_versions(conn, self.tables), targets
                )
                conn.rollback()
            if not current:
                with self._ddl_connection() as conn:
                    try:
                        self.dialect.begin_ddl(conn)
                        self.dialect.lock_for_migrations(conn)
                        migrate(conn, self.tables, plan)
                        conn.commit()
                    except BaseException:
                        conn.rollback()
                        raise
            self._ready = True

    def schema_versions(self) -> dict[str, int]:
        """The stored version of every table and search object, by name."""
        if not self._ready:
            self.create_tables()
        with self._ddl_connection() as conn:
            return read_versions(conn, self.tables)

    def forget_user(self, user_id: str) -> dict[str, int]:
        with self._write() as link:
            return self._ops.forget_user(link, user_id)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready = False  # the next use goes through create_tables(), which refuses
        if self._owns_engine:
            self.engine.dispose()

    # -- sessions -----------------------------------------------------------------------
    def get_session(self, session_id: str) -> Session | None:
        with self._read() as link:
            return self._ops.get_session(link, session_id)

    def upsert_session(self, session: Session, *, expected_version: int | None) -> Session:
        with self._write() as link:
            return self._ops.upsert_session(link, session, expected_version)

    def list_sessions(
        self,
        *,
        user_id: str | None = None,
        component_id: str | None = None,
        session_type: SessionType | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Session]:
        with self._read() as link:
            return self._ops.list_sessions(
                link,
                user_id=user_id,
                component_id=component_id,
                session_type=session_type,
                limit=limit,
                offset=offset,
            )

    def delete_session(self, session_id: str) -> bool:
        with self._write() as link:
            return self._ops.delete_session(link, session_id)

    # -- runs ---------------------------------------------------------------------------
    def append_run(self, run: Run) -> Run:
        attempts = 1 if self.dialect.seq_serialised else self.dialect.seq_attempts
        for attempt in range(1, attempts + 1):
            try:
                with self._write() as link:
                    return self._ops.append_run(link, run)
            except IntegrityError:
                # Either the run_id is taken, or (unserialised dialects) another writer
                # took this seq first: then the next attempt reads the new maximum.
                if self.get_run(run.run_id) is not None:
                    raise ValueError(
                        f"run {run.run_id!r} is already stored: runs are written once. "
                        "Use update_run() to finish a running run, or give a new run_id."
                    ) from None
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def get_run(self, run_id: str) -> Run | None:
        with self._read() as link:
            return self._ops.get_run(link, run_id)

    def get_last_runs(
        self,
        session_id: str,
        limit: int,
        *,
        before_seq: int | None = None,
        top_level_only: bool = False,
        status: RunStatus | None = None,
    ) -> list[Run]:
        with self._read() as link:
            return self._ops.get_last_runs(
                link,
                session_id,
                limit,
                before_seq=before_seq,
                top_level_only=top_level_only,
                status=status,
            )

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        output: object = None,
        messages: Sequence[object] | None = None,
        metrics: dict[str, object] | None = None,
    ) -> Run:
        with self._write() as link:
            return self._ops.update_run(
                link, run_id, status=status, output=output, messages=messages, metrics=metrics
            )

    # -- memories -----------------------------------------------------------------------
    def upsert_memory(self, memory: Memory) -> Memory:
        with self._write() as link:
            return self._ops.upsert_memory(link, memory)

    def get_memory(self, memory_id: str) -> Memory | None:
        with self._read() as link:
            return self._ops.get_memory(link, memory_id)

    def list_memories(
        self,
        user_id: str,
        *,
        agent_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Memory]:
        with self._read() as link:
            return self._ops.list_memories(
                link, user_id, agent_id=agent_id, limit=limit, offset=offset
            )

    def search_memories(
        self, user_id: str, query: str, *, agent_id: str | None = None, limit: int = 5
    ) -> list[ScoredMemory]:
        with self._read() as link:
            return self._ops.search_memories(link, user_id, query, agent_id=agent_id, limit=limit)

    def recall_memories(
        self,
        user_id: str,
        query: str,
        *,
        agent_id: str | None = None,
        limit: int = 5,
        recent: int = 3,
    ) -> tuple[list[ScoredMemory], list[Memory]]:
        """What a turn's recall reads of a user's memories, on one connection: up to
        ``limit`` ranked for ``query`` (none if it is empty) and the ``recent`` newest.

        Not part of the contract: the memory store the SQL plugins register for their
        backends (``kern.learn.stores.OneCallUserMemoryStore``) calls it instead of two
        contract reads.
        """
        with self._read() as link:
            ranked = self._ops.search_memories(
                link, user_id, query, agent_id=agent_id, limit=limit if query else 0
            )
            newest = self._ops.list_memories(
                link, user_id, agent_id=agent_id, limit=recent, offset=0
            )
        return ranked, newest

    def delete_memory(self, memory_id: str) -> bool:
        with self._write() as link:
            return self._ops.delete_memory(link, memory_id)

    # -- learnings ----------------------------------------------------------------------
    def upsert_learning(self, learning: Learning) -> Learning:
        with self._write() as link:
            return self._ops.upsert_learning(link, learning)

    def get_learning(self, learning_id: str) -> Learning | None:
        with self._read() as link:
            return self._ops.get_learning(link, learning_id)

    def query_learnings(
        self,
        *,
        kind: str | None = None,
        namespace: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        entity_id: str | None = None,
        status: LearningStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Learning]:
        with self._read() as link:
            return self._ops.query_learnings(
                link,
                kind=kind,
                namespace=namespace,
                user_id=user_id,
                session_id=session_id,
                entity_id=entity_id,
                status=status,
                limit=limit,
                offset=offset,
            )

    def search_learnings(
        self,
        query: str,
        *,
        kind: str | None = None,
        namespace: str | None = None,
        user_id: str | None = None,
        status: LearningStatus | None = LearningStatus.ACTIVE,
        limit: int = 5,
    ) -> list[ScoredLearning]:
        with self._read() as link:
            return self._ops.search_learnings(
                link,
                query,
                kind=kind,
                namespace=namespace,
                user_id=user_id,
                status=status,
                limit=limit,
            )

    def delete_learning(self, learning_id: str) -> bool:
        with self._write() as link:
            return self._ops.delete_learning(link, learning_id)
