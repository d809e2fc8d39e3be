"""Vector search on DuckDB: the in-SQL statement against the numpy path it replaced.

Not a test (pytest does not collect it). One user's ``n`` memories among 50,000 other rows,
dim 256, top 5, median of 30 queries; the numpy path is kern-sql's ``ExactVectorSearch``
(read the candidates' vectors, rank with ``kern.vectors.nearest``, read the best rows by
key) on the same table, its vectors in the BLOB column as it read them.
Run: ``uv run python benchmarks/vector_paths/duckdb.py``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Select, Table, bindparam, select

from kern.db.duckdb import DuckDb
from kern.db.duckdb.lookup import fenced
from kern.db.duckdb.vectors import ARRAY_COLUMN
from kern.db.sql.schema import EMBEDDING, EMBEDDING_MODEL
from kern.db.sql.vectors import ExactVectorSearch
from kern.records import Embedding

DIM, OTHERS, QUERIES = 256, 50_000, 30


def _fill(db: DuckDb, n: int, rng: np.random.Generator) -> None:
    """Rows straight into kern_memories (the search reads no other table)."""
    raw = db.engine.raw_connection()
    try:
        duck: Any = raw.dbapi_connection
        columns = "memory_id, user_id, content, topics, created_at, updated_at"
        duck.execute(
            f"INSERT INTO kern_memories ({columns}, embedding_model, {ARRAY_COLUMN}) "
            f"SELECT 'o' || i, 'other' || (i % 500), 'other content', '[]', now(), now(), 'm', "
            f"list_transform(range({DIM}), lambda x: random()::FLOAT) FROM range({OTHERS}) t(i)"
        )
        vectors = rng.standard_normal((n, DIM)).astype(np.float32)
        # The BLOB too, for the numpy path to read as it did (kern leaves it NULL).
        duck.executemany(
            f"INSERT INTO kern_memories ({columns}, embedding_model, {ARRAY_COLUMN}, "
            f"{EMBEDDING}) VALUES (?, 'alice', ?, '[]', now(), now(), 'm', ?, ?)",
            [
                (f"m{i}", f"fact {i} " * 8, vectors[i].tolist(), vectors[i].astype("<f4").tobytes())
                for i in range(n)
            ],
        )
        duck.commit()
    finally:
        raw.close()


def _numpy_path(db: DuckDb) -> ExactVectorSearch:
    def candidates(stored: Table, key: str, filters: tuple[str, ...]) -> Select[Any]:
        vectors = db.dialect.duck.vectors.table("memories")
        rows = fenced(
            vectors,
            vectors.c.user_id == bindparam("f_user_id"),
            [key, EMBEDDING_MODEL, EMBEDDING],
        )
        return select(rows.c[key], rows.c[EMBEDDING]).where(
            rows.c[EMBEDDING_MODEL] == bindparam("model")
        )

    return ExactVectorSearch(db.tables, db.dialect.prepare, candidates)


def _median_ms(run: Any, queries: list[Embedding]) -> tuple[float, list[list[str]]]:
    times, found = [], []
    for query in queries:
        start = time.perf_counter()
        found.append(run(query))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3, found


def _measure(n: int, rng: np.random.Generator) -> str:
    """One table row: both paths over ``n`` candidates, after checking they agree."""
    with tempfile.TemporaryDirectory() as folder:
        db = DuckDb(db_file=Path(folder) / "bench.duckdb", keep_open=None)
        try:
            db.create_tables()
            _fill(db, n, rng)
            exact = _numpy_path(db)
            queries = [
                Embedding(model="m", vector=rng.standard_normal(DIM).tolist())
                for _ in range(QUERIES)
            ]

            def in_sql(query: Embedding) -> list[str]:
                hits = db.search_memories_by_vector("alice", query, limit=5)
                return [hit.memory.memory_id for hit in hits]

            def numpy(query: Embedding) -> list[str]:
                with db._read() as link:
                    hits = exact.search(link, "memories", query, {"user_id": "alice"}, 5)
                return [row["memory_id"] for row, _ in hits]

            in_sql(queries[0]), numpy(queries[0])  # compile both once
            sql_ms, sql_found = _median_ms(in_sql, queries)
            np_ms, np_found = _median_ms(numpy, queries)
            assert sql_found == np_found, "the two paths disagree"
            return f"| {n:,} | {sql_ms:.1f} | {np_ms:.1f} | {np_ms / sql_ms:.1f}x |"
        finally:
            db.close()


def main() -> None:
    rng = np.random.default_rng(14)
    print(f"| candidates | in SQL ms | numpy ms | numpy / in SQL |  (dim {DIM}, top 5)")
    for n in (100, 10_000):
        print(_measure(n, rng))


if __name__ == "__main__":
    main()
