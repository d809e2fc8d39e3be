"""Postgres's import path and ``storage_report`` on PostgreSQL 18 with pgvector.

The conformance topic ``transfer`` holds the contract on both servers (test_conformance.py,
test_pgvector_suites.py); these hold the pgvector path to its design: an import makes the
HNSW index of each dimension it writes before writing, as ``upsert_memory`` does, and the
generated ``embedding_vec`` follows the imported bytes (set, or cleared with them). And
``storage_report`` reads only: on a database kern never used it creates neither the schema
nor the ``vector`` extension (it says how to get it), sync or async.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from kern.db.postgres import AsyncPostgresDb, PostgresDb
from kern.db.transfer import RecordPage
from kern.records import Embedding, Learning, Memory


def emb(*vector: float) -> Embedding:
    return Embedding(model="m", vector=list(vector))


def names(conn: psycopg.Connection, schema: str) -> set[str]:
    """Relations (tables, indexes) of ``schema``."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s",
        (schema,),
    )
    return {name for (name,) in rows}


def has_extension(conn: psycopg.Connection) -> bool:
    found = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone()
    return found is not None


@pytest.fixture
def untouched(pgvector_server: Any) -> Iterator[tuple[str, str]]:
    """A new database on the pgvector server (no extension created in it yet): its sync URL
    and a plain psycopg URL."""
    name = f"kern_doctor_{uuid.uuid4().hex[:8]}"
    with pgvector_server.admin() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = pgvector_server.database_url(name)
    try:
        yield (
            url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False),
            url.set(drivername="postgresql").render_as_string(hide_password=False),
        )
    finally:
        with pgvector_server.admin() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def test_storage_report_creates_neither_schema_nor_extension(untouched: tuple[str, str]) -> None:
    url, plain = untouched
    db = PostgresDb(url, schema="kern")
    try:
        report = db.storage_report()
        assert report.server_version and report.server_version.startswith("PostgreSQL 18")
        assert report.schema_versions == {} and "kern_runs" in report.missing
        pgvector = {c.name: c for c in report.capabilities}["pgvector"]
        assert not pgvector.available and "not created in this database" in pgvector.detail
        assert pgvector.fix and "CREATE EXTENSION vector" in pgvector.fix
        assert not any(name.endswith("_pgvector") for name in report.expected_versions)
        with psycopg.connect(plain, autocommit=True) as conn:
            assert not has_extension(conn) and names(conn, "kern") == set()

        db.create_tables()  # kern's role here may create the extension: the pgvector path
        report = db.storage_report()
        assert report.healthy, report
        assert report.schema_versions["kern_memories_pgvector"] == 1
        pgvector = {c.name: c for c in report.capabilities}["pgvector"]
        assert pgvector.available and pgvector.fix is None
    finally:
        db.close()

    fresh = PostgresDb(url, schema="kern")  # a Db that has not chosen its path yet
    try:
        report = fresh.storage_report()
        assert report.healthy and "kern_learnings_pgvector" in report.expected_versions
        assert fresh.vector_index_reason is None and fresh._vector_path is None
    finally:
        fresh.close()


async def test_async_storage_report_creates_nothing(untouched: tuple[str, str]) -> None:
    url, plain = untouched
    db = AsyncPostgresDb(url.replace("+psycopg", "+psycopg_async"), schema="kern")
    try:
        report = await db.storage_report()
        assert report.schema_versions == {} and not report.healthy
    finally:
        await db.close()
    with psycopg.connect(plain, autocommit=True) as conn:
        assert not has_extension(conn) and names(conn, "kern") == set()


@pytest.fixture
def db(pgvector_database: Any, fresh_schema: str) -> Iterator[PostgresDb]:
    database = PostgresDb(pgvector_database.url, schema=fresh_schema)
    yield database
    database.close()


def test_an_import_makes_the_index_of_each_dimension_first(
    db: PostgresDb, pgvector_database: Any, fresh_schema: str
) -> None:
    db.create_tables()
    assert db.vector_index == "pgvector hnsw"
    small, large = emb(1.0, 0.5, -0.25), emb(*(float(i % 5) - 2.0 for i in range(12)))
    memories = [Memory(user_id="u", content=f"note {i}") for i in range(3)]
    learning = Learning(kind="k", user_id="u", content={"fact": "x"})
    db.import_records(
        RecordPage(
            kind="memories",
            records=memories,
            embeddings={memories[0].memory_id: small, memories[1].memory_id: large},
        )
    )
    db.import_records(
        RecordPage(kind="learnings", records=[learning], embeddings={learning.learning_id: small})
    )
    with pgvector_database.connect() as conn:
        assert {
            "ix_kern_memories_hnsw_3",
            "ix_kern_memories_hnsw_12",
            "ix_kern_learnings_hnsw_3",
        } <= names(conn, fresh_schema)
        query = sql.SQL(
            "SELECT memory_id, embedding_vec IS NOT NULL FROM {}.kern_memories ORDER BY 1"
        ).format(sql.Identifier(fresh_schema))
        generated = dict(conn.execute(query).fetchall())
    assert generated == {
        memories[0].memory_id: True,
        memories[1].memory_id: True,
        memories[2].memory_id: False,
    }
    assert [h.memory for h in db.search_memories_by_vector("u", large, limit=1)] == [memories[1]]
    assert [h.learning for h in db.search_learnings_by_vector(small)] == [learning]

    # Imported again without vectors: the bytes go, and the generated column with them.
    db.import_records(RecordPage(kind="memories", records=memories))
    with pgvector_database.connect() as conn:
        assert not any(value for _, value in conn.execute(query).fetchall())
    assert db.search_memories_by_vector("u", large) == []
