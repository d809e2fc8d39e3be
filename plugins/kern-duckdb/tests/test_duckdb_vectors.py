"""DuckDB's vector search: computed in SQL, equal to the brute force, and said once.

The conformance suite (``test_conformance.py``, topic ``vectors``) holds the contract; these
check what is DuckDB's own: the in-SQL statement ranks as ``kern.vectors.nearest`` does
over a table where models, dimensions and users mix, in one statement; a file whose vectors
were stored as BLOBs is converted; the path in use is logged once; and a vss wheel built
for another DuckDB version is recognised as such without being loaded (loading one crashes
the process).
"""

from __future__ import annotations

import logging
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from sqlalchemy import event

from kern.db.duckdb import DuckDb
from kern.db.duckdb.vss import (
    EXACT,
    VssWheel,
    choose_vector_index,
    find_vss_wheel,
)
from kern.records import Embedding, Learning, LearningStatus, Memory
from kern.vectors import nearest

DIM = 16


@pytest.fixture
def db(tmp_path: Path) -> Iterator[DuckDb]:
    database = DuckDb(db_file=tmp_path / "kern.duckdb")
    yield database
    database.close()


def _random(rng: random.Random, dim: int = DIM) -> list[float]:
    return [rng.gauss(0.0, 1.0) for _ in range(dim)]


def test_in_sql_search_ranks_as_brute_force_with_mixed_models_and_users(db: DuckDb) -> None:
    rng = random.Random(3)
    users, models = ["alice", "bob", "carol"], ["m-16", "m-16b", "m-8"]
    stored: dict[tuple[str, str, str | None], dict[str, list[float]]] = {}
    for i in range(240):
        user, model = users[i % 3], models[(i // 3) % 3]
        agent = ("planner", "writer")[(i // 9) % 2]
        vector = _random(rng, 8 if model == "m-8" else DIM)
        if i % 17 == 0:
            vector = [0.0] * len(vector)  # a zero vector scores 0.0, as in nearest
        memory = db.upsert_memory(
            Memory(user_id=user, agent_id=agent, content=f"fact {i}"),
            embedding=Embedding(model=model, vector=vector),
        )
        for scope in (None, agent):
            stored.setdefault((user, model, scope), {})[memory.memory_id] = vector
        if i % 11 == 0:  # without a vector: never a candidate
            db.upsert_memory(Memory(user_id=user, content=f"plain {i}"))
    # A vector of the same model but another length (a misconfigured embedder): skipped.
    db.upsert_memory(
        Memory(user_id="alice", content="odd length"),
        embedding=Embedding(model="m-16", vector=_random(rng, 12)),
    )

    for _ in range(5):
        for user in users:
            for model in models:
                query = _random(rng, 8 if model == "m-8" else DIM)
                for agent in (None, "planner"):
                    found = db.search_memories_by_vector(
                        user, Embedding(model=model, vector=query), agent_id=agent, limit=7
                    )
                    candidates = stored.get((user, model, agent), {})
                    expected = nearest(query, candidates.items(), 7)
                    assert [hit.memory.memory_id for hit in found] == [k for k, _ in expected]
                    for hit, (_, score) in zip(found, expected, strict=True):
                        assert hit.memory.user_id == user
                        assert abs(hit.score - score) < 1e-5


def test_learnings_search_scores_in_sql_through_an_index(db: DuckDb) -> None:
    rng = random.Random(5)
    vectors: dict[str, list[float]] = {}
    for i in range(60):
        vector = _random(rng)
        learning = db.upsert_learning(
            Learning(
                kind=f"k{i % 3}",
                namespace="user",
                user_id=f"u{i % 4}",
                status=(LearningStatus.ACTIVE, LearningStatus.PROPOSED)[i % 5 == 0],
                content={"i": i},
            ),
            embedding=Embedding(model="m", vector=vector),
        )
        if i % 3 == 0 and i % 4 == 1 and i % 5 != 0:
            vectors[learning.learning_id] = vector
    query = _random(rng)
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        found = db.search_learnings_by_vector(
            Embedding(model="m", vector=query), kind="k0", user_id="u1", limit=3
        )
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    # the scoring (through the kind index), then the best rows by key, without vectors
    assert len(statements) == 2, statements
    assert "list_cosine_similarity" in statements[0] and "MATERIALIZED" in statements[0]
    assert "embedding" not in statements[1]
    expected = nearest(query, vectors.items(), 3)
    assert [hit.learning.learning_id for hit in found] == [k for k, _ in expected]


def test_vectors_stored_as_blobs_are_converted(tmp_path: Path) -> None:
    """A file whose vectors are only in the shared ``embedding`` BLOB (written before
    ``embedding_array`` existed) has them copied into the array column when kern opens it."""
    path = tmp_path / "kern.duckdb"
    db = DuckDb(db_file=path)
    kept = db.upsert_memory(
        Memory(user_id="u", content="near"), embedding=Embedding(model="m", vector=[1.0, 0.0])
    )
    other = db.upsert_memory(
        Memory(user_id="u", content="far"), embedding=Embedding(model="m", vector=[0.6, 0.8])
    )
    learning = db.upsert_learning(
        Learning(kind="k", content={"f": 1}), embedding=Embedding(model="m", vector=[0.0, 1.0])
    )
    db.close()
    conn = duckdb.connect(str(path))
    try:
        for table in ("kern_memories", "kern_learnings"):
            conn.execute(f"UPDATE {table} SET embedding_array = NULL")
            conn.execute(
                "DELETE FROM kern_schema_versions WHERE name = ?", [f"{table}.embedding_array"]
            )
    finally:
        conn.close()

    again = DuckDb(db_file=path)
    try:
        found = again.search_memories_by_vector("u", Embedding(model="m", vector=[1.0, 0.0]))
        assert [(hit.memory.memory_id, round(hit.score, 5)) for hit in found] == [
            (kept.memory_id, 1.0),
            (other.memory_id, 0.6),
        ]
        hits = again.search_learnings_by_vector(Embedding(model="m", vector=[0.0, 1.0]))
        assert [hit.learning.learning_id for hit in hits] == [learning.learning_id]
        assert again.schema_versions()["kern_memories.embedding_array"] == 1
    finally:
        again.close()
    conn = duckdb.connect(str(path))
    try:
        row = conn.execute(
            "SELECT embedding_array FROM kern_memories WHERE memory_id = ?", [other.memory_id]
        ).fetchone()
        assert row is not None and [round(x, 5) for x in row[0]] == [0.6, 0.8]
    finally:
        conn.close()


# -- which path, said once ---------------------------------------------------------------------
def test_the_path_in_use_is_said_once_per_db(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="kern.db.duckdb"):
        db = DuckDb(db_file=tmp_path / "kern.duckdb")
        try:
            query = Embedding(model="m", vector=[1.0, 0.0])
            db.upsert_memory(Memory(user_id="u", content="x"), embedding=query)
            db.search_memories_by_vector("u", query)
            db.search_learnings_by_vector(query)
        finally:
            db.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "kern.db.duckdb"]
    assert len(lines) == 1, lines
    assert db.vector_index == EXACT
    assert f"vector search {EXACT}, because {db.vector_index_reason}" in lines[0]
    assert str(tmp_path / "kern.duckdb") in lines[0]


async def test_the_async_twin_says_which_path(tmp_path: Path) -> None:
    from kern.db.duckdb import AsyncDuckDb

    db = AsyncDuckDb(db_file=tmp_path / "kern.duckdb")
    try:
        assert db.vector_index == EXACT
        assert db.vector_index_reason
    finally:
        await db.close()


def test_a_vss_wheel_of_another_duckdb_version_is_not_used() -> None:
    wheel = VssWheel("1.5.5", {"1.5.5": Path("/nowhere/v1.5.5/vss.duckdb_extension")})
    chosen = choose_vector_index("2.0.0", wheel)
    assert chosen.name == EXACT and chosen.extension is None
    assert "1.5.5" in chosen.reason and "2.0.0" in chosen.reason
    missing = choose_vector_index("2.0.0", None)
    assert missing.name == EXACT and "not installed" in missing.reason
    empty = choose_vector_index("2.0.0", VssWheel("2.0.0", {}))
    assert empty.name == EXACT and "no DuckDB version" in empty.reason


def test_the_installed_wheel_is_found_without_importing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package laid out as the wheel is (``extensions/v<version>/vss.duckdb_extension``)
    is found on the path; its ``__init__`` never runs."""
    package = tmp_path / "duckdb_extension_vss"
    for version in ("9.9.8", "9.9.9"):
        folder = package / "extensions" / f"v{version}"
        folder.mkdir(parents=True)
        (folder / "vss.duckdb_extension").write_bytes(b"not an extension")
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    find_vss_wheel.cache_clear()
    try:
        wheel = find_vss_wheel()
    finally:
        find_vss_wheel.cache_clear()
    assert "duckdb_extension_vss" not in sys.modules
    assert wheel is not None and set(wheel.files) == {"9.9.8", "9.9.9"}
    assert wheel.files["9.9.9"] == package / "extensions" / "v9.9.9" / "vss.duckdb_extension"
    assert choose_vector_index("9.9.7", wheel).name == EXACT
