"""Vector search on SQLite: in SQL with sqlite-vec where it loads, else the numpy scan.

Which path. sqlite-vec is a loadable extension, so it needs a ``sqlite3`` module whose
connections have ``enable_load_extension``: many Pythons' standard ``sqlite3`` are built
without it (the development machine's among them), ``pysqlite3`` (``pysqlite3-binary``
wheel) has it. ``choose_vector_index`` decides once per driver module and process, by
loading sqlite-vec into a throw-away in-memory connection; each Db says which path it took
and why, once (``announce``, on the ``kern.db.sqlite`` logger; ``db.vector_index`` and
``db.vector_index_reason``). Everything else reads vectors with the numpy scan of
``kern.db.sql.vectors`` (``kern.vectors.nearest``).

How sqlite-vec is used, and why so. kern keeps each vector as a little-endian float32 BLOB
beside its row (``Embedding.as_float32``), which is sqlite-vec's own vector format, so the
search is one statement over the rows the index of the scan selects (one user's memories
of one model; the learnings of a kind and namespace of one model)::

    SELECT <record columns>, vec_distance_cosine(embedding, :query) AS d
    FROM <table> WHERE embedding_model = :model AND length(embedding) = :nbytes AND <filters>
    ORDER BY d, <key> LIMIT :limit

``length(embedding) = :nbytes`` keeps a vector of another dimension out of the comparison
(sqlite-vec raises on a dimension mismatch; the numpy scan skips such rows), and a zero
vector, whose cosine distance sqlite-vec returns as NULL, scores 0.0 as in numpy. Nothing to
keep in step: deletes, upserts, ``forget_user`` and secure-delete act on the one row.

sqlite-vec's ``vec0`` virtual tables (with ``user_id`` as a partition key) were measured
against it and not taken: in 0.1.x they are an exact scan too (no ANN index), they need one
table per dimension kept in step with every write, re-embedding, delete and
``forget_user`` (their shadow tables hold copies of vectors, keys and user ids: a quick
check found a deleted row's gone, but the raw-scan tests would have to cover them), and
the figures below show a gain only from about 1,000 candidates. Median of 200 searches for
the 5 nearest, ms, one file with 1,000 users of 100 memories each plus the larger sets,
through ``SqliteDb`` for numpy and this SQL, raw SQL for the two alternatives
(``uv run python benchmarks/vector_paths/sqlite.py``, SQLite 3.51.1, sqlite-vec
0.1.9, a 2-core machine shared with other work; a second run under more load measured
1.5-3x these, in the same order):

=====================================  =====  ========  ============  =====
candidates (dimension)                 numpy  this SQL  SQL, 2 steps  vec0
=====================================  =====  ========  ============  =====
one user's 100 memories (256)          0.68   0.29      0.16          0.35
one user's 1,000 memories (256)        5.2    2.2       1.8           0.50
one user's 1,000 memories (1536)       25     6.7       4.9           2.7
10,000 learnings of a namespace (256)  76     10        10            4.6
=====================================  =====  ========  ============  =====

"SQL, 2 steps" ranks keys first and reads the best rows by key in a second statement: no
faster than one statement (a raw-SQL check gave 0.71 ms both ways for 1,000 x 256), the
gap above being kern's per-call work (pool checkout, row conversion). The scalar function's
cost is per candidate (about 0.6 us at 256 and 3.7 us at 1536 dimensions), so a store that
outgrows a few thousand candidates per search is where ``vec0`` would start to pay.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from sqlalchemy import ClauseElement, ColumnElement, LargeBinary, Select, bindparam, func, select

from kern.db.base import VectorTable
from kern.db.sql.prepared import Link, Prepared
from kern.db.sql.schema import EMBEDDING, EMBEDDING_MODEL, Tables
from kern.db.sql.vectors import KEYS
from kern.records import Embedding

log = logging.getLogger("kern.db.sqlite")
# A library logs; the application decides what is shown.
log.addHandler(logging.NullHandler())

SQLITE_VEC = "sqlite-vec"
EXACT = "exact (numpy)"
#: The result column holding a row's cosine distance (not a column of any kern table).
DISTANCE = "kern_distance"

#: A stored row (column name -> value) with its score: ``kern.db.sql.dialect.Scored``.
Scored = tuple[Mapping[str, Any], float]

ENGINE_HINT = (
    "pip install pysqlite3-binary 'kern-sqlite[vec]' (pysqlite3 wheels are for Linux x86_64) "
    "and pass SqliteDb(..., sqlite_module='pysqlite3.dbapi2') (or an engine made with "
    "create_engine(url, module=pysqlite3.dbapi2)), or run on a Python whose sqlite3 can load "
    "extensions"
)


@dataclass(frozen=True)
class VectorIndex:
    """The vector search a Db uses (``SQLITE_VEC`` or ``EXACT``) and why."""

    name: str
    reason: str

    @property
    def in_sql(self) -> bool:
        return self.name == SQLITE_VEC


def load_sqlite_vec(dbapi_connection: Any) -> None:
    """Load sqlite-vec into one connection; extension loading is off again afterwards."""
    import sqlite_vec  # type: ignore[import-untyped]  # untyped; present when chosen

    dbapi_connection.enable_load_extension(True)
    try:
        sqlite_vec.load(dbapi_connection)
    finally:
        dbapi_connection.enable_load_extension(False)


@functools.cache
def choose_vector_index(dbapi: ModuleType) -> VectorIndex:
    """The vector search for connections of the DBAPI module ``dbapi`` (``sqlite3``,
    ``pysqlite3.dbapi2``): sqlite-vec if it loads into one of them, else the numpy scan.
    Decided once per module and process (``choose_vector_index.cache_clear()`` to redo)."""
    name = dbapi.__name__.removesuffix(".dbapi2")  # the stdlib's is sqlite3.dbapi2
    version = getattr(dbapi, "sqlite_version", "?")
    if not hasattr(getattr(dbapi, "Connection", None), "enable_load_extension"):
        return VectorIndex(
            EXACT,
            f"this Python's {name} (SQLite {version}) cannot load extensions, so sqlite-vec "
            f"cannot run: {ENGINE_HINT}",
        )
    if importlib.util.find_spec("sqlite_vec") is None:
        return VectorIndex(
            EXACT, "sqlite-vec is not installed: pip install 'kern-sqlite[vec]' (sqlite-vec)"
        )
    try:
        probe = dbapi.connect(":memory:")
        try:
            load_sqlite_vec(probe)
            (vec_version,) = probe.execute("SELECT vec_version()").fetchone()
        finally:
            probe.close()
    except Exception as exc:  # a build without extension loading, a wrong binary
        return VectorIndex(EXACT, f"sqlite-vec did not load into {name} (SQLite {version}): {exc}")
    return VectorIndex(
        SQLITE_VEC,
        f"sqlite-vec {vec_version} loads into {name} (SQLite {version}); each search is one "
        "statement ranking the candidates with vec_distance_cosine",
    )


def announce(index: VectorIndex, target: str) -> None:
    """The one log line of a Db: which vector search it uses and why."""
    log.info("kern SQLite %s: vector search %s, because %s", target, index.name, index.reason)


def norm(vector: list[float]) -> float:
    return math.sqrt(math.fsum(x * x for x in vector))


class SqliteVecSearch:
    """``SqlDialect.vector_search`` in one statement with sqlite-vec's
    ``vec_distance_cosine``, one prepared statement per table and filter shape."""

    def __init__(self, tables: Tables, prepare: Callable[[ClauseElement], Prepared]) -> None:
        self.tables = tables
        self._prepare = prepare
        self._cache: dict[tuple[str, tuple[str, ...]], Prepared] = {}

    def statement(self, table: VectorTable, filters: tuple[str, ...]) -> Select[Any]:
        """The record columns of ``table``'s rows by ``:model`` of ``:nbytes`` bytes whose
        columns in ``filters`` equal ``:f_<column>``, nearest to ``:query`` first."""
        stored = self.tables.vectors.table(table)
        record = getattr(self.tables, table)
        vector = stored.c[EMBEDDING]
        distance: ColumnElement[float] = func.vec_distance_cosine(
            vector, bindparam("query", type_=LargeBinary)
        )
        where = [
            stored.c[EMBEDDING_MODEL] == bindparam("model"),
            func.length(vector) == bindparam("nbytes"),
            *(stored.c[name] == bindparam(f"f_{name}") for name in filters),
        ]
        # A zero vector's distance is NULL (0/0): it scores 0.0, as in the numpy scan.
        scored = func.coalesce(distance, 1.0).label(DISTANCE)
        return (
            select(*(stored.c[column.name] for column in record.c), scored)
            .where(*where)
            .order_by(scored, stored.c[KEYS[table]])
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
        """As ``SqlDialect.vector_search``: best first, scores are cosine similarities."""
        if limit <= 0 or norm(embedding.vector) == 0.0:
            return []  # a zero query is similar to nothing (as in kern.vectors.nearest)
        given = {k: getattr(v, "value", v) for k, v in filters.items() if v is not None}
        shape = tuple(sorted(given))
        query = self._cache.get((table, shape))
        if query is None:
            query = self._cache[(table, shape)] = self._prepare(self.statement(table, shape))
        vector = embedding.as_float32()
        params = {
            "query": vector,
            "model": embedding.model,
            "nbytes": len(vector),
            "limit": limit,
            **{f"f_{k}": v for k, v in given.items()},
        }
        hits: list[Scored] = []
        for row in link.all(query, params):
            distance = float(row.pop(DISTANCE))
            hits.append((row, 1.0 - distance))
        return hits


__all__ = [
    "EXACT",
    "SQLITE_VEC",
    "SqliteVecSearch",
    "VectorIndex",
    "announce",
    "choose_vector_index",
    "load_sqlite_vec",
]
