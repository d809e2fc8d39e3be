"""The logical records (docs/architecture.md, "Stored records") as SQLAlchemy Core tables.

One ``MetaData`` per table prefix, built once per Db instance: nothing is reflected at run
time. Indexes follow the read paths of the storage contract, so no read scans a table.

Vectors. Memories and learnings also hold their row's ``Embedding`` (schema version 2 of
those tables): ``embedding_model`` and ``embedding`` (little-endian float32 bytes), both
nullable. They are NOT columns of ``Tables.memories`` / ``Tables.learnings``, so every
statement built from those (record reads, text search, listings) reads exactly what it
read before; ``Tables.vectors`` holds copies of the two tables with the vector columns and
the index of the exact scan, for the statements that write or read vectors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

# Re-exported: the prefix's default and check are named from here too.
from kern.db.sql.prefix import DEFAULT_PREFIX as DEFAULT_PREFIX
from kern.db.sql.prefix import check_prefix as check_prefix


class JsonText(TypeDecorator[Any]):
    """JSON kept as compact UTF-8 text, for databases without a JSON type of their own.

    On SQLite a column declared ``JSON`` gets NUMERIC affinity, which would turn the text
    ``5`` into the integer 5; ``TEXT`` keeps what was written. Non-ASCII stays as written
    (no ``\\u`` escapes), so full-text search over the JSON finds its words.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


#: JSON that becomes JSONB on Postgres, compact text on SQLite, the JSON type elsewhere.
JsonType: TypeEngine[Any] = (
    JSON().with_variant(JSONB(), "postgresql").with_variant(JsonText(), "sqlite")
)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware in UTC.

    SQLite has no timezone type: values are stored as naive UTC text (fixed width, so text
    order is time order) and get ``tzinfo=UTC`` back on read. Naive input is taken as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: The vector columns of memories and learnings: which embedder made the vector, and the
#: vector as little-endian float32 bytes (``Embedding.as_float32``).
EMBEDDING_MODEL = "embedding_model"
EMBEDDING = "embedding"


@dataclass(frozen=True)
class VectorTables:
    """Memories and learnings as stored: their record columns, then the vector columns.

    Only for the statements that write vectors (upserts, ``set_embeddings``) or read them
    (the candidates of a vector search); ``Tables.memories`` and ``Tables.learnings`` stay
    the record's columns alone.
    """

    memories: Table
    learnings: Table
    #: The index of each table's exact scan (user + model; kind + namespace + model).
    memories_index: Index
    learnings_index: Index

    def table(self, name: str) -> Table:
        """``"memories"`` or ``"learnings"``."""
        return {"memories": self.memories, "learnings": self.learnings}[name]


@dataclass(frozen=True)
class Tables:
    """The five tables of one prefix, and the ``MetaData`` that holds them."""

    prefix: str
    metadata: MetaData
    sessions: Table
    runs: Table
    memories: Table
    learnings: Table
    schema_versions: Table
    vectors: VectorTables

    def by_logical_name(self) -> dict[str, Table]:
        """``{"sessions": Table, ...}`` in creation order (``schema_versions`` first)."""
        return {
            "schema_versions": self.schema_versions,
            "sessions": self.sessions,
            "runs": self.runs,
            "memories": self.memories,
            "learnings": self.learnings,
        }

    def as_stored(self) -> dict[str, Table]:
        """As ``by_logical_name``, memories and learnings with their vector columns: the
        tables as the latest migrations leave them (what a lost table is recreated as)."""
        return {
            **self.by_logical_name(),
            "memories": self.vectors.memories,
            "learnings": self.vectors.learnings,
        }


def runs_created_index(prefix: str) -> str:
    """The name of the runs' ``(created_at, run_id)`` index: the candidates of retention's
    ``runs_before`` are read through it in that order (``kern.db.sql.retention``)."""
    return f"ix_{prefix}runs_created"


def _ts(name: str) -> Column[datetime]:
    return Column(name, UtcDateTime(), nullable=False)


def build_tables(prefix: str = DEFAULT_PREFIX, *, schema: str | None = None) -> Tables:
    """Define the tables for ``prefix`` (and, on Postgres later, a database ``schema``)."""
    p = check_prefix(prefix)
    md = MetaData(schema=schema)

    sessions = Table(
        f"{p}sessions",
        md,
        Column("session_id", String, primary_key=True),
        Column("session_type", String, nullable=False),
        Column("component_id", String),
        Column("user_id", String),
        Column("name", String),
        Column("state", JsonType, nullable=False),
        Column("summary", Text),
        Column("metadata", JsonType, nullable=False),
        Column("version", Integer, nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        Index(f"ix_{p}sessions_user_updated", "user_id", "updated_at"),
        Index(f"ix_{p}sessions_component_updated", "component_id", "updated_at"),
        Index(f"ix_{p}sessions_updated", "updated_at"),
    )

    runs = Table(
        f"{p}runs",
        md,
        Column("run_id", String, primary_key=True),
        Column("session_id", String, nullable=False),
        Column("seq", Integer, nullable=False),
        Column("parent_run_id", String),
        Column("component_id", String),
        Column("user_id", String),
        Column("status", String, nullable=False),
        Column("input", JsonType),
        Column("messages", JsonType, nullable=False),
        Column("output", JsonType),
        Column("metrics", JsonType, nullable=False),
        _ts("created_at"),
        # History reads walk this backwards with LIMIT; it also makes seq unique per session.
        UniqueConstraint("session_id", "seq", name=f"uq_{p}runs_session_seq"),
        Index(f"ix_{p}runs_user", "user_id"),
        # Retention's runs_before walks runs by age (schema version 2 of runs).
        Index(runs_created_index(p), "created_at", "run_id"),
    )

    memories = Table(
        f"{p}memories",
        md,
        Column("memory_id", String, primary_key=True),
        Column("user_id", String, nullable=False),
        Column("agent_id", String),
        Column("content", Text, nullable=False),
        Column("topics", JsonType, nullable=False),
        Column("source_run_id", String),
        _ts("created_at"),
        _ts("updated_at"),
        Index(f"ix_{p}memories_user_updated", "user_id", "updated_at"),
        Index(f"ix_{p}memories_user_agent_updated", "user_id", "agent_id", "updated_at"),
    )

    learnings = Table(
        f"{p}learnings",
        md,
        Column("learning_id", String, primary_key=True),
        Column("kind", String, nullable=False),
        Column("namespace", String, nullable=False),
        Column("user_id", String),
        Column("session_id", String),
        Column("entity_id", String),
        Column("content", JsonType, nullable=False),
        Column("status", String, nullable=False),
        Column("source_run_id", String),
        _ts("created_at"),
        _ts("updated_at"),
        # A store's own items ("learned knowledge of namespace X"), newest first.
        Index(f"ix_{p}learnings_kind_ns", "kind", "namespace", "updated_at"),
        # Review queues ("proposed items of kind K" or of every kind).
        Index(f"ix_{p}learnings_status_kind", "status", "kind", "updated_at"),
        # A user's items (profile, user memory), and forget_user.
        Index(f"ix_{p}learnings_user_kind", "user_id", "kind", "updated_at"),
        Index(f"ix_{p}learnings_session", "session_id", "updated_at"),
        Index(f"ix_{p}learnings_entity", "entity_id", "kind", "updated_at"),
    )

    schema_versions = Table(
        f"{p}schema_versions",
        md,
        Column("name", String, primary_key=True),
        Column("version", Integer, nullable=False),
        _ts("applied_at"),
    )

    vectors = _with_vectors(p, memories, learnings, MetaData(schema=schema))
    return Tables(p, md, sessions, runs, memories, learnings, schema_versions, vectors)


def _with_vectors(p: str, memories: Table, learnings: Table, md: MetaData) -> VectorTables:
    """Copies of ``memories`` and ``learnings`` (in their own ``MetaData``, same names and
    schema) with the vector columns and the indexes of the exact scan."""

    def copy(table: Table) -> Table:
        stored = table.to_metadata(md)
        stored.append_column(Column(EMBEDDING_MODEL, String(255)))
        stored.append_column(Column(EMBEDDING, LargeBinary))
        return stored

    m, lt = copy(memories), copy(learnings)
    # A vector search reads one user's vectors of one model (memories), or the vectors of
    # one model in a store's kind and namespace (learnings): these keep it to those rows.
    # Partial: rows without a vector are not in them, so a database (or a row) without
    # vectors pays nothing for them on write (``model = ?`` implies ``IS NOT NULL``, which
    # SQLite's and Postgres's planners both read as matching the index).
    memories_index = _vector_index(f"ix_{p}memories_user_model", m, "user_id")
    learnings_index = _vector_index(f"ix_{p}learnings_kind_ns_model", lt, "kind", "namespace")
    return VectorTables(m, lt, memories_index, learnings_index)


def _vector_index(name: str, stored: Table, *leading: str) -> Index:
    """``(*leading, embedding_model)`` over the rows that have a vector."""
    model = stored.c[EMBEDDING_MODEL]
    has_vector = model.isnot(None)
    return Index(
        name,
        *(stored.c[column] for column in leading),
        model,
        sqlite_where=has_vector,
        postgresql_where=has_vector,
    )
