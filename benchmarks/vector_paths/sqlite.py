"""How fast each way of answering a SQLite vector search is (not collected by pytest).

Run: ``uv run python benchmarks/vector_paths/sqlite.py`` (needs pysqlite3 and
sqlite-vec; Linux x86_64). One file holds 1,000 users with 100 memories each (256
dimensions), one user with 1,000 memories of 256 and one with 1,000 of 1536 dimensions, and
10,000 learnings in one kind and namespace (256). Each figure is the median of ``ROUNDS``
searches for the 5 nearest, with a new random query each time:

- ``numpy``: kern's exact scan (``kern.db.sql.vectors``): read the candidates' vectors,
  rank them with numpy, read the best rows by key; through ``SqliteDb``.
- ``sql``: kern's sqlite-vec statement (``kern.db.sqlite.vectors``), through ``SqliteDb``.
- ``sql 2-step``: keys and distances ranked in SQL, then the best rows by key (raw SQL).
- ``vec0``: a ``vec0`` virtual table per dimension with the user (or namespace) as its
  partition key, then the best rows by key (raw SQL): what kern would have to keep in step.
"""

from __future__ import annotations

import random
import statistics
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pysqlite3.dbapi2 as pysqlite
import sqlite_vec
from sqlalchemy import create_engine, insert

from kern.db.sqlite import SqliteDb
from kern.records import Embedding

ROUNDS = 200
USERS = 1000
PER_USER = 100
LIMIT = 5


def vec(rng: random.Random, dim: int) -> list[float]:
    return [rng.gauss(0.0, 1.0) for _ in range(dim)]


def blob(vector: list[float]) -> bytes:
    return struct.pack(f"<{len(vector)}f", *vector)


def fill(db: SqliteDb, rng: random.Random) -> None:
    """The rows, written with Core (executemany) rather than one upsert each."""
    now = datetime.now(UTC)
    memories: list[dict[str, Any]] = []

    def memory(user: str, model: str, dim: int) -> None:
        memories.append(
            {
                "memory_id": uuid.uuid4().hex,
                "user_id": user,
                "agent_id": None,
                "content": "fact",
                "topics": [],
                "source_run_id": None,
                "created_at": now,
                "updated_at": now,
                "embedding_model": model,
                "embedding": blob(vec(rng, dim)),
            }
        )

    for u in range(USERS):
        for _ in range(PER_USER):
            memory(f"user{u}", "m256", 256)
    for _ in range(1000):
        memory("big", "m256", 256)
        memory("big1536", "m1536", 1536)
    learnings = [
        {
            "learning_id": uuid.uuid4().hex,
            "kind": "learned_knowledge",
            "namespace": "global",
            "user_id": None,
            "session_id": None,
            "entity_id": None,
            "content": {"text": "insight"},
            "status": "active",
            "source_run_id": None,
            "created_at": now,
            "updated_at": now,
            "embedding_model": "m256",
            "embedding": blob(vec(rng, 256)),
        }
        for _ in range(10_000)
    ]
    with db.engine.begin() as conn:
        conn.execute(insert(db.tables.vectors.memories), memories)
        conn.execute(insert(db.tables.vectors.learnings), learnings)


def vec0_tables(conn: Any) -> None:
    """The same vectors in vec0 tables, partitioned by user / namespace."""
    conn.execute("BEGIN")
    for dim in (256, 1536):
        conn.execute(
            f"CREATE VIRTUAL TABLE vm{dim} USING vec0(memory_id text primary key, "
            f"user_id text partition key, embedding float[{dim}] distance_metric=cosine)"
        )
        conn.execute(
            f"INSERT INTO vm{dim} SELECT memory_id, user_id, embedding FROM kern_memories "
            "WHERE length(embedding) = ?",
            (dim * 4,),
        )
    conn.execute(
        "CREATE VIRTUAL TABLE vl256 USING vec0(learning_id text primary key, "
        "ns text partition key, embedding float[256] distance_metric=cosine)"
    )
    conn.execute(
        "INSERT INTO vl256 SELECT learning_id, kind || '/' || namespace, embedding "
        "FROM kern_learnings"
    )
    conn.execute("COMMIT")


def median_ms(run: Callable[[int], object]) -> float:
    """The median time of ``run(i)`` over ``ROUNDS`` rounds (``i``: the round's query)."""
    times = []
    for i in range(ROUNDS):
        start = time.perf_counter()
        run(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    rng = random.Random(7)
    folder = Path(tempfile.mkdtemp())
    url = f"sqlite:///{folder / 'bench.db'}"
    db = SqliteDb(engine=create_engine(url, module=pysqlite))
    exact = SqliteDb(engine=create_engine(url, module=pysqlite))
    assert db.vector_index == "sqlite-vec", db.vector_index_reason
    exact.dialect.vec_search = None  # the numpy scan, on the same SQLite
    db.create_tables()
    fill(db, rng)
    raw = pysqlite.connect(str(folder / "bench.db"), isolation_level=None)
    raw.enable_load_extension(True)
    sqlite_vec.load(raw)
    vec0_tables(raw)
    raw.execute("ANALYZE")

    by_key = "SELECT memory_id, user_id, content FROM kern_memories WHERE memory_id IN ({})"
    learning_by_key = "SELECT learning_id, content FROM kern_learnings WHERE learning_id IN ({})"

    def two_step(user: str, model: str, query: bytes) -> object:
        keys = [
            k
            for (k,) in raw.execute(
                "SELECT memory_id FROM kern_memories WHERE user_id = ? AND embedding_model = ? "
                "AND length(embedding) = ? ORDER BY vec_distance_cosine(embedding, ?) LIMIT ?",
                (user, model, len(query), query, LIMIT),
            )
        ]
        return raw.execute(by_key.format(",".join("?" * len(keys))), keys).fetchall()

    def vec0(user: str, dim: int, query: bytes) -> object:
        keys = [
            k
            for (k,) in raw.execute(
                f"SELECT memory_id FROM vm{dim} WHERE embedding MATCH ? AND k = ? AND user_id = ?",
                (query, LIMIT, user),
            )
        ]
        return raw.execute(by_key.format(",".join("?" * len(keys))), keys).fetchall()

    def learnings_two_step(query: bytes) -> object:
        keys = [
            k
            for (k,) in raw.execute(
                "SELECT learning_id FROM kern_learnings WHERE kind = ? AND namespace = ? "
                "AND embedding_model = ? AND length(embedding) = ? "
                "ORDER BY vec_distance_cosine(embedding, ?) LIMIT ?",
                ("learned_knowledge", "global", "m256", len(query), query, LIMIT),
            )
        ]
        return raw.execute(learning_by_key.format(",".join("?" * len(keys))), keys).fetchall()

    def learnings_vec0(query: bytes) -> object:
        keys = [
            k
            for (k,) in raw.execute(
                "SELECT learning_id FROM vl256 WHERE embedding MATCH ? AND k = ? AND ns = ?",
                (query, LIMIT, "learned_knowledge/global"),
            )
        ]
        return raw.execute(learning_by_key.format(",".join("?" * len(keys))), keys).fetchall()

    cases: list[tuple[str, str | None, str, int]] = [
        ("one user's 100 memories (256)", None, "m256", 256),
        ("one user's 1,000 memories (256)", "big", "m256", 256),
        ("one user's 1,000 memories (1536)", "big1536", "m1536", 1536),
        ("10,000 learnings of a namespace (256)", None, "m256", 256),
    ]
    print(
        f"SQLite {pysqlite.sqlite_version}, sqlite-vec {sqlite_vec.__version__}, "
        f"median of {ROUNDS} searches, limit {LIMIT} (ms)"
    )
    print(f"{'candidates (dim)':40} {'numpy':>8} {'sql':>8} {'sql 2-step':>11} {'vec0':>8}")

    def measure(label: str, user: str | None, model: str, dim: int) -> None:
        # Queries and users made before timing: only the search is measured.
        queries = [Embedding(model=model, vector=vec(rng, dim)) for _ in range(ROUNDS)]
        blobs = [query.as_float32() for query in queries]
        users = [user or f"user{rng.randrange(USERS)}" for _ in range(ROUNDS)]
        learning = label.startswith("10,000")

        def search(target: SqliteDb) -> Callable[[int], object]:
            if learning:
                return lambda i: target.search_learnings_by_vector(
                    queries[i],
                    kind="learned_knowledge",
                    namespace="global",
                    user_id=None,
                    status=None,
                    limit=LIMIT,
                )
            return lambda i: target.search_memories_by_vector(
                users[i], queries[i], agent_id=None, limit=LIMIT
            )

        steps: list[Callable[[int], object]] = (
            [lambda i: learnings_two_step(blobs[i]), lambda i: learnings_vec0(blobs[i])]
            if learning
            else [
                lambda i: two_step(users[i], model, blobs[i]),
                lambda i: vec0(users[i], dim, blobs[i]),
            ]
        )
        figures = [median_ms(search(exact)), median_ms(search(db)), *map(median_ms, steps)]
        print(
            f"{label:40} {figures[0]:>8.2f} {figures[1]:>8.2f} {figures[2]:>11.2f} "
            f"{figures[3]:>8.2f}"
        )

    for case in cases:
        measure(*case)
    raw.close()
    db.close()
    exact.close()


if __name__ == "__main__":
    sys.exit(main())
