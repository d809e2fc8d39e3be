"""DuckDB's answers to the SQL layer's dialect seams (see ``kern.db.sql.dialect``)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from typing import Any, ClassVar

from sqlalchemy import Connection, Dialect, Select, Table, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from kern.db.duckdb.lookup import fenced
from kern.db.duckdb.schema import READ_INDEXES, DuckTables, build_duck_tables
from kern.db.duckdb.search import LearningTerms, MemoryTerms
from kern.db.sql.dialect import Scored, SqlDialect
from kern.db.sql.prepared import Form, Link, Prepared
from kern.db.sql.schema import EMBEDDING, EMBEDDING_MODEL, Tables
from kern.db.sql.vectors import candidates_statement
from kern.records import LearningStatus


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

    def begin_write(self, link: Link) -> None:
        # Reads run in autocommit. A link observed by SQLAlchemy (statement events) begins
        # its transaction itself, through duckdb_engine, at the first statement.
        if link.observed is None:
            link.sql("BEGIN TRANSACTION")

    # -- the start-up check of the schema -------------------------------------------------
    def existing_objects(self, conn: Connection, names: Collection[str]) -> set[str]:
        """Tables and indexes of the current schema, from DuckDB's catalog (one query)."""
        rows = conn.exec_driver_sql(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = current_schema() UNION ALL SELECT index_name FROM "
            "duckdb_indexes() WHERE database_name = current_database() "
            "AND schema_name = current_schema()"
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
    def vector_candidates(self, stored: Table, key: str, filters: tuple[str, ...]) -> Select[Any]:
        """The candidates looked up through the most selective indexed filter (memories:
        ``user_id``), the model and the other filters applied to those rows: DuckDB reads
        through an index only for a scan's one condition (``kern.db.duckdb.lookup``)."""
        logical = stored.name[len(self.tables.prefix) :]
        indexed = [c for c in READ_INDEXES.get(logical, ()) if c in filters]
        if not indexed:
            return candidates_statement(stored, key, filters)
        first = indexed[0]
        others = [c for c in filters if c != first]
        rows = fenced(
            stored,
            stored.c[first] == bindparam(f"f_{first}"),
            [key, EMBEDDING, EMBEDDING_MODEL, *others],
        )
        where = [rows.c[EMBEDDING_MODEL] == bindparam("model")]
        where += [rows.c[c] == bindparam(f"f_{c}") for c in others]
        return select(rows.c[key], rows.c[EMBEDDING]).where(*where)
