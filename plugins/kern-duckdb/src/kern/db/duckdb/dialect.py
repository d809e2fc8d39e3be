"""DuckDB's answers to the SQL layer's dialect seams (see ``kern.db.sql.dialect``)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any, ClassVar

from sqlalchemy import Connection, Dialect, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

import duckdb
from kern.db.base import VectorTable
from kern.db.duckdb.schema import READ_INDEXES, DuckTables, build_duck_tables
from kern.db.duckdb.search import LearningTerms, MemoryTerms
from kern.db.duckdb.session_search import SessionSearch
from kern.db.duckdb.vectors import ARRAY_COLUMN, InSqlVectorSearch
from kern.db.sql.dialect import Scored, SqlDialect
from kern.db.sql.prepared import Form, Link, Prepared
from kern.db.sql.schema import Tables
from kern.records import Embedding, LearningStatus


class Returning(Prepared):
    """A prepared INSERT/UPDATE ... RETURNING, whose returned columns read like a SELECT's."""

    __slots__ = ()

    def _compile(self, column_keys: tuple[str, ...] | None) -> Form:
        form = super()._compile(column_keys)
        returned = self.statement.returning_column_descriptions  # type: ignore[attr-defined]
        dialect = self.dialect
        return replace(
            form,
            columns=tuple(str(d["name"]) for d in returned),
            results=tuple(
                d["type"].dialect_impl(dialect).result_processor(dialect, None) for d in returned
            ),
        )


class DuckDialect(SqlDialect):
    """Writes are serialised (one process holds the file, one writer in it at a time), seq
    comes from a per-session counter row, and search runs on kern's own term tables."""

    name = "duckdb"
    # The lease gives the file to one process at a time and DuckDb holds its write lock
    # around every write transaction: nothing else can bump a counter in between.
    seq_serialised: ClassVar[bool] = True
    array_parameters: ClassVar[bool] = True
    # DuckDB takes PostgreSQL's ON CONFLICT syntax.
    insert_construct = staticmethod(pg_insert)

    def __init__(self, tables: Tables, sql_dialect: Dialect) -> None:
        super().__init__(tables, sql_dialect)
        self.duck: DuckTables = build_duck_tables(tables)
        counters = self.duck.counters
        self._last_seq = self.prepare(
            select(counters.c.last_seq).where(counters.c.session_id == bindparam("session_id"))
        )
        # UPDATE ... RETURNING costs DuckDB a third less than an ON CONFLICT upsert; the
        # INSERT runs once per session.
        bump = (
            counters.update()
            .where(counters.c.session_id == bindparam("b_session_id"))
            .values(last_seq=counters.c.last_seq + 1)
            .returning(counters.c.last_seq)
        )
        self._bump_seq = Returning(bump, sql_dialect)
        self._first_seq = self.prepare(counters.insert())
        self.memory_terms = MemoryTerms(self.prepare, tables.memories, self.duck.memory_terms)
        self.learning_terms = LearningTerms(self.prepare, tables, self.duck.learning_terms)
        self.session_search = SessionSearch(tables.sessions, self.prepare)
        records = {"memories": tables.memories, "learnings": tables.learnings}
        self.in_sql_vectors = InSqlVectorSearch(
            self.duck.vectors, records, READ_INDEXES, self.prepare, self.exact_vectors.rows_by_key
        )

    def begin_write(self, link: Link) -> None:
        # Reads run in autocommit. A link observed by SQLAlchemy (statement events) begins
        # its transaction itself, through duckdb_engine, at the first statement.
        if link.observed is None:
            link.sql("BEGIN TRANSACTION")

    # -- the start-up check of the schema -------------------------------------------------
    def server_version(self, conn: Connection) -> str | None:
        """The DuckDB library in this process (the file has no server)."""
        return f"DuckDB {duckdb.__version__}"

    def existing_objects(self, conn: Connection, names: Collection[str]) -> set[str]:
        """Tables and indexes of the current schema, and its ``embedding_array`` columns as
        ``<table>.embedding_array``, from DuckDB's catalog (one query)."""
        here = "database_name = current_database() AND schema_name = current_schema()"
        rows = conn.exec_driver_sql(
            f"SELECT table_name FROM duckdb_tables() WHERE {here} UNION ALL SELECT index_name "
            f"FROM duckdb_indexes() WHERE {here} UNION ALL SELECT table_name || '.' || "
            f"column_name FROM duckdb_columns() WHERE {here} AND column_name = ?",
            (ARRAY_COLUMN,),
        )
        return {row[0] for row in rows} & set(names)

    # -- runs -------------------------------------------------------------------------
    def last_seq(self, link: Link, session_id: str) -> int | None:
        """The session's last assigned seq (one primary-key lookup), or None."""
        value = link.scalar(self._last_seq, {"session_id": session_id})
        return None if value is None else int(value)

    def next_seq(self, link: Link, session_id: str) -> int:
        seq = link.scalar(self._bump_seq, {"b_session_id": session_id})
        if seq is None:
            link.execute(self._first_seq, {"session_id": session_id, "last_seq": 1})
            return 1
        return int(seq)

    # -- text search ------------------------------------------------------------------
    def search_memories(
        self,
        link: Link,
        *,
        user_id: str,
        query: str,
        agent_id: str | None,
        limit: int,
    ) -> list[Scored]:
        return self.memory_terms.search(
            link, user_id=user_id, query=query, agent_id=agent_id, limit=limit
        )

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
        filters = {"kind": kind, "namespace": namespace, "user_id": user_id, "status": status}
        return self.learning_terms.search(link, query=query, filters=filters, limit=limit)

    # -- vector search ----------------------------------------------------------------
    def vector_search(
        self,
        link: Link,
        table: VectorTable,
        embedding: Embedding,
        filters: Mapping[str, Any],
        limit: int,
    ) -> list[Scored]:
        """Exact, scored by DuckDB where the vectors are (``kern.db.duckdb.vectors``)."""
        return self.in_sql_vectors.search(link, table, embedding, filters, limit)
