"""Vectors in the SQL backends (SQLite, DuckDB, Postgres): what the shared layer stores and
how it searches, beyond the backend-independent conformance scenarios.

- the vector lives in the row (``embedding_model``, ``embedding`` as float32 bytes), written
  by the same upsert, and an upsert without one clears it;
- the exact search reads one user's (or one filter's) vectors of the query's model only;
- record reads never select the vector columns;
- ``set_embeddings`` touches nothing else; the backfill lists see other models' vectors;
- schema version 2 of memories and learnings brings a database of the previous version
  forward in place, once, with several openers at a time;
- ``forget_user`` leaves no vector behind.

Postgres: ``KERN_TEST_POSTGRES_URL`` or a server on 127.0.0.1:5432 trusting ``postgres`` (as
in plugins/kern-postgres/tests/conftest.py); each test works in a schema of its own, in a
database of this test session's own. Without a server these tests skip (fail under CI).
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect

from kern.db.base import VectorTable
from kern.db.sql import Link, Scored, SqlDb
from kern.db.sql.migrations import Plan, migrate
from kern.records import Embedding, Learning, LearningStatus, Memory, Session


def emb(*vector: float, model: str = "m1") -> Embedding:
    return Embedding(model=model, vector=list(vector))


# -- backends -------------------------------------------------------------------------------
@dataclass
class Backend:
    """How to open kern on one storage (again and again) and read it with plain SQL."""

    name: str
    open: Callable[[], SqlDb]
    #: Prefix that qualifies a table name in plain SQL (a Postgres schema).
    qualifier: str = ""

    def table(self, name: str) -> str:
        return f"{self.qualifier}{name}"

    def rows(self, db: SqlDb, sql: str) -> list[tuple[Any, ...]]:
        """Plain SQL on the db's own engine; ``{memories}`` etc. name kern's tables."""
        names = {n: self.table(f"kern_{n}") for n in ("memories", "learnings", "schema_versions")}
        with db.engine.connect() as conn:
            return [tuple(row) for row in conn.exec_driver_sql(sql.format(**names))]


@pytest.fixture(params=["sqlite", "duckdb", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        from kern.db.sqlite import SqliteDb

        yield Backend("sqlite", lambda: SqliteDb(db_file=tmp_path / "kern.db"))
    elif request.param == "duckdb":
        pytest.importorskip("duckdb_engine")
        from kern.db.duckdb import DuckDb

        yield Backend("duckdb", lambda: DuckDb(db_file=tmp_path / "kern.duckdb"))
    else:
        url = request.getfixturevalue("pg_url")
        from kern.db.postgres import PostgresDb

        schema = f"v_{uuid.uuid4().hex[:12]}"
        yield Backend("postgres", lambda: PostgresDb(db_url=url, schema=schema), f'"{schema}".')


@pytest.fixture
def db(backend: Backend) -> Iterator[SqlDb]:
    db = backend.open()
    yield db
    db.close()


def stored_vectors(backend: Backend, db: SqlDb, table: str) -> dict[str, tuple[Any, Any]]:
    key = "memory_id" if table == "memories" else "learning_id"
    rows = backend.rows(db, f"SELECT {key}, embedding_model, embedding FROM {{{table}}}")
    return {k: (model, None if data is None else bytes(data)) for k, model, data in rows}


# -- stored with the row ----------------------------------------------------------------------
def test_the_vector_is_stored_with_the_row_and_cleared_by_an_upsert_without_one(
    backend: Backend, db: SqlDb
) -> None:
    vector = emb(0.25, -1.5, 3.0)
    memory = db.upsert_memory(Memory(user_id="u", content="likes tea"), embedding=vector)
    learning = db.upsert_learning(Learning(kind="k", content={"fact": "x"}), embedding=vector)
    for table, key in (("memories", memory.memory_id), ("learnings", learning.learning_id)):
        assert stored_vectors(backend, db, table)[key] == ("m1", vector.as_float32())
    assert [h.memory for h in db.search_memories_by_vector("u", vector)] == [memory]
    assert [h.learning for h in db.search_learnings_by_vector(vector)] == [learning]

    replaced = emb(1.0, 0.0, 0.0, model="m2")
    db.upsert_memory(memory, embedding=replaced)
    assert stored_vectors(backend, db, "memories")[memory.memory_id] == (
        "m2",
        replaced.as_float32(),
    )

    # An upsert without a vector: the stored one described the old row, so it goes.
    again = db.upsert_memory(memory.model_copy(update={"content": "likes coffee"}))
    db.upsert_learning(learning)
    assert stored_vectors(backend, db, "memories")[memory.memory_id] == (None, None)
    assert stored_vectors(backend, db, "learnings")[learning.learning_id] == (None, None)
    assert db.search_memories_by_vector("u", replaced) == []
    assert db.search_learnings_by_vector(vector) == []
    assert db.get_memory(memory.memory_id) == again
    assert again.created_at == memory.created_at


def test_record_reads_never_select_the_vector_columns(backend: Backend, db: SqlDb) -> None:
    """Reads of memories and learnings stay as light as before vectors: only the vector
    search's candidate read and the writes name the vector columns."""
    from sqlalchemy import event

    vector = emb(1.0, 2.0)
    memory = db.upsert_memory(Memory(user_id="u", content="tea"), embedding=vector)
    learning = db.upsert_learning(Learning(kind="k", content={"a": "tea"}), embedding=vector)
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        db.get_memory(memory.memory_id)
        db.list_memories("u")
        db.search_memories("u", "tea")
        db.recall_memories("u", "tea")
        db.get_learning(learning.learning_id)
        db.query_learnings(kind="k")
        db.search_learnings("tea")
        db.memories_without_embedding("m2")
        db.learnings_without_embedding("m2")
        reads = list(seen)
        seen.clear()
        assert len(db.search_memories_by_vector("u", vector)) == 1
        assert len(db.search_learnings_by_vector(vector)) == 1
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    selects = [s for s in reads if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    assert len(selects) >= 9
    assert [s for s in selects if "embedding" in s.split(" FROM ")[0]] == []
    # each search: its candidates (key and vector), then the best rows without vectors
    vectors = [s for s in seen if "embedding" in s]
    assert len(vectors) == 2 and all("embedding_model" in s for s in vectors), seen
    assert len(seen) == 4, seen


# -- search ---------------------------------------------------------------------------------
def test_search_compares_only_vectors_of_the_query_model(db: SqlDb) -> None:
    close = db.upsert_memory(Memory(user_id="u", content="close"), embedding=emb(1.0, 0.1))
    far = db.upsert_memory(Memory(user_id="u", content="far"), embedding=emb(0.0, 1.0))
    # The same direction as the query, but in another model's space: never compared.
    db.upsert_memory(Memory(user_id="u", content="other model"), embedding=emb(1, 0, model="m2"))
    db.upsert_memory(Memory(user_id="u", content="no vector"))
    db.upsert_memory(Memory(user_id="u", content="3 dims"), embedding=emb(1.0, 0.0, 0.0))

    hits = db.search_memories_by_vector("u", emb(1.0, 0.0))
    assert [h.memory for h in hits] == [close, far]
    assert hits[0].score == pytest.approx(1.0 / (1.0 + 0.01) ** 0.5, rel=1e-6)
    assert hits[1].score == pytest.approx(0.0, abs=1e-7)
    assert [h.memory.content for h in db.search_memories_by_vector("u", emb(1, 0, model="m2"))] == [
        "other model"
    ]
    assert db.search_memories_by_vector("u", emb(1.0, 0.0, model="m3")) == []
    assert [h.memory for h in db.search_memories_by_vector("u", emb(1.0, 0.0), limit=1)] == [close]
    assert db.search_memories_by_vector("u", emb(1.0, 0.0), limit=0) == []


def test_search_never_returns_another_users_memories(db: SqlDb) -> None:
    mine = db.upsert_memory(Memory(user_id="u", content="mine"), embedding=emb(0.0, 1.0))
    for i in range(20):  # closer to the query, all of another user
        db.upsert_memory(Memory(user_id=f"v{i % 3}", content="theirs"), embedding=emb(1.0, 0.0))
    assert [h.memory for h in db.search_memories_by_vector("u", emb(1.0, 0.0), limit=10)] == [mine]
    assert db.search_memories_by_vector("nobody", emb(1.0, 0.0)) == []


def test_search_by_agent(db: SqlDb) -> None:
    a = db.upsert_memory(Memory(user_id="u", agent_id="a", content="a"), embedding=emb(1, 0))
    b = db.upsert_memory(Memory(user_id="u", agent_id="b", content="b"), embedding=emb(1, 0.2))
    none = db.upsert_memory(Memory(user_id="u", content="shared"), embedding=emb(1, 0.4))
    query = emb(1.0, 0.0)
    assert [h.memory for h in db.search_memories_by_vector("u", query, agent_id="b")] == [b]
    assert [h.memory for h in db.search_memories_by_vector("u", query)] == [a, b, none]
    assert db.search_memories_by_vector("u", query, agent_id="c") == []


def test_learning_search_takes_the_filters_of_search_learnings(db: SqlDb) -> None:
    def put(content: str, vector: Embedding, **fields: Any) -> Learning:
        return db.upsert_learning(Learning(content={"c": content}, **fields), embedding=vector)

    best = put("best", emb(1.0, 0.0), kind="k", namespace="global")
    near = put("near", emb(1.0, 0.5), kind="k", namespace="global")
    other_kind = put("kind j", emb(1.0, 0.0), kind="j", namespace="global")
    other_ns = put("ns team", emb(1.0, 0.0), kind="k", namespace="team")
    users = put("user u", emb(1.0, 0.1), kind="k", namespace="user", user_id="u")
    put("user v", emb(1.0, 0.0), kind="k", namespace="user", user_id="v")
    proposed = put("proposed", emb(1.0, 0.0), kind="k", namespace="global", status="proposed")
    query = emb(1.0, 0.0)

    def found(**filters: Any) -> list[Learning]:
        return [h.learning for h in db.search_learnings_by_vector(query, limit=20, **filters)]

    assert found(kind="k", namespace="global") == [best, near]
    assert found(kind="j") == [other_kind]
    assert found(namespace="team") == [other_ns]
    assert found(kind="k", namespace="user", user_id="u") == [users]
    assert found(user_id="u") == [users]
    assert found(kind="k", namespace="global", status=LearningStatus.PROPOSED) == [proposed]
    every = [x.learning_id for x in found(kind="k", namespace="global", status=None)]
    assert sorted(every) == sorted(x.learning_id for x in (best, near, proposed))
    assert len(found()) == 6  # every active one, of any kind, namespace and user
    assert found(kind="k", namespace="global", user_id="u") == []
    assert db.search_learnings_by_vector(emb(1.0, 0.0, model="m2")) == []


# -- set_embeddings and the backfill lists --------------------------------------------------
def test_set_embeddings_sets_vectors_only(backend: Backend, db: SqlDb) -> None:
    memory = db.upsert_memory(Memory(user_id="u", content="likes green tea", topics=["tea"]))
    learning = db.upsert_learning(Learning(kind="k", content={"fact": "deploys on Fridays"}))
    vector = emb(0.5, 0.5)

    assert db.set_embeddings("memories", {memory.memory_id: vector, "unknown": vector}) == 1
    assert db.set_embeddings("learnings", {learning.learning_id: vector}) == 1
    assert db.set_embeddings("memories", {}) == 0
    assert db.set_embeddings("learnings", {"gone": vector}) == 0

    assert db.get_memory(memory.memory_id) == memory  # updated_at and every field kept
    assert db.get_learning(learning.learning_id) == learning
    assert stored_vectors(backend, db, "memories") == {
        memory.memory_id: ("m1", vector.as_float32())
    }
    assert [h.memory for h in db.search_memories_by_vector("u", vector)] == [memory]
    assert [h.learning for h in db.search_learnings_by_vector(vector)] == [learning]
    # the text search follows the row as before
    assert [h.memory for h in db.search_memories("u", "tea")] == [memory]
    assert [h.learning for h in db.search_learnings("fridays")] == [learning]

    # set again by another model: replaced, not added
    assert db.set_embeddings("memories", {memory.memory_id: emb(1.0, model="m2")}) == 1
    assert db.search_memories_by_vector("u", vector) == []
    assert db.get_memory(memory.memory_id) == memory


def test_without_embedding_lists_rows_with_none_or_another_models(db: SqlDb) -> None:
    ids = [f"id{i:02d}" for i in range(6)]
    vectors = [None, emb(1.0), emb(1.0, model="m2"), None, emb(1.0), emb(2.0, model="m0")]
    for i, (key, vector) in enumerate(zip(ids, vectors, strict=True)):
        # inserted out of key order, users mixed: the list is by id, of every user
        db.upsert_memory(Memory(memory_id=key, user_id=f"u{i % 2}", content=key), embedding=vector)
        db.upsert_learning(
            Learning(learning_id=key, kind="k" if i % 3 else "j", content={"c": key}),
            embedding=vector,
        )
    wanted = ["id00", "id02", "id03", "id05"]
    assert [m.memory_id for m in db.memories_without_embedding("m1")] == wanted
    assert [m.memory_id for m in db.memories_without_embedding("m1", limit=3)] == wanted[:3]
    assert db.memories_without_embedding("m1", limit=0) == []
    assert [m.memory_id for m in db.memories_without_embedding("m2")] == [
        "id00",
        "id01",
        "id03",
        "id04",
        "id05",
    ]
    assert [x.learning_id for x in db.learnings_without_embedding("m1")] == wanted
    assert [x.learning_id for x in db.learnings_without_embedding("m1", kinds=["k"])] == [
        "id02",
        "id05",
    ]
    assert [x.learning_id for x in db.learnings_without_embedding("m1", kinds=["j", "k", "j"])] == (
        wanted
    )
    assert db.learnings_without_embedding("m1", kinds=[]) == []
    assert db.learnings_without_embedding("m1", kinds=["none"]) == []
    # a backfill empties the list
    db.set_embeddings("memories", {key: emb(3.0) for key in wanted})
    assert db.memories_without_embedding("m1") == []
    first = db.memories_without_embedding("m2", limit=1)[0]
    assert first == db.get_memory("id00")


# -- forget_user ----------------------------------------------------------------------------
def test_forget_user_leaves_no_vectors(backend: Backend, db: SqlDb) -> None:
    rng = random.Random(7)
    secret = emb(*(rng.uniform(-1, 1) for _ in range(32)))
    db.upsert_session(Session(session_id="s", user_id="alice"), expected_version=None)
    db.upsert_memory(Memory(user_id="alice", content="x"), embedding=secret)
    db.upsert_learning(Learning(kind="k", user_id="alice", content={"a": 1}), embedding=secret)
    db.upsert_learning(Learning(kind="k", session_id="s", content={"a": 2}), embedding=secret)
    bob = db.upsert_memory(Memory(user_id="bob", content="y"), embedding=emb(1.0, 2.0))

    assert db.forget_user("alice") == {"runs": 0, "learnings": 2, "memories": 1, "sessions": 1}
    assert db.search_memories_by_vector("alice", secret) == []
    assert db.search_learnings_by_vector(secret, status=None) == []
    assert db.memories_without_embedding("other") == [bob]
    data = secret.as_float32()
    for table in ("memories", "learnings"):
        assert [v for v in stored_vectors(backend, db, table).values() if v[1] == data] == []
    if backend.name == "sqlite":  # nor in the file's free pages or the write-ahead log
        path = Path(db.db_file)  # type: ignore[attr-defined]
        for file in path.parent.glob(path.name + "*"):
            assert data not in file.read_bytes(), file.name


# -- the migration ----------------------------------------------------------------------------
def previous_version(backend: Backend) -> list[Memory]:
    """A database as the previous kern left it: every migration but version 2 of memories and
    learnings (the vector columns), and rows written without them. Returns the memories."""
    db = backend.open()
    vectored = {db.tables.memories.name, db.tables.learnings.name}
    plan: Plan = {
        name: [step for step in steps if name not in vectored or step.version < 2]
        for name, steps in db.migration_plan().items()
    }
    memories = [Memory(memory_id=f"old{i}", user_id="u", content=f"old {i}") for i in range(3)]
    learning = Learning(learning_id="old-l", kind="k", content={"fact": "old"})
    with db._ddl_connection() as conn:
        db.dialect.begin_ddl(conn)
        db.dialect.lock_for_migrations(conn)
        migrate(conn, db.tables, plan)
        conn.execute(db.tables.memories.insert(), [m.model_dump() for m in memories])
        row = learning.model_dump()
        row["status"] = row["status"].value
        conn.execute(db.tables.learnings.insert(), row)
        conn.commit()
        columns = inspect(conn).get_columns("kern_memories", schema=db.tables.memories.schema)
    assert "embedding" not in {c["name"] for c in columns}
    db.close()
    return memories


def columns_and_indexes(db: SqlDb, table: str) -> tuple[set[str], set[str]]:
    with db.engine.connect() as conn:
        schema = db.tables.memories.schema
        columns = {c["name"] for c in inspect(conn).get_columns(table, schema=schema)}
        # the dialect's own catalog query (duckdb_engine does not reflect indexes)
        wanted = [f"ix_{table}_user_model", f"ix_{table}_kind_ns_model"]
        indexes = db.dialect.existing_objects(conn, wanted)
    return columns, indexes


def test_a_database_of_the_previous_version_is_brought_forward(backend: Backend) -> None:
    memories = previous_version(backend)
    db = backend.open()
    try:
        versions = db.schema_versions()
        assert versions["kern_memories"] == versions["kern_learnings"] == 2
        for table, index in (
            ("kern_memories", "ix_kern_memories_user_model"),
            ("kern_learnings", "ix_kern_learnings_kind_ns_model"),
        ):
            columns, indexes = columns_and_indexes(db, table)
            assert {"embedding_model", "embedding"} <= columns
            # DuckDB reads no multi-column index: its scan goes through user_id / kind
            assert (index in indexes) is (backend.name != "duckdb")
        # old rows are there, without vectors, ready to be backfilled
        assert {m.memory_id: m for m in db.list_memories("u")} == {m.memory_id: m for m in memories}
        assert db.memories_without_embedding("m1") == memories
        assert [x.learning_id for x in db.learnings_without_embedding("m1")] == ["old-l"]
        assert db.search_memories_by_vector("u", emb(1.0)) == []
        assert db.set_embeddings("memories", {"old1": emb(1.0)}) == 1
        new = db.upsert_memory(Memory(user_id="u", content="new"), embedding=emb(1.0, 1.0))
        hits = db.search_memories_by_vector("u", emb(1.0, 1.0))
        assert [h.memory for h in hits] == [new]  # old1's vector has another dimension
        assert [h.memory for h in db.search_memories_by_vector("u", emb(2.0))] == [memories[1]]
    finally:
        db.close()


def test_the_upgrade_runs_once_with_several_openers_at_a_time(backend: Backend) -> None:
    previous_version(backend)
    openers = [backend.open() for _ in range(4)]
    start = threading.Barrier(len(openers))
    errors: list[BaseException] = []

    def open_tables(db: SqlDb) -> None:
        try:
            start.wait()
            db.create_tables()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_tables, args=(db,)) for db in openers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        db = openers[0]
        recorded = backend.rows(
            db, "SELECT name, version, applied_at FROM {schema_versions} ORDER BY name"
        )
        assert {
            name: v for name, v, _ in recorded if name in ("kern_memories", "kern_learnings")
        } == {
            "kern_memories": 2,
            "kern_learnings": 2,
        }
        db.upsert_memory(Memory(user_id="u", content="x"), embedding=emb(1.0))
        assert len(db.search_memories_by_vector("u", emb(1.0))) == 1
        # opened again: nothing runs again (same applied_at)
        for other in openers:
            other.close()
        again = backend.open()
        try:
            again.create_tables()
            assert (
                backend.rows(
                    again, "SELECT name, version, applied_at FROM {schema_versions} ORDER BY name"
                )
                == recorded
            )
        finally:
            again.close()
    finally:
        for other in openers:
            other.close()


def test_the_vector_step_changes_nothing_when_run_again(backend: Backend) -> None:
    """A version row set back to 1 (the step's record lost, its work done): opening the
    database runs the step again, which finds the columns and index there."""
    db = backend.open()
    memory = db.upsert_memory(Memory(user_id="u", content="x"), embedding=emb(1.0, 2.0))
    db.close()
    db = backend.open()
    with db.engine.begin() as conn:
        conn.exec_driver_sql(
            f"UPDATE {backend.table('kern_schema_versions')} SET version = 1 "
            "WHERE name IN ('kern_memories', 'kern_learnings')"
        )
    db.close()
    db = backend.open()
    try:
        assert db.schema_versions()["kern_memories"] == 2
        assert [h.memory for h in db.search_memories_by_vector("u", emb(1.0, 2.0))] == [memory]
    finally:
        db.close()


def test_a_lost_memories_table_comes_back_with_its_vector_columns(backend: Backend) -> None:
    db = backend.open()
    db.create_tables()
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {backend.table('kern_memories')}")
    db.close()
    db = backend.open()
    try:
        memory = db.upsert_memory(Memory(user_id="u", content="x"), embedding=emb(1.0))
        assert [h.memory for h in db.search_memories_by_vector("u", emb(1.0))] == [memory]
        columns, indexes = columns_and_indexes(db, "kern_memories")
        assert {"embedding_model", "embedding"} <= columns
        assert ("ix_kern_memories_user_model" in indexes) is (backend.name != "duckdb")
    finally:
        db.close()


# -- the seam for a native vector index -------------------------------------------------------
def test_a_dialect_with_a_vector_index_answers_through_vector_search(tmp_path: Path) -> None:
    """pgvector, DuckDB's vss or sqlite-vec slot in by overriding ``vector_search``; the
    contract methods then never run the exact scan."""
    from kern.db.sqlite import SqliteDb
    from kern.db.sqlite.dialect import SqliteDialect

    asked: list[tuple[str, dict[str, Any], int]] = []

    class IndexedDialect(SqliteDialect):
        def vector_search(
            self,
            link: Link,
            table: VectorTable,
            embedding: Embedding,
            filters: Mapping[str, Any],
            limit: int,
        ) -> list[Scored]:
            asked.append((table, dict(filters), limit))
            return self.exact_vectors.search(link, table, embedding, filters, limit)

    class IndexedDb(SqliteDb):
        dialect_class = IndexedDialect

    db = IndexedDb(db_file=tmp_path / "kern.db")
    try:
        memory = db.upsert_memory(Memory(user_id="u", content="x"), embedding=emb(1.0))
        assert [h.memory for h in db.search_memories_by_vector("u", emb(1.0), limit=3)] == [memory]
        db.search_learnings_by_vector(emb(1.0), kind="k")
    finally:
        db.close()
    assert asked == [
        ("memories", {"user_id": "u", "agent_id": None}, 3),
        (
            "learnings",
            {"kind": "k", "namespace": None, "user_id": None, "status": LearningStatus.ACTIVE},
            5,
        ),
    ]
