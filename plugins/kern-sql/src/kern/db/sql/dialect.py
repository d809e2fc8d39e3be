"""The points where SQL databases differ, as one strategy object per Db instance.

``SqlDb`` writes the storage contract once; a backend subclasses ``SqlDialect`` and fills
in only what its database does differently:

- ``prepare_engine`` / ``prepare_connection``: engine and per-connection set-up (pragmas,
  driver transaction mode), undone when the connection goes back to the pool if needed.
- ``begin_write``: how a write transaction starts (SQLite: ``BEGIN IMMEDIATE``, so that it
  holds the write lock from its first read).
- ``lock_for_migrations``: serialise ``create_tables`` across processes (Postgres: an
  advisory lock; SQLite: the write transaction already is the lock).
- ``next_seq`` and ``seq_serialised``: the atomic ``seq`` assignment of ``append_run``.
- ``insert_construct`` (or ``upsert`` / ``insert_if_absent``): the upsert syntax.
- ``search_plan`` / ``search_memories`` / ``search_learnings``: ranked text search.
- ``vector_search`` / ``vector_candidates``: search by meaning. The default is exact
  (``kern.db.sql.vectors``); a database with a vector index overrides ``vector_search``.
- ``existing_objects`` / ``search_expectations``: the start-up check that what the
  migrations made is still there (``kern.db.sql.verify``), which ``storage_report`` reads
  too, with ``server_version``.
- ``unavailable``: which driver errors mean "the database cannot be reached".
- ``purge_deleted`` / ``after_forget``: what ``forget_user`` does beyond deleting rows, so
  that no copy of the user's words is left (SQLite: the FTS5 index and the WAL file).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, ClassVar, Protocol

from sqlalchemy import (
    ClauseElement,
    Column,
    Connection,
    Dialect,
    Engine,
    Select,
    Table,
    bindparam,
    func,
    select,
)
from sqlalchemy.sql.base import ReadOnlyColumnCollection
from sqlalchemy.sql.elements import KeyedColumnElement

from kern.db.base import VectorTable
from kern.db.sql.migrations import Plan
from kern.db.sql.prepared import Link, Prepared
from kern.db.sql.schema import Tables
from kern.db.sql.vectors import ExactVectorSearch, candidates_statement
from kern.db.sql.verify import Expectations, inspected_objects
from kern.records import Embedding, LearningStatus

#: A stored row (column name -> value) with its relevance score, higher is better.
Scored = tuple[Mapping[str, Any], float]


class Searcher(Protocol):
    """A dialect's ranked text search over one table (SQLite's FTS5, Postgres's tsvector).

    Called with positional arguments: the query text, the filters (column name -> value,
    None for no filter on that column) and the most rows to return.
    """

    def search(
        self, link: Link, text: str, filters: dict[str, Any], limit: int, /
    ) -> list[Scored]: ...


class OnConflictInsert(Protocol):
    """What ``upsert`` / ``insert_if_absent`` use of a dialect's INSERT construct: the
    ``ON CONFLICT`` clauses of ``sqlalchemy.dialects.sqlite.Insert`` and
    ``sqlalchemy.dialects.postgresql.Insert``."""

    @property
    def excluded(self) -> ReadOnlyColumnCollection[str, KeyedColumnElement[Any]]: ...

    def on_conflict_do_update(
        self, *, index_elements: Iterable[Column[Any]], set_: Mapping[str, Any]
    ) -> ClauseElement: ...

    def on_conflict_do_nothing(self, *, index_elements: Iterable[Column[Any]]) -> ClauseElement: ...


class SqlDialect:
    """Portable defaults; subclasses override what their database does better or differently."""

    #: The SQLAlchemy dialect name this strategy is for (``"sqlite"``, ``"postgresql"``).
    name: ClassVar[str] = ""
    #: True when ``next_seq`` runs under a lock that no other writer can hold at the same
    #: time, so the ``(session_id, seq)`` key cannot collide. When False, ``append_run``
    #: retries on a collision (the unique key is then what makes seq safe).
    seq_serialised: ClassVar[bool] = False
    #: How many times ``append_run`` tries when seq collides (only if not serialised).
    seq_attempts: ClassVar[int] = 50
    #: True when one statement can insert a run at ``max(seq) + 1`` and move the session's
    #: ``updated_at`` (Postgres: data-modifying CTEs), each statement its own transaction.
    #: ``append_run`` then tries that one round trip first, without ``next_seq``'s lock, and
    #: takes the serialised path only after a collision on the ``(session_id, seq)`` key.
    one_statement_append: ClassVar[bool] = False
    #: Statements that open a retention batch's write transaction (settings local to it).
    retention_setup: ClassVar[tuple[str, ...]] = ()
    #: True when the database takes a Python list as one array parameter and can
    #: ``unnest`` it (Postgres, DuckDB): a lookup of many keys is then one statement
    #: (``kern.db.sql.transfer``), instead of one per chunk of placeholders.
    array_parameters: ClassVar[bool] = False
    #: A dialect ``insert()`` with ``on_conflict_do_update`` / ``on_conflict_do_nothing``
    #: (``sqlalchemy.dialects.sqlite.insert``, ``...postgresql.insert``), set as a
    #: ``staticmethod`` so that it is not bound to the dialect.
    insert_construct: ClassVar[staticmethod[[Table], OnConflictInsert] | None] = None

    def __init__(self, tables: Tables, sql_dialect: Dialect) -> None:
        self.tables = tables
        self.sql_dialect = sql_dialect
        runs = tables.runs
        self._next_seq = self.prepare(
            select(func.coalesce(func.max(runs.c.seq), 0) + 1).where(
                runs.c.session_id == bindparam("session_id")
            )
        )
        self.exact_vectors = ExactVectorSearch(tables, self.prepare, self.vector_candidates)

    def prepare(self, statement: ClauseElement) -> Prepared:
        return Prepared(statement, self.sql_dialect)

    # -- engine, connections, transactions -----------------------------------------------
    def prepare_engine(self, engine: Engine) -> None:
        """Install what the engine needs once (event listeners). Idempotent."""

    def prepare_connection(self, pooled: Any) -> Callable[[], None] | None:
        """Make a checked-out connection ready for kern; return how to undo it, if needed.

        ``pooled`` is SQLAlchemy's pooled connection (``.dbapi_connection``, ``.info``).
        Called each time kern takes a connection from the pool, so keep it cheap.
        """
        return None

    def begin_write(self, link: Link) -> None:
        """Start a write transaction (default: the driver's implicit one)."""

    def begin_ddl(self, conn: Connection) -> None:
        """Start the migration transaction on a SQLAlchemy connection (default: autobegin)."""

    def lock_for_migrations(self, conn: Connection) -> None:
        """Serialise ``create_tables`` across processes, inside the migration transaction."""

    def unavailable(self, exc: BaseException) -> BaseException | None:
        """The driver's exception if ``exc`` (raw, or as SQLAlchemy wrapped it) means the
        database cannot be reached: the connection could not be made or was lost, the
        server is shutting down or starting up. ``SqlDb`` raises it as
        ``StorageUnavailableError``. Default: nothing (an embedded database has no server
        to lose; its errors, "database is locked" included, pass through unchanged)."""
        return None

    # -- the start-up check of the schema -------------------------------------------------
    def server_version(self, conn: Connection) -> str | None:
        """The database's name and version for ``storage_report`` ("PostgreSQL 15.8").
        Default: what SQLAlchemy read when it connected, if anything."""
        info = self.sql_dialect.server_version_info
        if not info:
            return None
        return f"{self.name} {'.'.join(str(part) for part in info)}"

    def existing_objects(self, conn: Connection, names: Collection[str]) -> set[str]:
        """Which of ``names`` (see ``kern.db.sql.verify``) exist; one catalog query where
        the database has one. Default: SQLAlchemy's inspector."""
        return inspected_objects(conn, self.tables) & set(names)

    def search_expectations(self) -> Expectations:
        """What ``search_plan``'s migrations leave, and how to put it back."""
        return {}

    # -- forget_user --------------------------------------------------------------------
    def purge_deleted(self, link: Link, deleted: Mapping[str, int]) -> None:
        """Inside ``forget_user``'s transaction, after its deletes (``deleted``: rows per
        logical table): remove what the database keeps of deleted rows beyond the rows
        themselves, such as a full-text index's copies of their words."""

    def after_forget(self, link: Link) -> None:
        """After ``forget_user`` committed, outside any transaction: push the deletion
        through to the files (SQLite: checkpoint and truncate the write-ahead log)."""

    # -- runs -------------------------------------------------------------------------
    def next_seq(self, link: Link, session_id: str) -> int:
        """The seq the next run of ``session_id`` gets, inside the append transaction."""
        return int(link.scalar(self._next_seq, {"session_id": session_id}))

    # -- upserts ----------------------------------------------------------------------
    def _insert(self, table: Table) -> OnConflictInsert:
        if self.insert_construct is None:
            raise NotImplementedError(
                f"{type(self).__name__} must set insert_construct or override upsert "
                "and insert_if_absent"
            )
        return self.insert_construct(table)

    def upsert(self, table: Table, key: str, *, keep: tuple[str, ...] = ()) -> ClauseElement:
        """An insert-or-update on ``key``, executed with a full row as parameters.

        Columns in ``keep`` keep their stored value when the row exists.
        """
        stmt = self._insert(table)
        skip = {key, *keep}
        return stmt.on_conflict_do_update(
            index_elements=[table.c[key]],
            set_={c.name: stmt.excluded[c.name] for c in table.c if c.name not in skip},
        )

    def insert_if_absent(self, table: Table, key: str) -> ClauseElement:
        """An insert that does nothing (rowcount 0) when ``key`` is already stored."""
        return self._insert(table).on_conflict_do_nothing(index_elements=[table.c[key]])

    # -- text search ------------------------------------------------------------------
    #: Set by a dialect whose database has text search; the search methods below use them.
    memory_search: Searcher | None = None
    learning_search: Searcher | None = None
    #: Over sessions' ``name`` and ``summary``, for ``search_sessions`` (None: ranked in
    #: Python over the user's newest sessions, ``kern.db.session_search``).
    session_search: Searcher | None = None

    def search_plan(self) -> Plan:
        """Migrations of the search structures (full-text tables, triggers, indexes)."""
        return {}

    def search_memories(
        self,
        link: Link,
        *,
        user_id: str,
        query: str,
        agent_id: str | None,
        limit: int,
    ) -> list[Scored]:
        """Memory rows of ``user_id`` ranked for ``query``, best first, at most ``limit``."""
        if self.memory_search is None:
            raise NotImplementedError(f"{type(self).__name__} has no memory search")
        filters = {"user_id": user_id, "agent_id": agent_id}
        return self.memory_search.search(link, query, filters, limit)

    def search_learnings(
        self,
        link: Link,
        *,
        query: str,
        kind: str | None,
        namespace: str | None,
        user_id: str | None,
        status: LearningStatus | None,
        limit: int,
    ) -> list[Scored]:
        """Learning rows matching the filters, ranked for ``query`` over their content."""
        if self.learning_search is None:
            raise NotImplementedError(f"{type(self).__name__} has no learning search")
        filters = {"kind": kind, "namespace": namespace, "user_id": user_id, "status": status}
        return self.learning_search.search(link, query, filters, limit)

    # -- vector search ----------------------------------------------------------------
    def vector_search(
        self,
        link: Link,
        table: VectorTable,
        embedding: Embedding,
        filters: Mapping[str, Any],
        limit: int,
    ) -> list[Scored]:
        """Record rows of ``table`` (``"memories"``, ``"learnings"``) whose every column in
        ``filters`` equals its value (None: any) and whose vector was made by
        ``embedding.model``, nearest to ``embedding`` by cosine similarity, best first, at
        most ``limit``; scores are the similarities. Rows hold the record's columns only.

        Default: the exact scan (``kern.db.sql.vectors``). A database with a vector index
        (pgvector, DuckDB's ``vss``, sqlite-vec) overrides this to answer from it, and
        may fall back here where the index cannot serve the filters.
        """
        return self.exact_vectors.search(link, table, embedding, filters, limit)

    def vector_candidates(self, stored: Table, key: str, filters: tuple[str, ...]) -> Select[Any]:
        """The exact scan's read of ``(key, embedding)`` of the rows with
        ``embedding_model = :model`` and each column in ``filters`` equal to ``:f_<name>``.
        Default: one WHERE, answered by the index of the scan (``VectorTables``)."""
        return candidates_statement(stored, key, filters)
