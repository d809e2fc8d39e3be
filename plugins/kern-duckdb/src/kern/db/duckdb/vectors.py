"""Vector search inside DuckDB: the cosine is computed by the query that applies the filters.

Where vectors live. DuckDB has no SQL function that reads float32 out of a BLOB, so besides
the shared layer's ``embedding`` BLOB each memory and learning keeps its vector in a column
of its own, ``embedding_array`` (``FLOAT[]``, a list of float32), which
``list_cosine_similarity`` scores where it is stored. Both are written by the same
statements. The BLOB stays the shared layer's copy (what kern-sql's tests and tools read on
every SQL backend); dropping it would halve the vectors' space once kern-sql reads stored
vectors through a dialect seam. A file written before the column existed is converted by
the migration ``<table>.embedding_array`` (``to_arrays``): the column is added and filled
from the BLOBs.

Mixed models and dimensions. Vectors of several embedders may share a table until a backfill
(``lm.reembed``) has re-embedded everything, and two embedders may differ in dimension. A
fixed-size ``FLOAT[n]`` column (what ``array_cosine_similarity`` and vss's HNSW index take)
would fix one dimension per table and need DDL whenever the embedder changes; a ``FLOAT[]``
list holds any length. Each search keeps to the rows of its model (``embedding_model =
:model``) and of its dimension (``len(embedding_array) = :dim``, as ``kern.vectors.nearest``
skips other lengths): ``list_cosine_similarity`` refuses lists of unequal length, and rows
are filtered before the score is computed. ``array_cosine_similarity`` over a cast to
``FLOAT[n]`` measured no faster than the list function (dim 256), so one statement shape
serves every dimension.

The statements. The candidates are looked up through the most selective indexed filter
(memories: ``user_id``) in a ``MATERIALIZED`` CTE (``kern.db.duckdb.lookup.fenced``: DuckDB
reads an index only for a scan's one condition), the other filters, the model and the
dimension are applied to those rows, and ``ORDER BY score DESC LIMIT :limit`` returns the
best keys with their scores: no vector leaves DuckDB. A second statement reads those
records by primary key (``ExactVectorSearch.rows_by_key``), as the numpy path does: the
shared layer's tests hold every SQL backend to "a search's candidates name the vector
columns, the rows read after them do not". Returning the records from the scoring
statement itself would save about 0.6 ms (measured: 2.4 against 3.0 ms at 100 candidates).
A stored vector of all zeros scores 0.0, as in ``nearest`` (the function gives NaN, which
DuckDB sorts first); a query of all zeros finds nothing, as there.

Measured against the numpy path (``kern.db.sql.vectors``: read the candidates' vectors,
rank them in Python, read the best rows by key), dim 256, one user among 50,000 rows, top
5, median of 30 queries (``benchmarks/vector_paths/duckdb.py``): see
docs/backends/duckdb.md, "Vectors". About 1 ms slower at 100 candidates, 2.4-8x faster
at 10,000; the count is not known before the query, so this is the only exact path here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ARRAY,
    REAL,
    Column,
    Connection,
    Float,
    LargeBinary,
    MetaData,
    Select,
    Table,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.schema import CreateColumn

from kern.db.base import VectorTable
from kern.db.duckdb.lookup import fenced
from kern.db.sql.dialect import Scored
from kern.db.sql.prepared import Link, Prepared
from kern.db.sql.schema import EMBEDDING, EMBEDDING_MODEL, Tables
from kern.db.sql.vectors import KEYS
from kern.records import Embedding

#: DuckDB's vector column: the vector as ``FLOAT[]``.
ARRAY_COLUMN = "embedding_array"
#: Rows converted per statement by the migration.
BATCH = 500

VectorType = ARRAY(REAL)


@dataclass(frozen=True)
class DuckVectorTables:
    """Memories and learnings as DuckDB stores them: the shared ``VectorTables`` copies
    (record columns, ``embedding_model``, ``embedding``) and ``embedding_array``."""

    memories: Table
    learnings: Table

    def table(self, name: str) -> Table:
        """``"memories"`` or ``"learnings"``."""
        return {"memories": self.memories, "learnings": self.learnings}[name]


def build_vector_tables(tables: Tables) -> DuckVectorTables:
    md = MetaData(schema=tables.metadata.schema)

    def copy(stored: Table) -> Table:
        table = stored.to_metadata(md)
        table.append_column(Column(ARRAY_COLUMN, VectorType))
        return table

    return DuckVectorTables(copy(tables.vectors.memories), copy(tables.vectors.learnings))


def vector_values(embedding: Embedding | None) -> dict[str, Any]:
    """The vector columns of a row written with ``embedding`` (all NULL without one)."""
    if embedding is None:
        return {EMBEDDING_MODEL: None, EMBEDDING: None, ARRAY_COLUMN: None}
    return {
        EMBEDDING_MODEL: embedding.model,
        EMBEDDING: embedding.as_float32(),
        ARRAY_COLUMN: embedding.vector,
    }


def set_vector(stored: Table, key: str) -> Any:
    """``UPDATE <stored> SET embedding_model, embedding, embedding_array``, by key."""
    return (
        stored.update()
        .where(stored.c[key] == bindparam("b_key"))
        .values(
            {
                EMBEDDING_MODEL: bindparam("b_model"),
                EMBEDDING: bindparam("b_blob", type_=LargeBinary),
                ARRAY_COLUMN: bindparam("b_vector", type_=VectorType),
            }
        )
    )


# -- the migration -------------------------------------------------------------------------
def to_arrays(stored: Table, key: str) -> Callable[[Connection], None]:
    """Add ``embedding_array`` to ``stored`` if missing, then fill it from every stored BLOB
    vector that it lacks. Runs again without changing anything."""

    def apply(conn: Connection) -> None:
        present = _columns(conn, stored)
        if ARRAY_COLUMN not in present:
            where = conn.dialect.identifier_preparer.format_table(stored)
            column = CreateColumn(stored.c[ARRAY_COLUMN]).compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {where} ADD COLUMN {column}")
        if EMBEDDING not in present:
            return  # no BLOB column yet (the shared vector step comes later): nothing to fill
        blob, array, keyed = stored.c[EMBEDDING], stored.c[ARRAY_COLUMN], stored.c[key]
        pending = (
            select(keyed, blob)
            .where(blob.isnot(None), array.is_(None))
            .order_by(keyed)
            .limit(BATCH)
        )
        move = (
            stored.update()
            .where(keyed == bindparam("b_key"))
            .values({ARRAY_COLUMN: bindparam("b_vector", type_=VectorType)})
        )
        while rows := conn.execute(pending).all():
            conn.execute(
                move,
                [{"b_key": row[0], "b_vector": _floats(bytes(row[1]))} for row in rows],
            )

    return apply


def _columns(conn: Connection, stored: Table) -> set[str]:
    """The columns ``stored`` has, from DuckDB's catalog (the inspector does not know
    ``FLOAT[]`` and warns)."""
    rows = conn.exec_driver_sql(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = coalesce(?, current_schema()) AND table_name = ?",
        (stored.schema, stored.name),
    )
    return {row[0] for row in rows}


def _floats(data: bytes) -> list[float]:
    """Little-endian float32 bytes (``Embedding.as_float32``) as numbers."""
    return list(struct.unpack(f"<{len(data) // 4}f", data))


# -- the search ----------------------------------------------------------------------------
class InSqlVectorSearch:
    """``vector_search`` answered by one scoring statement per shape of filters, then one
    read of the best rows by key.

    ``indexed`` gives, for a logical table, its columns with a single-column index, most
    selective first (``kern.db.duckdb.schema.READ_INDEXES``); ``rows_by_key(link, table,
    keys)`` reads record rows by key (``ExactVectorSearch.rows_by_key``).
    """

    def __init__(
        self,
        vectors: DuckVectorTables,
        records: Mapping[str, Table],
        indexed: Mapping[str, tuple[str, ...]],
        prepare: Callable[[Any], Prepared],
        rows_by_key: Callable[[Link, VectorTable, list[str]], dict[str, Any]],
    ) -> None:
        self.vectors = vectors
        self._rows_by_key = rows_by_key
        self._records = records
        self._indexed = indexed
        self._prepare = prepare
        self._cache: dict[tuple[str, tuple[str, ...]], Prepared] = {}

    def statement(self, table: VectorTable, filters: tuple[str, ...]) -> Select[Any]:
        """``key`` and ``score`` of ``table``'s rows, best first, at most ``:limit``, whose
        model is ``:model``, whose vector has ``:dim`` numbers and whose every column in
        ``filters`` equals ``:f_<column>``; ``:query`` is the vector."""
        stored = self.vectors.table(table)
        key = KEYS[table]
        looked_up = [c for c in self._indexed.get(table, ()) if c in filters]
        if looked_up:
            first = looked_up[0]
            needed = [key, EMBEDDING_MODEL, ARRAY_COLUMN]
            needed += [c for c in filters if c not in needed]
            rows = fenced(stored, stored.c[first] == bindparam(f"f_{first}"), needed)
            others = [c for c in filters if c != first]
        else:
            rows, others = stored, list(filters)
        vector = rows.c[ARRAY_COLUMN]
        similarity = func.list_cosine_similarity(
            vector, cast(bindparam("query", type_=VectorType), VectorType)
        )
        # A vector of all zeros gives NaN (sorted before every number): 0.0, as ``nearest``.
        score = case((func.isnan(similarity), 0.0), else_=similarity)
        where = [
            rows.c[EMBEDDING_MODEL] == bindparam("model"),
            func.len(vector) == bindparam("dim"),
            *(rows.c[c] == bindparam(f"f_{c}") for c in others),
        ]
        return (
            select(rows.c[key], cast(score, Float).label("score"))
            .where(*where)
            .order_by(literal_column("score").desc())
            .limit(bindparam("limit"))
        )

    def search(
        self,
        link: Link,
        table: VectorTable,
        embedding: Embedding,
        filters: Mapping[str, Any],
        limit: int,
    ) -> list[Scored]:
        """Rows of ``table`` matching ``filters`` (column -> value, None: any) nearest to
        ``embedding`` among those with a vector by ``embedding.model``, best first."""
        if limit <= 0 or not any(embedding.vector):
            return []  # a zero query is similar to nothing (``nearest`` returns nothing)
        given = {k: getattr(v, "value", v) for k, v in filters.items() if v is not None}
        shape = (table, tuple(sorted(given)))
        query = self._cache.get(shape)
        if query is None:
            query = self._cache[shape] = self._prepare(self.statement(table, shape[1]))
        params = {
            "model": embedding.model,
            "dim": len(embedding.vector),
            "query": embedding.vector,
            "limit": limit,
            **{f"f_{k}": v for k, v in given.items()},
        }
        ranked = [(row[KEYS[table]], row["score"]) for row in link.all(query, params)]
        if not ranked:
            return []
        found = self._rows_by_key(link, table, [k for k, _ in ranked])
        # A row deleted between the two reads (reads run in autocommit) is left out.
        return [(found[k], score) for k, score in ranked if k in found]


__all__ = [
    "ARRAY_COLUMN",
    "DuckVectorTables",
    "InSqlVectorSearch",
    "build_vector_tables",
    "set_vector",
    "to_arrays",
    "vector_values",
]
