"""Vector search with pgvector: an HNSW index per dimension, the float32 bytes kept as the truth.

Which path. On first use (``PostgresSqlDb.create_tables``) a Db looks once for the ``vector``
extension: installed (0.8.0 or newer, for iterative index scans), or installable by this role
(``CREATE EXTENSION IF NOT EXISTS vector`` under the migration lock; pgvector is not a
trusted extension, so in practice a superuser or a database where it is installed already).
Then the path is ``"pgvector hnsw"``; otherwise ``"exact"``, the scan every SQL backend has
(``kern.db.sql.vectors``: read the user's vectors, rank them with numpy). The choice and,
for the exact path, why, are logged once per Db on ``kern.db.postgres`` and can be read as
``db.vector_index`` / ``db.vector_index_reason``.

Storage. The ``embedding`` BLOB (little-endian float32) stays the source of truth, written
and read by the generic statements exactly as on every SQL backend (``set_embeddings``,
``*_without_embedding``, the exact path). pgvector's copy is a stored generated column,
``embedding_vec vector GENERATED ALWAYS AS (<prefix>vector_from_float32(embedding))
STORED``: Postgres computes it on every insert and update whoever writes (an older kern, a
script), and it leaves with its row on a delete or ``forget_user``, so no code path can let
the two drift apart. The function decodes the bytes exactly, in SQL (no bytea-to-vector
cast exists): about 0.5 us per dimension, so 0.8 ms per 1,536-dimension write. Adding the
column computes it for every stored row: that is the migration's backfill (one rewrite of
the table, under the migration lock that serialises every kern process's migrations).

Dimensions. Vectors of every embedder share the column, which is therefore untyped
(``vector``, no dimension), while an HNSW index needs one dimension. So each dimension ``N``
gets a partial expression index::

    CREATE INDEX ix_kern_memories_hnsw_256 ON kern_memories USING hnsw
        ((embedding_vec::vector(256)) vector_cosine_ops) WHERE octet_length(embedding) = 1024

The predicate reads the BLOB's length, which Postgres knows without de-TOASTing the value,
so building the index of a new dimension does not read every other vector. The migration
creates the indexes of the dimensions already stored; after that, a Db creates the index of
a dimension the first time it writes a vector of it (the catalog is asked once per dimension
per Db; the index is created under the migration lock, in a transaction of its own, before
the write: at that moment it indexes nothing, so it is instant). Concurrent Dbs queue on the
lock and find it made (``IF NOT EXISTS``). Above 2,000 dimensions (pgvector's HNSW limit for
``vector``) there is no index: the same statement is then answered exactly.

Search. One statement: the record columns and the BLOB of the rows with the query's model,
every filter in the same WHERE (the user's rows only), the dimension predicate, ``ORDER BY
embedding_vec::vector(N) <=> :query LIMIT :limit``. The planner picks: the HNSW index where
the filters keep many rows (a store's learnings, a user holding most rows), the
``(user_id, embedding_model)`` index and a sort of that user's rows where they keep few
(reading 40 rows beats walking a graph where 1 row in 250 is the user's), exact then. Each
connection kern uses gets ``hnsw.iterative_scan = strict_order`` (pgvector 0.8): when the
filters drop rows the index found, the scan goes on, in distance order, until ``limit`` rows
pass. The rows are then scored with numpy from their BLOBs, as the exact path scores them.
If fewer than ``limit`` rows come back (the index gives up after ``hnsw.max_scan_tuples``),
the statement runs again ordered by the untyped column, which no index matches: the exact
answer, still in SQL. HNSW remains approximate: a row may rank lower than exact cosine
would put it when the graph search misses it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ClauseElement,
    ColumnElement,
    Connection,
    Dialect,
    Float,
    Select,
    Table,
    Text,
    bindparam,
    cast,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import UserDefinedType

from kern.db.base import VectorTable
from kern.db.sql.migrations import Migration, Plan
from kern.db.sql.prepared import Link, Prepared
from kern.db.sql.schema import EMBEDDING, EMBEDDING_MODEL, Tables
from kern.db.sql.verify import Expectations, Expected
from kern.records import Embedding
from kern.vectors import nearest

log = logging.getLogger("kern.db.postgres")
# A library logs; the application decides what is shown.
log.addHandler(logging.NullHandler())

#: A stored row with its score (``kern.db.sql.dialect.Scored``).
Scored = tuple[Mapping[str, Any], float]
#: The exact path (``ExactVectorSearch.search``), for what pgvector cannot take.
ExactSearch = Callable[[Link, VectorTable, Embedding, Mapping[str, Any], int], list[Scored]]

#: What ``db.vector_index`` says.
PGVECTOR = "pgvector hnsw"
EXACT = "exact"
EXACT_MEANS = "exact search over each user's rows"
#: Iterative index scans (``hnsw.iterative_scan``) came with 0.8.0.
MIN_VERSION = (0, 8, 0)
#: The generated column of pgvector's copy of each vector.
COLUMN = "embedding_vec"
#: pgvector's limits for ``vector``: HNSW indexes up to 2,000 dimensions, values to 16,000.
MAX_INDEXED_DIMS = 2000
MAX_DIMS = 16000
#: Set on each connection kern uses while the pgvector path is on (see the module doc).
CONNECTION_SETTING = "SET hnsw.iterative_scan = strict_order"

_INSTALLED = text(
    "SELECT e.extversion, n.nspname FROM pg_catalog.pg_extension e "
    "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
)
_AVAILABLE = text("SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'vector'")


@dataclass(frozen=True)
class VectorPath:
    """The vector search a Db uses: ``index`` is ``PGVECTOR`` or ``EXACT`` (then ``reason``
    says why); ``version`` and ``schema`` are the extension's, when it is used."""

    index: str
    reason: str | None = None
    version: str | None = None
    schema: str | None = None

    def describe(self, target: str) -> str:
        """The line logged once per Db."""
        if self.index == PGVECTOR:
            return (
                f"kern vector search on {target}: {PGVECTOR} (pgvector {self.version}: an HNSW "
                "index per dimension, cosine distance, iterative index scans)"
            )
        return f"kern vector search on {target}: {EXACT} ({self.reason})"


def _version(text_version: str) -> tuple[int, ...]:
    parts = []
    for part in text_version.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _first_line(exc: DBAPIError) -> str:
    driver = exc.orig if exc.orig is not None else exc
    return (str(driver).strip().splitlines() or [type(driver).__name__])[0]


def _installed(conn: Connection) -> tuple[str, str] | None:
    """The extension's version and schema, if it is installed in this database."""
    row = conn.execute(_INSTALLED).first()
    conn.rollback()
    return None if row is None else (str(row[0]), str(row[1]))


def choose_path(
    conn: Connection,
    *,
    begin: Callable[[Connection], None],
    lock: Callable[[Connection], None],
    unavailable: Callable[[BaseException], BaseException | None],
) -> VectorPath:
    """Find (or create) the extension; the path it allows. ``conn`` is in autocommit; the
    creation runs in a transaction of its own under the migration lock (``begin``, ``lock``)."""
    installed = _installed(conn)
    if installed is None:
        available = conn.execute(_AVAILABLE).first() is not None
        conn.rollback()
        if not available:
            return VectorPath(
                EXACT, f"extension vector is not available on this server: {EXACT_MEANS}"
            )
        failure = "it is still missing"
        try:
            begin(conn)
            lock(conn)
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
            conn.commit()
        except DBAPIError as exc:
            if unavailable(exc) is not None:
                raise
            conn.rollback()
            failure = _first_line(exc)
        # Read again: a Db of another schema (another lock) may have created it meanwhile.
        installed = _installed(conn)
        if installed is None:
            return VectorPath(
                EXACT,
                "extension vector is available on this server but kern's role could not "
                f"create it ({failure}): ask a superuser to run CREATE EXTENSION vector in "
                f"this database; until then {EXACT_MEANS}",
            )
    version, schema = installed
    if _version(version) < MIN_VERSION:
        return VectorPath(
            EXACT,
            f"pgvector {version} is older than 0.8.0, which kern needs for filtered index "
            f"scans: run ALTER EXTENSION vector UPDATE; until then {EXACT_MEANS}",
        )
    return VectorPath(PGVECTOR, version=version, schema=schema)


@dataclass(frozen=True)
class Extension:
    """The ``vector`` extension as a database has it: ``available`` on the server, and its
    ``version`` and ``schema`` where it is created in the database."""

    available: bool
    version: str | None = None
    schema: str | None = None

    @property
    def usable(self) -> bool:
        """Created, and new enough for kern's pgvector path."""
        return self.version is not None and _version(self.version) >= MIN_VERSION


def find_extension(conn: Connection) -> Extension:
    """The extension's state, read without creating anything (``storage_report``)."""
    installed = _installed(conn)
    if installed is not None:
        return Extension(True, *installed)
    available = conn.execute(_AVAILABLE).first() is not None
    conn.rollback()
    return Extension(available)


def inspect_path(extension: Extension) -> VectorPath:
    """The path ``choose_path`` would take with ``extension`` as it is, without creating
    it: where it is available but not created, ``EXACT``, saying that kern would try."""
    if extension.usable:
        return VectorPath(PGVECTOR, version=extension.version, schema=extension.schema)
    if extension.version is not None:
        reason = (
            f"pgvector {extension.version} is older than 0.8.0, which kern needs for "
            f"filtered index scans: {EXACT_MEANS}"
        )
    elif extension.available:
        reason = (
            "extension vector is available on this server but not created in this database: "
            "kern creates it on first use if its role may (pgvector is not a trusted "
            f"extension: a superuser's); until then {EXACT_MEANS}"
        )
    else:
        reason = f"extension vector is not available on this server: {EXACT_MEANS}"
    return VectorPath(EXACT, reason)


class VectorType(UserDefinedType[Any]):
    """pgvector's ``vector`` (of ``dims`` dimensions, or any), named in its schema."""

    cache_ok = True

    def __init__(self, qualified: str, dims: int | None = None) -> None:
        self.qualified = qualified
        self.dims = dims

    def get_col_spec(self, **kw: Any) -> str:
        return self.qualified if self.dims is None else f"{self.qualified}({self.dims})"


#: ``<prefix>vector_from_float32(bytea)``: the bytes as a vector, exactly (each float32 is
#: rebuilt from its sign, exponent and mantissa bits in float8, where that is exact).
#: NULL for what ``vector`` cannot hold (more than 16,000 dimensions), so no write fails.
_FUNCTION = """
CREATE OR REPLACE FUNCTION {name}(b bytea) RETURNS {vector}
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
SELECT CASE WHEN octet_length(b) BETWEEN 4 AND {max_bytes} AND mod(octet_length(b), 4) = 0 THEN
  CAST(ARRAY(
    SELECT CAST(CASE WHEN e = 0 THEN m * 2.0::float8 ^ -149
                     ELSE (8388608 + m) * 2.0::float8 ^ (e - 150) END * (1 - 2 * s) AS real)
    FROM (SELECT i,
                 get_byte(b, i + 3) >> 7 AS s,
                 ((get_byte(b, i + 3) & 127) << 1) | (get_byte(b, i + 2) >> 7) AS e,
                 ((get_byte(b, i + 2) & 127) << 16) | (get_byte(b, i + 1) << 8)
                   | get_byte(b, i) AS m
          FROM generate_series(0, octet_length(b) - 4, 4) AS i) AS f
    ORDER BY i) AS {vector})
END
$$
"""


class PgVector:
    """The pgvector path of one Db: its migrations, its indexes and its search statements."""

    def __init__(
        self,
        tables: Tables,
        sql_dialect: Dialect,
        prepare: Callable[[ClauseElement], Prepared],
        path: VectorPath,
    ) -> None:
        assert path.schema is not None
        self.tables = tables
        self.path = path
        self._prepare = prepare
        quote = sql_dialect.identifier_preparer
        self._quote = quote
        ext = quote.quote_schema(path.schema)
        self._vector = f"{ext}.vector"
        self._operator = f"OPERATOR({ext}.<=>)"
        self._opclass = f"{ext}.vector_cosine_ops"
        own_schema = f"{quote.quote_schema(tables.runs.schema)}." if tables.runs.schema else ""
        self.function = own_schema + quote.quote(f"{tables.prefix}vector_from_float32")
        self._statements: dict[tuple[str, int, tuple[str, ...], bool], Prepared] = {}
        self._indexed: set[tuple[str, int]] = set()
        self._index_lock = threading.Lock()

    # -- schema ------------------------------------------------------------------------
    def _function_ddl(self) -> str:
        return _FUNCTION.format(
            name=self.function, vector=self._vector, max_bytes=4 * MAX_DIMS
        ).strip()

    def _column_ddl(self, stored: Table) -> str:
        return (
            f"ALTER TABLE {self._quote.format_table(stored)} ADD COLUMN IF NOT EXISTS "
            f"{COLUMN} {self._vector} GENERATED ALWAYS AS ({self.function}({EMBEDDING})) STORED"
        )

    def index_name(self, stored: Table, dims: int) -> str:
        return f"ix_{stored.name}_hnsw_{dims}"

    def index_ddl(self, stored: Table, dims: int) -> str:
        """The partial HNSW index of ``dims``-dimension vectors (see the module docstring)."""
        return (
            f"CREATE INDEX IF NOT EXISTS {self._quote.quote(self.index_name(stored, dims))} "
            f"ON {self._quote.format_table(stored)} USING hnsw "
            f"((CAST({COLUMN} AS {self._vector}({dims}))) {self._opclass}) "
            f"WHERE octet_length({EMBEDDING}) = {4 * dims}"
        )

    def _add_column(self, stored: Table) -> Callable[[Connection], None]:
        """The column (computed for every stored row: the backfill), then an index for each
        dimension stored."""

        def apply(conn: Connection) -> None:
            conn.exec_driver_sql(self._function_ddl())
            conn.exec_driver_sql(self._column_ddl(stored))
            present = conn.exec_driver_sql(
                f"SELECT DISTINCT octet_length({EMBEDDING}) / 4 FROM "
                f"{self._quote.format_table(stored)} WHERE {EMBEDDING} IS NOT NULL"
            )
            for (dims,) in present.all():
                if 0 < dims <= MAX_INDEXED_DIMS:
                    conn.exec_driver_sql(self.index_ddl(stored, int(dims)))

        return apply

    def plan(self) -> Plan:
        """Version 1 of ``<table>_pgvector`` for memories and learnings."""
        return {
            f"{stored.name}_pgvector": [
                Migration(1, f"pgvector column of {stored.name}", self._add_column(stored))
            ]
            for stored in (self.tables.vectors.memories, self.tables.vectors.learnings)
        }

    def expectations(self) -> Expectations:
        """The column as the start-up check sees it: added back (and backfilled) if gone,
        as ``DROP EXTENSION vector CASCADE`` would leave it."""

        def expected(stored: Table) -> Expected:
            def restore(conn: Connection, missing: frozenset[str]) -> None:
                self._add_column(stored)(conn)

            return Expected((f"{stored.name}.{COLUMN}",), restore)

        vectors = self.tables.vectors
        return {
            f"{stored.name}_pgvector": expected(stored)
            for stored in (vectors.memories, vectors.learnings)
        }

    # -- indexes on write ----------------------------------------------------------------
    def indexed(self, table: VectorTable, dims: int) -> bool:
        """True once this Db knows the index of ``dims`` exists (or that none can)."""
        return (table, dims) in self._indexed

    def ensure_index(
        self,
        conn: Connection,
        table: VectorTable,
        dims: int,
        *,
        exists: Callable[[Connection, str], bool],
        begin: Callable[[Connection], None],
        lock: Callable[[Connection], None],
    ) -> None:
        """Create the index of ``dims`` unless the catalog has it (asked without a lock:
        ``CREATE INDEX IF NOT EXISTS`` would wait for every open write of the table)."""
        with self._index_lock:
            if (table, dims) in self._indexed:
                return
            stored = self.tables.vectors.table(table)
            name = self.index_name(stored, dims)
            if dims <= MAX_INDEXED_DIMS and not exists(conn, name):
                conn.rollback()
                begin(conn)
                lock(conn)
                conn.exec_driver_sql(self.index_ddl(stored, dims))
                conn.commit()
                log.info("kern created the HNSW index %s for %d-dimension vectors", name, dims)
            self._indexed.add((table, dims))

    # -- search --------------------------------------------------------------------------
    def _statement(
        self, table: VectorTable, dims: int, filters: tuple[str, ...], indexed: bool
    ) -> Prepared:
        shape = (table, dims, filters, indexed)
        prepared = self._statements.get(shape)
        if prepared is None:
            built = self._build(table, dims, filters, indexed=indexed)
            prepared = self._statements[shape] = self._prepare(built)
        return prepared

    def _build(
        self, table: VectorTable, dims: int, filters: tuple[str, ...], *, indexed: bool
    ) -> Select[Any]:
        """Record columns and BLOB of the filtered rows of ``dims`` dimensions, nearest
        first. ``indexed``: ordered by the index's expression (else by the untyped column,
        which no index matches: exact)."""
        stored = self.tables.vectors.table(table)
        record: Table = getattr(self.tables, table)
        column: ColumnElement[Any] = literal_column(f"{self._quote.quote(stored.name)}.{COLUMN}")
        target = VectorType(self._vector, dims if indexed else None)
        key = cast(column, target) if indexed else column
        query = cast(bindparam("query", type_=Text), target)
        distance = key.op(self._operator, return_type=Float())(query)
        where = [stored.c[EMBEDDING_MODEL] == bindparam("model")]
        where += [stored.c[name] == bindparam(f"f_{name}") for name in filters]
        where.append(func.octet_length(stored.c[EMBEDDING]) == literal_column(str(4 * dims)))
        return (
            select(*(stored.c[c.name] for c in record.c), stored.c[EMBEDDING])
            .where(*where)
            .order_by(distance)
            .limit(bindparam("limit"))
        )

    def search(
        self,
        link: Link,
        table: VectorTable,
        embedding: Embedding,
        filters: Mapping[str, Any],
        limit: int,
        exact: ExactSearch,
    ) -> list[Scored]:
        """As ``SqlDialect.vector_search``, answered in SQL (see the module docstring)."""
        if limit <= 0:
            return []
        dims = len(embedding.vector)
        if dims > MAX_DIMS:  # no stored vector of that size is in the column
            return exact(link, table, embedding, filters, limit)
        if not any(embedding.vector):
            return []  # no direction to compare with (the exact path returns nothing too)
        given = {k: getattr(v, "value", v) for k, v in filters.items() if v is not None}
        shape = tuple(sorted(given))
        params: dict[str, Any] = {
            "model": embedding.model,
            "query": "[" + ",".join(repr(float(x)) for x in embedding.vector) + "]",
            "limit": limit,
            **{f"f_{k}": v for k, v in given.items()},
        }
        rows = link.all(self._statement(table, dims, shape, True), params)
        if len(rows) < limit:  # maybe the index stopped early: ask again, exactly
            rows = link.all(self._statement(table, dims, shape, False), params)
        vectors = [row.pop(EMBEDDING) for row in rows]
        ranked = nearest(embedding.vector, enumerate(vectors), limit)
        return [(rows[i], score) for i, score in ranked]


__all__ = [
    "EXACT",
    "PGVECTOR",
    "Extension",
    "PgVector",
    "VectorPath",
    "choose_path",
    "find_extension",
    "inspect_path",
    "log",
]
