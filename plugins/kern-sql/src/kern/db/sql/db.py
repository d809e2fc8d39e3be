"""``SqlDb``: the whole storage contract for any SQLAlchemy engine, given a dialect strategy.

A backend is a subclass that sets ``dialect_class`` and builds its engine: the contract,
the transactions, the lazy schema set-up and the retries live here once. Statements run on
the pooled DBAPI connection (see ``kern.db.sql.prepared``); DDL and migrations go through a
SQLAlchemy ``Connection``.

Faults. A driver error that the dialect says means "the database cannot be reached"
(``SqlDialect.unavailable``: connection refused or lost, server shutting down or starting)
is raised as ``StorageUnavailableError`` naming ``storage_target()`` (no password), with
the driver's exception as its cause; every other error passes through as it was. The
exception classes alone cannot tell these apart (psycopg's ``OperationalError`` is also a
statement timeout, SQLite's is also "database is locked"), so the translation is made here
and not through ``unavailable_errors``. A connection that failed that way, or whose
rollback or hand-back failed, is invalidated rather than returned to the pool: the pool
then never resets a dead connection (SQLAlchemy would log "Exception during reset" with a
traceback), and the next call gets a fresh one (engines kern builds also pre-ping).

Imports. SQLAlchemy, and the modules of this package built on it, are imported when the
first ``SqlDb`` is built (``_import_sqlalchemy``), not with this module: a backend's Db
class can then be imported (``from kern.db.sqlite import SqliteDb``) without paying for
SQLAlchemy's import (a few tenths of a second) until it is used: see
docs/benchmarks.md#cold-start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from typing import TYPE_CHECKING, Any, ClassVar

from kern.db import door
from kern.db.base import BaseDb, VectorTable
from kern.db.fork import taken
from kern.db.report import Capability, StorageReport
from kern.db.sql.prefix import DEFAULT_PREFIX, check_prefix
from kern.db.transfer import DEFAULT_PAGE, RecordKind, RecordPage
from kern.errors import (
    ConfigurationError,
    KernError,
    StorageUnavailableError,
    VersionConflictError,
)
from kern.plugins import resolve
from kern.records import (
    Embedding,
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
from kern.retention.rules import RetentionBatch, RetentionRule

if TYPE_CHECKING:  # bound at run time by _import_sqlalchemy(), with the first SqlDb
    from sqlalchemy import Connection, Engine, inspect
    from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

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
    from kern.db.sql.prepared import Link, has_statement_listeners
    from kern.db.sql.report import schema_state
    from kern.db.sql.schema import build_tables
    from kern.db.sql.transfer import SqlTransfer
    from kern.db.sql.verify import Expectations, describe, missing_objects, table_expectations

log = logging.getLogger("kern.db.sql")


def _import_sqlalchemy() -> None:
    """Bind the names this module uses from SQLAlchemy and the modules built on it.

    Called by ``SqlDb.__init__``, so that every method finds them as module globals (no
    import per call on the hot path); importing this module alone imports none of them.
    """
    global inspect, DBAPIError, IntegrityError, SQLAlchemyError, SqlOps, SqlTransfer
    global Link, has_statement_listeners, schema_state, build_tables
    global is_current, migrate, read_versions, table_plan, target_versions
    global describe, missing_objects, table_expectations
    from sqlalchemy import inspect
    from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

    from kern.db.sql.migrations import (
        is_current,
        migrate,
        read_versions,
        table_plan,
        target_versions,
    )
    from kern.db.sql.ops import SqlOps
    from kern.db.sql.prepared import Link, has_statement_listeners
    from kern.db.sql.report import schema_state
    from kern.db.sql.schema import build_tables
    from kern.db.sql.transfer import SqlTransfer
    from kern.db.sql.verify import describe, missing_objects, table_expectations


class SqlDb(BaseDb):
    """The storage contract on SQLAlchemy Core. Subclasses set ``dialect_class``.

    ``engine`` is the SQLAlchemy ``Engine``; ``table_prefix`` the prefix of every table.
    Tables are created (and migrated) on first use, once per instance.
    """

    #: The dialect's class, or ``"module:Class"`` to import it only when a Db is built.
    dialect_class: ClassVar[type[SqlDialect] | str] = "kern.db.sql.dialect:SqlDialect"

    def __init__(
        self,
        engine: Engine,
        *,
        table_prefix: str = DEFAULT_PREFIX,
        schema: str | None = None,
        owns_engine: bool = True,
    ) -> None:
        _import_sqlalchemy()
        self.engine = engine
        self.table_prefix = check_prefix(table_prefix)
        self.tables = build_tables(table_prefix, schema=schema)
        self.dialect: SqlDialect = resolve(self.dialect_class)(self.tables, engine.dialect)
        self.dialect.prepare_engine(engine)
        self._ops = SqlOps(self.tables, self.dialect, engine.dialect)
        self._transfer = SqlTransfer(self.tables, self.dialect, engine.dialect)
        #: Held around every use of a connection; a lock where connections are shared.
        self._guard: AbstractContextManager[Any] = nullcontext()
        self._owns_engine = owns_engine
        self._ready = False
        self._ready_lock = threading.Lock()
        self._closed = False

    # -- connections --------------------------------------------------------------------
    def storage_target(self) -> str:
        """The engine's URL with the password masked (file backends: the file's path)."""
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def _faults(self) -> Iterator[None]:
        """Errors meaning "the database cannot be reached" as ``StorageUnavailableError``."""
        try:
            yield
        except Exception as exc:
            cause = self.dialect.unavailable(exc)
            if cause is None:
                raise
            raise unavailable_error(self, cause) from cause

    def _lost(self, exc: BaseException) -> bool:
        """True if ``exc`` leaves the connection unusable (it must not go back to the pool)."""
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
        return self.dialect.unavailable(exc) is not None

    @contextmanager
    def _link(self, *, write: bool) -> Iterator[Link]:
        """A pooled connection for one operation; a committed transaction if ``write``."""
        if not self._ready:
            self.create_tables()
        with self._guard:
            try:
                observed: Connection | None = None
                if has_statement_listeners(self.engine):
                    # Someone listens to statement events (a tracer, a counter; on the
                    # engine, the Connection class or the dialect): run through SQLAlchemy's
                    # Connection so that they see every statement.
                    observed = self.engine.connect()
                    pooled: Any = observed.connection
                else:
                    pooled = self.engine.raw_connection()
                undo = None
                link: Link | None = None
                try:
                    undo = self.dialect.prepare_connection(pooled)
                    link = Link(pooled.dbapi_connection, self.engine.dialect, observed)
                    if write:
                        self.dialect.begin_write(link)
                    yield link
                    if write:
                        link.commit()
                except BaseException as exc:
                    if link is None or self._lost(exc) or not _rolled_back(link):
                        _discard(pooled, observed, exc)  # the pool must not hand it out again
                    raise
                finally:
                    try:
                        if undo is not None:
                            undo()
                    except Exception as exc:  # a connection that cannot be reset is discarded
                        _discard(pooled, observed, exc)
                    (observed or pooled).close()
            except Exception as exc:  # as _faults(), without a second generator per call
                cause = self.dialect.unavailable(exc)
                if cause is None:
                    raise
                raise unavailable_error(self, cause) from cause

    def _read(self) -> AbstractContextManager[Link]:
        return self._link(write=False)

    def _write(self) -> AbstractContextManager[Link]:
        return self._link(write=True)

    @contextmanager
    def _ddl_connection(self) -> Iterator[Connection]:
        """A SQLAlchemy connection for schema work, prepared like any other."""
        with self._guard, self._faults(), self.engine.connect() as conn:
            undo = self.dialect.prepare_connection(conn.connection)
            try:
                yield conn
            finally:
                if undo is not None and not conn.invalidated:
                    undo()

    # -- lifecycle ----------------------------------------------------------------------
    def migration_plan(self) -> Plan:
        """Every name's migrations: the generic tables, then the dialect's search objects."""
        return {**table_plan(self.tables), **self.dialect.search_plan()}

    def schema_expectations(self) -> Expectations:
        """What the migrations leave, per migration name, and how to put it back if gone
        (checked by ``create_tables``; see ``kern.db.sql.verify``)."""
        return {**table_expectations(self.tables), **self.dialect.search_expectations()}

    def create_tables(self) -> None:
        """Create missing tables and indexes and run pending migrations forward.

        Also checks that what the migrations made is still there (a table, index or
        full-text index dropped by hand while ``kern_schema_versions`` still counts it) and
        puts back what is missing, under the migration lock; ``ConfigurationError`` names
        what could not be put back.
        """
        if self._closed:
            raise KernError(f"{self!r} is closed: create a new one to keep using the database.")
        with self._ready_lock:
            if self._ready:
                return
            plan = self.migration_plan()
            targets = target_versions(plan)
            expected = self.schema_expectations()
            names = sorted({obj for e in expected.values() for obj in e.objects})
            sv = self.tables.schema_versions
            with self._ddl_connection() as conn:
                current = inspect(conn).has_table(sv.name, schema=sv.schema) and is_current(
                    read_versions(conn, self.tables), targets
                )
                missing = (
                    missing_objects(expected, self.dialect.existing_objects(conn, names))
                    if current
                    else {}
                )
                conn.rollback()
            if not current or missing:
                with self._ddl_connection() as conn:
                    try:
                        self.dialect.begin_ddl(conn)
                        self.dialect.lock_for_migrations(conn)
                        migrate(conn, self.tables, plan)
                        self._restore(conn, expected, names)
                        conn.commit()
                    except BaseException:
                        if not conn.invalidated:
                            with suppress(SQLAlchemyError):  # the first error is the one to see
                                conn.rollback()
                        raise
            self._ready = True

    def _restore(self, conn: Connection, expected: Expectations, names: list[str]) -> None:
        """Put back what ``expected`` lacks (read again under the migration lock)."""
        missing = missing_objects(expected, self.dialect.existing_objects(conn, names))
        if not missing:
            return
        what = describe(missing)
        try:
            for name in missing:
                # Read again: restoring one name (a table) may have brought back another's
                # objects (the constraint index created with it).
                present = self.dialect.existing_objects(conn, expected[name].objects)
                gap = frozenset(expected[name].objects) - present
                if gap:
                    expected[name].restore(conn, gap)
            left = missing_objects(expected, self.dialect.existing_objects(conn, names))
        except SQLAlchemyError as exc:
            if self.dialect.unavailable(exc) is not None:
                raise
            driver = getattr(exc, "orig", None) or exc
            raise self._schema_error(what, f"recreating them failed: {driver}") from exc
        if left:
            raise self._schema_error(describe(left), "they are still missing after recreating")
        # Rows of a table that was dropped are gone; say so where applications log. (A
        # setting, "<name>:<setting>", is applied without a word: a new database gets it.)
        recreated = sorted(obj for gap in missing.values() for obj in gap if ":" not in obj)
        if recreated:
            log.warning(
                "kern recreated schema objects that were missing from %s although "
                "%s counted them as created: %s",
                self.storage_target(),
                self.tables.schema_versions.name,
                ", ".join(recreated),
            )

    def _schema_error(self, what: str, why: str) -> ConfigurationError:
        sv = self.tables.schema_versions.name
        return ConfigurationError(
            f"kern's schema in {self.storage_target()} is incomplete: {what} missing although "
            f"{sv} says the schema is current, and {why}. Run kern once with a database "
            "user that may create tables and indexes there (create_tables() puts back what "
            "is missing), or restore the database from a backup."
        )

    def schema_versions(self) -> dict[str, int]:
        """The stored version of every table and search object, by name."""
        if not self._ready:
            self.create_tables()
        with self._ddl_connection() as conn:
            return read_versions(conn, self.tables)

    def storage_report(self) -> StorageReport:
        """The schema as it is (``kern doctor``): versions, what is missing, capabilities and
        row counts, read on one connection. Read-only: it never runs ``create_tables``, so
        it works on a database kern never wrote to, and a table dropped by hand shows as
        missing instead of being put back."""
        if self._closed:
            raise KernError(f"{self!r} is closed: create a new one to keep using the database.")
        with self._ddl_connection() as conn:
            try:
                plan, expected = self._report_plan(conn)
                state = schema_state(conn, self.tables, self.dialect, expected)
                return StorageReport(
                    backend=self.backend_name,
                    target=self.storage_target(),
                    server_version=self.dialect.server_version(conn),
                    schema_versions=state.versions,
                    expected_versions=target_versions(plan),
                    missing=state.missing,
                    capabilities=self._report_capabilities(conn),
                    counts=state.counts,
                )
            finally:
                conn.rollback()

    def _report_plan(self, conn: Connection) -> tuple[Plan, Expectations]:
        """The plan and expectations ``create_tables`` would apply to this database now
        (Postgres adds pgvector's where the extension is there). Must only read."""
        return self.migration_plan(), self.schema_expectations()

    def _report_capabilities(self, conn: Connection) -> list[Capability]:
        """The backend's optional features, read on ``conn`` without changing anything."""
        return []

    def forget_user(self, user_id: str) -> dict[str, int]:
        with self._write() as link:
            deleted = self._ops.forget_user(link, user_id)
        if any(deleted.values()):
            with self._read() as link:
                self.dialect.after_forget(link)
        return deleted

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

    def search_sessions(self, user_id: str, query: str, *, limit: int = 5) -> list[Session]:
        with self._read() as link:
            return self._ops.search_sessions(link, user_id, query, limit)

    def delete_session(self, session_id: str) -> bool:
        with self._write() as link:
            return self._ops.delete_session(link, session_id)

    def fork_session(self, session_id: str, *, at_seq: int, new_session_id: str) -> Session:
        """``BaseDb.fork_session`` in one transaction, the runs copied by one statement
        (``kern.db.sql.fork``); a run id of the fork already taken rolls it all back."""
        try:
            with self._write() as link:
                return self._ops.fork_session(link, session_id, at_seq, new_session_id)
        except IntegrityError as exc:
            raise taken(new_session_id) from exc

    # -- retention (kern.db.sql.retention) ----------------------------------------------
    def retention_batch(
        self, rule: RetentionRule, *, limit: int, after: str | None = None, dry_run: bool = False
    ) -> RetentionBatch:
        """``BaseDb.retention_batch``: one batch in one transaction (``kern.db.sql.retention``
        has the statements); a dry run reads the same candidates and writes nothing."""
        with self._read() if dry_run else self._write() as link:
            if not dry_run:
                for statement in self.dialect.retention_setup:
                    link.sql(statement)
            return self._ops.retention_batch(link, rule, limit=limit, after=after, dry_run=dry_run)

    # -- runs ---------------------------------------------------------------------------
    def commit_turn(
        self, run: Run, session: Session, *, expected_version: int | None
    ) -> tuple[Run, Session]:
        """The session (compare-and-set, as ``upsert_session``) and the run (seq assigned,
        as ``append_run``) in one transaction: both are stored or neither is.

        Written optimistically: no read ahead of the writes. A run_id that is already stored
        shows as a failed write (the session's version moved on, or the run's key is
        taken); only then is the stored run read, after the rollback: when it is this
        turn's, it and the stored session are returned and nothing was written.
        """
        if run.session_id != session.session_id:
            raise ValueError(
                f"commit_turn() got run.session_id {run.session_id!r} with session "
                f"{session.session_id!r}: a turn's run belongs to the session it is stored with."
            )
        attempts = self._seq_attempts
        for attempt in range(1, attempts + 1):
            try:
                with self._write() as link:
                    return self._ops.commit_turn(link, run, session, expected_version)
            except (IntegrityError, VersionConflictError) as exc:
                stored = self._stored_turn(run)
                if stored is not None:
                    return stored
                # A seq collision (unserialised dialects only) is worth another attempt.
                if isinstance(exc, VersionConflictError) or attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    @property
    def _seq_attempts(self) -> int:
        """Attempts of a serialised append or turn: one, unless unlocked one-statement
        appends (``one_statement_append``) may take a seq under the lock's nose."""
        dialect = self.dialect
        if dialect.seq_serialised and not dialect.one_statement_append:
            return 1
        return dialect.seq_attempts

    def _stored_turn(self, run: Run) -> tuple[Run, Session] | None:
        """The stored run ``run.run_id`` and its session if this turn was stored already;
        None if no such run; ``ValueError`` if that run_id belongs to something else."""
        with self._read() as link:
            stored = self._ops.get_run(link, run.run_id)
            if stored is None:
                return None
            session = self._ops.get_session(link, stored.session_id)
        if stored.session_id != run.session_id or session is None:
            where = f"session {stored.session_id!r}" + (" (not stored)" if session is None else "")
            raise ValueError(
                f"run {run.run_id!r} is already stored, in {where}: it is not a retry of "
                f"this turn of session {run.session_id!r}. Give the turn a new run_id."
            ) from None
        return stored, session

    def append_run(self, run: Run) -> Run:
        if self.dialect.one_statement_append:
            try:
                # One statement, its own transaction: no BEGIN/COMMIT round trips.
                with self._link(write=False) as link:
                    return self._ops.append_run_at_once(link, run)
            except IntegrityError:
                if self.get_run(run.run_id) is not None:
                    raise _already_stored(run.run_id) from None
                # Another writer of the session took this seq: the serialised path below.
        attempts = self._seq_attempts
        for attempt in range(1, attempts + 1):
            try:
                with self._write() as link:
                    return self._ops.append_run(link, run)
            except IntegrityError:
                # Either the run_id is taken, or (unserialised dialects) another writer
                # took this seq first: then the next attempt reads the new maximum.
                if self.get_run(run.run_id) is not None:
                    raise _already_stored(run.run_id) from None
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

    def read_turn(
        self,
        session_id: str,
        limit: int,
        *,
        top_level_only: bool = False,
        status: RunStatus | None = None,
    ) -> tuple[Session | None, list[Run]]:
        with self._read() as link:
            return self._ops.read_turn(
                link, session_id, limit, top_level_only=top_level_only, status=status
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
    def upsert_memory(self, memory: Memory, *, embedding: Embedding | None = None) -> Memory:
        with self._write() as link:
            return self._ops.upsert_memory(link, memory, embedding)

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
    def upsert_learning(
        self, learning: Learning, *, embedding: Embedding | None = None
    ) -> Learning:
        with self._write() as link:
            return self._ops.upsert_learning(link, learning, embedding)

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

    # -- vectors ------------------------------------------------------------------------
    def search_memories_by_vector(
        self, user_id: str, embedding: Embedding, *, agent_id: str | None = None, limit: int = 5
    ) -> list[ScoredMemory]:
        with self._read() as link:
            return self._ops.search_memories_by_vector(
                link, user_id, embedding, agent_id=agent_id, limit=limit
            )

    def search_learnings_by_vector(
        self,
        embedding: Embedding,
        *,
        kind: str | None = None,
        namespace: str | None = None,
        user_id: str | None = None,
        status: LearningStatus | None = LearningStatus.ACTIVE,
        limit: int = 5,
    ) -> list[ScoredLearning]:
        with self._read() as link:
            return self._ops.search_learnings_by_vector(
                link,
                embedding,
                kind=kind,
                namespace=namespace,
                user_id=user_id,
                status=status,
                limit=limit,
            )

    def set_embeddings(self, table: VectorTable, embeddings: Mapping[str, Embedding]) -> int:
        if not embeddings:
            return 0
        with self._write() as link:
            return self._ops.set_embeddings(link, table, embeddings)

    def memories_without_embedding(self, model: str, *, limit: int = 100) -> list[Memory]:
        with self._read() as link:
            return self._ops.memories_without_embedding(link, model, limit=limit)

    def learnings_without_embedding(
        self, model: str, *, kinds: Sequence[str] | None = None, limit: int = 100
    ) -> list[Learning]:
        with self._read() as link:
            return self._ops.learnings_without_embedding(link, model, kinds=kinds, limit=limit)

    # -- moving data (kern.db.sql.transfer) -----------------------------------------------
    def export_records(
        self,
        record_kind: RecordKind,
        *,
        after: str | None = None,
        limit: int = DEFAULT_PAGE,
        user_id: str | None = None,
    ) -> RecordPage:
        with self._read() as link:
            return self._transfer.export(
                link, record_kind, after=after, limit=limit, user_id=user_id
            )

    def import_records(self, batch: RecordPage) -> int:
        if not batch.records:
            return 0
        with self._write() as link:
            return self._transfer.import_page(link, batch)


# -- faults -------------------------------------------------------------------------------
def _already_stored(run_id: str) -> ValueError:
    return ValueError(
        f"run {run_id!r} is already stored: runs are written once. "
        "Use update_run() to finish a running run, or give a new run_id."
    )


def unavailable_error(db: SqlDb, cause: BaseException) -> StorageUnavailableError:
    """The door's ``StorageUnavailableError`` for ``cause``, the URL's password masked."""
    password = db.engine.url.password
    return door.unavailable_error(db, cause, secrets=[str(password)] if password else [])


def _rolled_back(link: Link) -> bool:
    """Roll back; False if even that failed (the connection is then beyond use)."""
    try:
        link.rollback()
    except Exception:
        return False
    return True


def _discard(pooled: Any, observed: Connection | None, exc: BaseException) -> None:
    """Invalidate the connection: closed, and never handed out (or reset) by the pool again."""
    reason = exc if isinstance(exc, Exception) else None
    with suppress(Exception):  # closing a dead connection may fail too: it is gone either way
        if observed is not None:
            if not observed.invalidated:
                observed.invalidate(reason)
        elif pooled.dbapi_connection is not None:
            pooled.invalidate(reason)
