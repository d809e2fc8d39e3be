"""kern's pgvector path (``kern.db.postgres.vectors``) on PostgreSQL 18, and its exact fallback.

The suites (``test_pgvector_suites.py``) hold the pgvector path to the contract; these tests
hold it to its design: the planner really uses the HNSW indexes for the statements kern
runs, on a table of realistic shape and fresh statistics; both paths rank alike; every
write keeps the generated column equal to the float32 bytes; the migration of a database
that had vectors before pgvector backfills it; and each Db says once which path it uses.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql
from sqlalchemy import event

from kern.db.postgres import AsyncPostgresDb, PostgresDb
from kern.db.postgres.vectors import EXACT, PGVECTOR
from kern.records import Embedding, Learning, LearningStatus, Memory

#: The embedder of the realistic table: 64 dimensions, 40 topics.
DIM, MODEL, TOPICS = 64, "clustered-64", 40
#: The realistic table: one user with most memories, many users with a few each.
HEAVY_USER, HEAVY, USERS, PER_USER = "heavy", 2000, 150, 20
LEARNINGS = 3000


def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What kern said about its vector search on ``kern.db.postgres``."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "kern.db.postgres" and r.getMessage().startswith("kern vector search on")
    ]


def _plans(db: PostgresDb) -> tuple[list[dict[str, Any]], Any]:
    """A list that fills with the ``EXPLAIN (ANALYZE, FORMAT JSON)`` plan of each vector
    search statement ``db`` runs, explained on its own connection with its own parameters
    (so with kern's connection settings); and the listener, to remove."""
    plans: list[dict[str, Any]] = []

    def listen(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if "<=>" not in statement:
            return
        explain = conn.connection.dbapi_connection.cursor()
        try:
            explain.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters)
            plans.append(explain.fetchone()[0][0]["Plan"])
        finally:
            explain.close()

    event.listen(db.engine, "before_cursor_execute", listen)
    return plans, listen


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


def _scans(plans: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """``(node type, index name)`` of every scan in ``plans``."""
    return [
        (node["Node Type"], node.get("Index Name"))
        for plan in plans
        for node in _nodes(plan)
        if "Scan" in node["Node Type"]
    ]


# -- a table of realistic shape -----------------------------------------------------------------
@dataclass
class Realistic:
    db: PostgresDb
    rng: np.random.Generator
    centroids: np.ndarray

    def vector(self) -> np.ndarray:
        """A vector near one of the topics, as an embedder's vectors cluster by meaning."""
        topic = self.centroids[self.rng.integers(TOPICS)]
        noisy: np.ndarray = (topic + 0.35 * self.rng.standard_normal(DIM)).astype("<f4")
        return noisy

    def query(self) -> Embedding:
        return Embedding(model=MODEL, vector=self.vector().tolist())


@pytest.fixture(scope="module")
def realistic(pgvector_database: Any) -> Iterator[Realistic]:
    """7,000 memories (2,000 of one user, 20 each of 150 others) and 3,000 learnings of one
    kind (most in namespace ``global``), 64-dimension vectors, ANALYZEd. The rows are
    copied in; kern's first write of a 64-dimension vector then builds the indexes."""
    schema = f"real_{uuid.uuid4().hex[:8]}"
    db = PostgresDb(pgvector_database.url, schema=schema)
    rng = np.random.default_rng(14)
    data = Realistic(db, rng, rng.standard_normal((TOPICS, DIM)))
    db.create_tables()
    now = datetime.now(UTC)
    table = sql.SQL("{}.{}").format
    with pgvector_database.connect() as conn, conn.cursor() as cur:
        memories = table(sql.Identifier(schema), sql.Identifier("kern_memories"))
        columns = "memory_id, user_id, content, topics, created_at, updated_at, "
        copy_memories = sql.SQL(
            "COPY {} (" + columns + "embedding_model, embedding) FROM STDIN"
        ).format(memories)
        with cur.copy(copy_memories) as copy:
            for i in range(HEAVY + USERS * PER_USER):
                user = HEAVY_USER if i < HEAVY else f"user-{i % USERS}"
                row = (f"m{i}", user, f"memory {i}", "[]", now, now, MODEL)
                copy.write_row((*row, data.vector().tobytes()))
        learnings = table(sql.Identifier(schema), sql.Identifier("kern_learnings"))
        copy_learnings = sql.SQL(
            "COPY {} (learning_id, kind, namespace, user_id, content, status, created_at, "
            "updated_at, embedding_model, embedding) FROM STDIN"
        ).format(learnings)
        with cur.copy(copy_learnings) as copy:
            for i in range(LEARNINGS):
                namespace = "global" if i % 4 else f"ns-{i % 9}"
                status = "proposed" if i % 5 == 0 else "active"
                row = ("k", namespace, f"user-{i % USERS}", json.dumps({"i": i}), status)
                copy.write_row((f"l{i}", *row, now, now, MODEL, data.vector().tobytes()))
    seed = Embedding(model=MODEL, vector=data.vector().tolist())
    db.upsert_memory(Memory(user_id="seed", content="seed"), embedding=seed)
    db.upsert_learning(Learning(kind="k", namespace="global", content={"seed": 1}), embedding=seed)
    with pgvector_database.connect() as conn:
        for name in ("kern_memories", "kern_learnings"):
            conn.execute(
                sql.SQL("ANALYZE {}.{}").format(sql.Identifier(schema), sql.Identifier(name))
            )
    try:
        yield data
    finally:
        db.close()


def test_explain_of_the_vector_search_shows_the_hnsw_index(realistic: Realistic) -> None:
    """The statements kern runs, explained with their parameters on kern's connection: a
    store's learnings and the memories of a user holding most rows are read through the
    HNSW index; a user with 20 memories among 7,000 through the user's own index (a sort
    of 20 rows, exact, beats a graph walk where 1 row in 350 passes the filter). No plan
    reads the table whole."""
    db, query = realistic.db, realistic.query()
    assert db.vector_index == PGVECTOR
    plans, listener = _plans(db)
    try:
        found = db.search_learnings_by_vector(query, kind="k", namespace="global", limit=5)
        learning_scans = _scans(plans)
        plans.clear()
        heavy = db.search_memories_by_vector(HEAVY_USER, query, limit=5)
        heavy_scans = _scans(plans)
        plans.clear()
        few = db.search_memories_by_vector("user-7", query, limit=5)
        few_scans = _scans(plans)
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert len(found) == len(heavy) == len(few) == 5
    assert learning_scans == [("Index Scan", "ix_kern_learnings_hnsw_64")], learning_scans
    assert heavy_scans == [("Index Scan", "ix_kern_memories_hnsw_64")], heavy_scans
    assert few_scans == [("Index Scan", "ix_kern_memories_user_model")], few_scans
    assert all(hit.memory.user_id == HEAVY_USER for hit in heavy)
    assert all(hit.memory.user_id == "user-7" for hit in few)


def test_exact_and_pgvector_paths_agree_on_the_top_results(realistic: Realistic) -> None:
    """For the same data and queries, the HNSW answer is the exact scan's: the same best
    row every time, the same top 5 for (almost) every query, and the same scores."""
    db = realistic.db
    exact = db.dialect.exact_vectors
    same = total = 0
    for _ in range(20):
        query = realistic.query()
        searches: list[tuple[Any, str, dict[str, Any], str]] = [
            (
                lambda q=query: db.search_learnings_by_vector(q, kind="k", namespace="global"),
                "learnings",
                {"kind": "k", "namespace": "global", "status": LearningStatus.ACTIVE},
                "learning",
            ),
            (
                lambda q=query: db.search_memories_by_vector(HEAVY_USER, q),
                "memories",
                {"user_id": HEAVY_USER},
                "memory",
            ),
        ]
        for search, table, filters, field in searches:
            indexed = [(getattr(hit, field).model_dump(), hit.score) for hit in search()]
            with db._read() as link:
                scanned = exact.search(link, table, query, filters, 5)
            key = f"{field}_id"
            ids = [record[key] for record, _ in indexed]
            want = [row[key] for row, _ in scanned]
            assert ids[0] == want[0], (table, ids, want)
            same += len(set(ids) & set(want))
            total += len(want)
            scores = {row[key]: score for row, score in scanned}
            for record, score in indexed:
                if record[key] in scores:
                    assert score == pytest.approx(scores[record[key]], abs=1e-6)
    assert same / total >= 0.95, f"only {same} of {total} top-5 rows agree"


# -- every write keeps the column -----------------------------------------------------------------
def _column_matches_bytes(database: Any, schema: str) -> dict[str, int]:
    """Check every row of both tables: ``embedding_vec`` is the BLOB's vector, or NULL with
    it. Returns the rows with a vector per table."""
    counts = {}
    with database.connect() as conn:
        for name in ("kern_memories", "kern_learnings"):
            rows = conn.execute(
                sql.SQL("SELECT embedding, embedding_vec::text FROM {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(name)
                )
            ).fetchall()
            for blob, as_text in rows:
                if blob is None:
                    assert as_text is None
                    continue
                stored = np.frombuffer(blob, dtype="<f4")
                if stored.size > 16000:
                    assert as_text is None
                    continue
                parsed = np.array(as_text.strip("[]").split(","), dtype="<f4")
                assert np.array_equal(parsed, stored), (name, parsed[:4], stored[:4])
            counts[name] = sum(blob is not None for blob, _ in rows)
    return counts


def _indexes(database: Any, schema: str) -> set[str]:
    with database.connect() as conn:
        rows = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND indexdef LIKE '%%hnsw%%'",
            (schema,),
        ).fetchall()
    return {name for (name,) in rows}


def test_every_write_keeps_the_pgvector_column(pgvector_database: Any, fresh_schema: str) -> None:
    """Upserts with, without and with another vector, ``set_embeddings``, deletes and
    ``forget_user``: the generated column always holds the bytes' vector (extreme floats
    included); each dimension written gets its index, and one above pgvector's 2,000 is
    searched without one."""
    db = PostgresDb(pgvector_database.url, schema=fresh_schema)
    try:
        eight = [1.0, -2.5, 1e-38, -3.4e38, 1.5e-45, 0.1, 0.0, 7.0]
        memory = db.upsert_memory(
            Memory(user_id="u", content="a"), embedding=Embedding(model="m8", vector=eight)
        )
        other = db.upsert_memory(Memory(user_id="u", content="b"))
        db.upsert_memory(
            Memory(user_id="gone", content="c"), embedding=Embedding(model="m8", vector=eight)
        )
        wide = [0.5] * 2001
        db.upsert_memory(
            Memory(user_id="u", content="wide"), embedding=Embedding(model="w", vector=wide)
        )
        learning = db.upsert_learning(
            Learning(kind="k", content={"x": 1}),
            embedding=Embedding(model="m12", vector=[0.25] * 12),
        )
        assert _column_matches_bytes(pgvector_database, fresh_schema) == {
            "kern_memories": 3,
            "kern_learnings": 1,
        }
        db.upsert_memory(memory.model_copy(update={"content": "a2"}))  # cleared
        db.set_embeddings("memories", {other.memory_id: Embedding(model="m8", vector=[3.0] * 8)})
        db.set_embeddings("learnings", {learning.learning_id: Embedding(model="m8", vector=eight)})
        db.forget_user("gone")
        assert _column_matches_bytes(pgvector_database, fresh_schema) == {
            "kern_memories": 2,
            "kern_learnings": 1,
        }
        assert _indexes(pgvector_database, fresh_schema) == {
            "ix_kern_memories_hnsw_8",
            "ix_kern_learnings_hnsw_12",
            "ix_kern_learnings_hnsw_8",
        }
        hits = db.search_memories_by_vector("u", Embedding(model="w", vector=wide))
        assert [(hit.memory.content, round(hit.score, 6)) for hit in hits] == [("wide", 1.0)]
        hits = db.search_memories_by_vector("u", Embedding(model="m8", vector=[1.0] * 8))
        assert [hit.memory.memory_id for hit in hits] == [other.memory_id]
    finally:
        db.close()


# -- which path, said once ------------------------------------------------------------------------
def test_pgvector_path_is_said_once(
    pgvector_database: Any, fresh_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kern.db.postgres")
    db = PostgresDb(pgvector_database.url, schema=fresh_schema)
    try:
        assert db.vector_index == PGVECTOR
        assert db.vector_index_reason is None
        query = Embedding(model="m", vector=[1.0, 0.0])
        for i in range(3):
            db.upsert_memory(Memory(user_id="u", content=f"{i}"), embedding=query)
            db.search_memories_by_vector("u", query)
        said = _said(caplog)
        assert len(said) == 1, said
        assert f": {PGVECTOR} (pgvector 0.8" in said[0]
        assert "password" not in said[0]
    finally:
        db.close()


async def test_async_db_says_which_path_once(
    pgvector_database: Any, fresh_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kern.db.postgres")
    db = AsyncPostgresDb(pgvector_database.async_url, schema=fresh_schema)
    try:
        assert db.vector_index is None  # not chosen before the first use
        query = Embedding(model="m", vector=[1.0, 0.0])
        await db.upsert_memory(Memory(user_id="u", content="x"), embedding=query)
        assert db.vector_index == PGVECTOR
        assert [hit.score for hit in await db.search_memories_by_vector("u", query)] == [1.0]
        assert len(_said(caplog)) == 1
    finally:
        await db.close()


def test_exact_path_is_said_once_with_why(
    pg_database: Any, fresh_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """On the main test server (no pgvector on this machine's PostgreSQL 15): exact search,
    the reason named once, and searches that work."""
    caplog.set_level(logging.INFO, logger="kern.db.postgres")
    with pg_database.connect() as conn:
        available = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
        ).fetchone()
    if available is not None:
        pytest.skip("the main test server has pgvector: its exact path is tested by role below")
    db = PostgresDb(pg_database.url, schema=fresh_schema)
    try:
        assert db.vector_index == EXACT
        assert db.vector_index_reason == (
            "extension vector is not available on this server: exact search over each user's rows"
        )
        query = Embedding(model="m", vector=[1.0, 0.0])
        db.upsert_memory(Memory(user_id="u", content="x"), embedding=query)
        assert [hit.score for hit in db.search_memories_by_vector("u", query)] == [1.0]
        said = _said(caplog)
        assert said == [
            f"kern vector search on {db.storage_target()}: exact ({db.vector_index_reason})"
        ]
    finally:
        db.close()


# -- the migration of a database that had vectors before pgvector -------------------------------
@pytest.fixture
def plain_role_database(pgvector_server: Any) -> Iterator[tuple[str, str]]:
    """A database without the extension, owned by a role that is no superuser (so it
    cannot create it): ``(kern's URL as that role, the superuser's conninfo)``."""
    name, role = f"kern_plain_{uuid.uuid4().hex[:8]}", f"kern_plain_{uuid.uuid4().hex[:8]}"
    with pgvector_server.admin() as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(role)
            )
        )
    url = pgvector_server.url.set(drivername="postgresql+psycopg", username=role, database=name)
    superuser = pgvector_server.url.set(drivername="postgresql", database=name)
    try:
        yield (
            url.render_as_string(hide_password=False),
            superuser.render_as_string(hide_password=False),
        )
    finally:
        with pgvector_server.admin() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_migration_backfills_vectors_stored_before_pgvector(
    plain_role_database: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A role that may not create the extension gets the exact path, and says why; its
    vectors (two dimensions, two tables, some rows without) are then backfilled by the
    migration of the first Dbs opened after a superuser created the extension: two at once,
    one doing the work. Results are the same before and after."""
    url, superuser = plain_role_database
    caplog.set_level(logging.INFO, logger="kern.db.postgres")
    before = PostgresDb(url)
    rng = np.random.default_rng(3)
    queries = {
        dims: Embedding(model=f"m{dims}", vector=rng.standard_normal(dims).tolist())
        for dims in (8, 16)
    }
    try:
        assert before.vector_index == EXACT
        reason = before.vector_index_reason or ""
        assert "could not create it (permission denied to create extension" in reason, reason
        assert "CREATE EXTENSION vector" in reason
        for i in range(30):
            dims = 8 if i % 3 else 16
            vector = Embedding(model=f"m{dims}", vector=rng.standard_normal(dims).tolist())
            before.upsert_memory(
                Memory(user_id=f"u{i % 2}", content=f"{i}"),
                embedding=None if i % 7 == 0 else vector,
            )
            before.upsert_learning(Learning(kind="k", content={"i": i}), embedding=vector)

        def results(db: PostgresDb) -> list[list[tuple[str, float]]]:
            found = []
            for query in queries.values():
                for user in ("u0", "u1"):
                    hits = db.search_memories_by_vector(user, query, limit=50)
                    found.append([(h.memory.memory_id, round(h.score, 6)) for h in hits])
                hits_l = db.search_learnings_by_vector(query, kind="k", limit=50)
                found.append([(h.learning.learning_id, round(h.score, 6)) for h in hits_l])
            return found

        expected = results(before)
        assert all(expected), expected
    finally:
        before.close()
    with psycopg.connect(superuser, autocommit=True) as admin:
        admin.execute("CREATE EXTENSION vector")

    after = [PostgresDb(url), PostgresDb(url)]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def migrate(db: PostgresDb) -> None:
        start.wait()
        try:
            db.create_tables()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(db,)) for db in after]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert not errors, errors
        for db in after:
            assert db.vector_index == PGVECTOR
            versions = db.schema_versions()
            assert versions["kern_memories_pgvector"] == versions["kern_learnings_pgvector"] == 1
        assert results(after[0]) == expected
        with psycopg.connect(superuser) as conn:
            filled = conn.execute(
                "SELECT count(*) FILTER (WHERE embedding_vec IS NOT NULL), "
                "count(*) FILTER (WHERE embedding IS NOT NULL) FROM kern_memories"
            ).fetchone()
            assert filled is not None and filled[0] == filled[1] > 0
            indexes = conn.execute(
                "SELECT indexname FROM pg_indexes WHERE indexdef LIKE '%hnsw%' ORDER BY 1"
            ).fetchall()
        assert [name for (name,) in indexes] == [
            "ix_kern_learnings_hnsw_16",
            "ix_kern_learnings_hnsw_8",
            "ix_kern_memories_hnsw_16",
            "ix_kern_memories_hnsw_8",
        ]
        said = _said(caplog)
        assert len(said) == 3 and said[0].endswith(f"({reason})"), said
        assert all(f": {PGVECTOR} (" in line for line in said[1:]), said
    finally:
        for db in after:
            db.close()
