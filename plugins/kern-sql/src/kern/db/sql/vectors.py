"""Vector search without a vector index: read the candidates' vectors, rank them with numpy.

The candidates are the rows the filters select that have a vector by the query's model (one
user's memories; the learnings of a store's kind and namespace), read through the index of
the scan (``VectorTables``) as ``(key, embedding)`` pairs only. ``kern.vectors.nearest``
ranks them by cosine similarity, and one more statement reads the best rows by key, without
their vectors. The cost grows with the number of candidates, which is why a database with a
vector index or a vector function answers through its dialect's ``vector_search`` instead
(pgvector on Postgres, sqlite-vec on SQLite, ``list_cosine_similarity`` on DuckDB).

``kern.vectors`` (numpy) is imported by the first search, not with this module: building a
Db does not pay for numpy (docs/benchmarks.md#cold-start).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import ClauseElement, Select, Table, bindparam, select

from kern.db.base import VectorTable
from kern.db.sql.prepared import Link, Prepared
from kern.db.sql.schema import EMBEDDING, EMBEDDING_MODEL, Tables
from kern.records import Embedding

#: A stored row (column name -> value) with its score: ``kern.db.sql.dialect.Scored``
#: (spelled out here: the dialect module imports this one).
Scored = tuple[Mapping[str, Any], float]

#: The key column of each table with vectors.
KEYS: dict[VectorTable, str] = {"memories": "memory_id", "learnings": "learning_id"}


def vector_columns(embedding: Embedding | None) -> dict[str, Any]:
    """The vector columns of a row written with ``embedding`` (both NULL without one)."""
    if embedding is None:
        return {EMBEDDING_MODEL: None, EMBEDDING: None}
    return {EMBEDDING_MODEL: embedding.model, EMBEDDING: embedding.as_float32()}


def candidates_statement(stored: Table, key: str, filters: tuple[str, ...]) -> Select[Any]:
    """``key`` and vector of ``stored``'s rows with ``embedding_model = :model`` and each
    column of ``filters`` equal to ``:f_<column>``: one WHERE, for the index of the scan."""
    where = [stored.c[EMBEDDING_MODEL] == bindparam("model")]
    where += [stored.c[name] == bindparam(f"f_{name}") for name in filters]
    return select(stored.c[key], stored.c[EMBEDDING]).where(*where)


def padded_size(count: int) -> int:
    """Keys per by-key read: ``count`` rounded up to a power of two, so that a handful of
    compiled statements serve every ``limit``."""
    size = 1
    while size < count:
        size *= 2
    return size


class ExactVectorSearch:
    """The exact path of ``SqlDialect.vector_search``, one prepared statement per shape.

    ``candidates(stored, key, filters)`` builds the candidates' statement; a dialect whose
    database reads an index differently passes its own (DuckDB: ``lookup.fenced``).
    """

    def __init__(
        self,
        tables: Tables,
        prepare: Callable[[ClauseElement], Prepared],
        candidates: Callable[[Table, str, tuple[str, ...]], Select[Any]] = candidates_statement,
    ) -> None:
        self.tables = tables
        self._prepare = prepare
        self._candidates = candidates
        self._cache: dict[tuple[str, str, Any], Prepared] = {}

    def _statement(
        self, table: VectorTable, shape: tuple[str, Any], build: Callable[[], ClauseElement]
    ) -> Prepared:
        prepared = self._cache.get((table, *shape))
        if prepared is None:
            prepared = self._cache[(table, *shape)] = self._prepare(build())
        return prepared

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
        from kern.vectors import nearest  # numpy, on the first search

        if limit <= 0:
            return []
        key = KEYS[table]
        stored = self.tables.vectors.table(table)
        given = {k: getattr(v, "value", v) for k, v in filters.items() if v is not None}
        shape = tuple(sorted(given))
        query = self._statement(
            table, ("candidates", shape), lambda: self._candidates(stored, key, shape)
        )
        params = {"model": embedding.model, **{f"f_{k}": v for k, v in given.items()}}
        rows = link.all(query, params)
        ranked = nearest(embedding.vector, ((row[key], row[EMBEDDING]) for row in rows), limit)
        if not ranked:
            return []
        found = self.rows_by_key(link, table, [k for k, _ in ranked])
        # A row deleted between the two reads (reads run in autocommit) is left out.
        return [(found[k], score) for k, score in ranked if k in found]

    def rows_by_key(self, link: Link, table: VectorTable, keys: list[str]) -> dict[str, Any]:
        """The record rows (no vector columns) of ``keys``, by key: one statement."""
        record: Table = getattr(self.tables, table)
        column = record.c[KEYS[table]]
        size = padded_size(len(keys))

        def build() -> Select[Any]:
            return select(record).where(column.in_([bindparam(f"k{i}") for i in range(size)]))

        query = self._statement(table, ("by_key", size), build)
        padded = keys + [keys[-1]] * (size - len(keys))
        rows = link.all(query, {f"k{i}": value for i, value in enumerate(padded)})
        return {row[column.name]: row for row in rows}


__all__ = [
    "KEYS",
    "ExactVectorSearch",
    "candidates_statement",
    "padded_size",
    "vector_columns",
]
