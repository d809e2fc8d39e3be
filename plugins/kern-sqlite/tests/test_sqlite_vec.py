"""SQLite's vector search: sqlite-vec where it loads, the numpy scan elsewhere, said once.

The conformance suite's vectors topic runs here on a SqliteDb whose connections come from
pysqlite3 with sqlite-vec loaded (sync and async; the standard-sqlite3 run of the same topic,
the numpy path on this machine, is in ``test_conformance.py``), and the learning suite
(sync). Then what is SQLite's own:
both paths rank the same data alike (users, agents, models and dimensions mixed, learnings
by every filter), a search is one statement, and each Db says once which path it took and why.

pysqlite3-binary has wheels for Linux x86_64 only: elsewhere the sqlite-vec cases are
skipped, with the reason shown by ``-ra``.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import create_engine, event

from kern.db.sqlite import AsyncSqliteDb, SqliteDb
from kern.db.sqlite.vectors import EXACT, SQLITE_VEC, VectorIndex, choose_vector_index
from kern.errors import ConfigurationError
from kern.records import Embedding, Learning, LearningStatus, Memory
from kern.testing.conformance import AsyncBackendConformance, BackendConformance, Capabilities
from kern.testing.conformance.vectors import VectorScenarios

pytest.register_assert_rewrite("kern.testing.learning")

from kern.testing.learning import LearningAcceptance  # noqa: E402

try:
    import pysqlite3.dbapi2 as pysqlite
except ImportError:  # no wheel for this platform
    pysqlite = None

PYSQLITE = "pysqlite3.dbapi2"
VEC: VectorIndex | None = None if pysqlite is None else choose_vector_index(pysqlite)
needs_vec = pytest.mark.skipif(
    VEC is None or not VEC.in_sql,
    reason=(
        "the sqlite-vec path is not tested: "
        + (
            "pysqlite3 is not installed (pysqlite3-binary has wheels for Linux x86_64 only)"
            if VEC is None
            else VEC.reason
        )
    ),
)
LOGGER = "kern.db.sqlite"


def raw_rows(db: Any) -> list[str]:
    """``<table>: <values>`` for every row of the db's tables (FTS5 shadow tables too)."""
    rows: list[str] = []
    with db.engine.connect() as conn:
        names = [n for (n,) in conn.exec_driver_sql("SELECT name FROM sqlite_master")]
        for name in sorted(n for n in names if n.startswith(db.table_prefix)):
            kind = conn.exec_driver_sql(
                "SELECT type FROM sqlite_master WHERE name = ?", (name,)
            ).scalar()
            if kind != "table":
                continue
            for row in conn.exec_driver_sql(f'SELECT * FROM "{name}"'):
                values = [v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in row]
                rows.append(f"{name}: " + " | ".join(values))
    return rows


# -- the conformance suite's vectors topic, on sqlite-vec -------------------------------------
def vectors_only(suite: type[Any]) -> type[Any]:
    """``suite`` with only the scenarios of the vectors topic (the others run in
    ``test_conformance.py``): an attribute that is not a function is not collected."""
    for name in dir(suite):
        if name.startswith("test_") and name not in vars(VectorScenarios):
            setattr(suite, name, None)
    return suite


class _OnSqliteVec:
    """A file of the test's own, opened through pysqlite3 so that sqlite-vec answers."""

    db_class: ClassVar[str]
    capabilities = Capabilities()

    def db_factory(self, tmp_path: Path) -> tuple[str, dict[str, Any]]:
        return self.db_class, {"db_file": str(tmp_path / "kern.db"), "sqlite_module": PYSQLITE}

    def raw_scan(self, db: Any) -> list[str]:
        return raw_rows(db)

    @pytest.fixture(autouse=True)
    def _on_sqlite_vec(self, db: Any) -> None:
        assert db.vector_index == SQLITE_VEC, db.vector_index_reason


@needs_vec
@vectors_only
class TestSqliteVecConformance(_OnSqliteVec, BackendConformance):
    db_class = "kern.db.sqlite:SqliteDb"


@needs_vec
@vectors_only
class TestAsyncSqliteVecConformance(_OnSqliteVec, AsyncBackendConformance):
    db_class = "kern.db.sqlite:AsyncSqliteDb"


# Sync only: the async class runs the same dialect code in worker threads, which the async
# vectors topic above already drives on sqlite-vec.
@needs_vec
class TestSqliteVecLearning(LearningAcceptance):
    """The learning suite (hybrid recall included) with sqlite-vec answering."""

    def db_factory(self, tmp_path: Path) -> tuple[str, dict[str, Any]]:
        return "kern.db.sqlite:SqliteDb", {
            "db_file": str(tmp_path / "kern.db"),
            "sqlite_module": PYSQLITE,
        }


# -- both paths agree --------------------------------------------------------------------------
@pytest.fixture
def both(tmp_path: Path) -> Iterator[tuple[SqliteDb, SqliteDb]]:
    """(sqlite-vec, numpy): two files, one through pysqlite3, one through a sqlite3 module
    that cannot load extensions (the standard one here, else pysqlite3 made to look so)."""
    vec = SqliteDb(db_file=tmp_path / "vec.db", sqlite_module=PYSQLITE)
    exact = SqliteDb(db_file=tmp_path / "exact.db")
    if exact.vector_index != EXACT:  # a Python whose own sqlite3 loads sqlite-vec
        exact.close()
        exact = SqliteDb(db_file=tmp_path / "exact.db")
        exact.dialect.vec_search = None
    assert vec.vector_index == SQLITE_VEC
    yield vec, exact
    vec.close()
    exact.close()


def _random(rng: random.Random, dim: int) -> list[float]:
    return [rng.gauss(0.0, 1.0) for _ in range(dim)]


#: model -> dimension: two models of one dimension, one of another.
MODELS = {"m-16": 16, "m-16b": 16, "m-8": 8}


@needs_vec
def test_sqlite_vec_and_numpy_rank_memories_alike(both: tuple[SqliteDb, SqliteDb]) -> None:
    rng = random.Random(11)
    users = ["alice", "bob", "carol"]
    for i in range(300):
        model = list(MODELS)[(i // 3) % 3]
        vector = _random(rng, MODELS[model])
        if i % 37 == 0:
            vector = [0.0] * len(vector)  # scores 0.0 on both paths
        memory = Memory(
            user_id=users[i % 3], agent_id=("planner", "writer")[(i // 9) % 2], content=f"f{i}"
        )
        for db in both:
            db.upsert_memory(memory, embedding=Embedding(model=model, vector=vector))
            if i % 13 == 0:
                db.upsert_memory(Memory(memory_id=f"plain{i}", user_id=users[i % 3], content="x"))
    # The same model with another length (a misconfigured embedder): never compared.
    odd = Memory(user_id="alice", content="odd length")
    for db in both:
        db.upsert_memory(odd, embedding=Embedding(model="m-16", vector=_random(rng, 12)))

    compared = 0
    for _ in range(4):
        for user in [*users, "nobody"]:
            for model, dim in MODELS.items():
                query = Embedding(model=model, vector=_random(rng, dim))
                for agent in (None, "planner"):
                    vec, exact = (
                        [
                            (hit.memory.memory_id, hit.score)
                            for hit in db.search_memories_by_vector(
                                user, query, agent_id=agent, limit=6
                            )
                        ]
                        for db in both
                    )
                    assert [k for k, _ in vec] == [k for k, _ in exact], (user, model, agent)
                    for (_, a), (_, b) in zip(vec, exact, strict=True):
                        assert abs(a - b) < 1e-5
                    assert odd.memory_id not in dict(vec)
                    compared += len(vec)
    assert compared == 4 * 3 * 3 * 2 * 6  # each real user's search filled its limit


@needs_vec
def test_sqlite_vec_and_numpy_rank_learnings_alike(both: tuple[SqliteDb, SqliteDb]) -> None:
    rng = random.Random(12)
    for i in range(240):
        model = list(MODELS)[(i // 7) % 3]
        learning = Learning(
            kind=("learned_knowledge", "decision_log")[i % 2],
            namespace=("global", "team")[(i // 2) % 2],
            user_id=(None, "alice", "bob")[(i // 4) % 3],
            status=(LearningStatus.ACTIVE, LearningStatus.PROPOSED)[(i // 5) % 2],
            content={"text": f"l{i}"},
        )
        embedding = Embedding(model=model, vector=_random(rng, MODELS[model]))
        for db in both:
            db.upsert_learning(learning, embedding=embedding)

    filters: list[dict[str, Any]] = [
        {},
        {"kind": "learned_knowledge", "namespace": "global"},
        {"kind": "decision_log", "user_id": "alice"},
        {"status": LearningStatus.PROPOSED},
        {"namespace": "team", "user_id": "bob", "status": LearningStatus.ACTIVE},
    ]
    for where in filters:
        for model, dim in MODELS.items():
            query = Embedding(model=model, vector=_random(rng, dim))
            args = {"kind": None, "namespace": None, "user_id": None, "status": None, **where}
            vec, exact = (
                [
                    (hit.learning.learning_id, hit.score)
                    for hit in db.search_learnings_by_vector(query, limit=7, **args)
                ]
                for db in both
            )
            assert vec, where
            assert [k for k, _ in vec] == [k for k, _ in exact], (where, model)
            for (_, a), (_, b) in zip(vec, exact, strict=True):
                assert abs(a - b) < 1e-5


@needs_vec
def test_sqlite_vec_search_is_one_statement(tmp_path: Path) -> None:
    db = SqliteDb(db_file=tmp_path / "kern.db", sqlite_module=PYSQLITE)
    try:
        kept = db.upsert_memory(
            Memory(user_id="u", content="a"), embedding=Embedding(model="m", vector=[1.0, 0.0])
        )
        db.upsert_memory(
            Memory(user_id="u", content="b"), embedding=Embedding(model="m", vector=[0.0, 1.0])
        )
        statements: list[str] = []

        def seen(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", seen)
        try:
            found = db.search_memories_by_vector(
                "u", Embedding(model="m", vector=[0.8, 0.6]), agent_id=None, limit=1
            )
        finally:
            event.remove(db.engine, "before_cursor_execute", seen)
        assert [(hit.memory.memory_id, round(hit.score, 6)) for hit in found] == [
            (kept.memory_id, 0.8)
        ]
        assert len(statements) == 1 and "vec_distance_cosine" in statements[0], statements
    finally:
        db.close()


# -- which path, said once ---------------------------------------------------------------------
def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


@needs_vec
async def test_sqlite_vec_path_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    db = SqliteDb(db_file=tmp_path / "kern.db", sqlite_module=PYSQLITE)
    try:
        assert db.vector_index == SQLITE_VEC == "sqlite-vec"
        assert "sqlite-vec v" in db.vector_index_reason
        query = Embedding(model="m", vector=[1.0, 0.0])
        db.upsert_memory(Memory(user_id="u", content="a"), embedding=query)
        for _ in range(3):
            assert db.search_memories_by_vector("u", query, agent_id=None, limit=3)
        (line,) = _said(caplog)
        assert "vector search sqlite-vec" in line and str(tmp_path) in line
    finally:
        db.close()
    caplog.clear()
    adb = AsyncSqliteDb(db_file=tmp_path / "async.db", sqlite_module=PYSQLITE)
    try:
        assert adb.vector_index == SQLITE_VEC
        assert adb.vector_index_reason == db.vector_index_reason
        await adb.upsert_memory(Memory(user_id="u", content="a"), embedding=query)
        assert await adb.search_memories_by_vector("u", query, agent_id=None, limit=3)
        assert len(_said(caplog)) == 1
    finally:
        await adb.close()


async def test_numpy_path_is_said_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    db = SqliteDb(db_file=tmp_path / "kern.db")
    expected = choose_vector_index(sqlite3.dbapi2)
    try:
        assert (db.vector_index, db.vector_index_reason) == (expected.name, expected.reason)
        query = Embedding(model="m", vector=[1.0, 0.0])
        db.upsert_memory(Memory(user_id="u", content="a"), embedding=query)
        assert db.search_memories_by_vector("u", query, agent_id=None, limit=3)
        (line,) = _said(caplog)
        assert f"vector search {expected.name}, because {expected.reason}" in line
    finally:
        db.close()
    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return  # this Python's sqlite3 can load extensions: the reason is another one
    assert db.vector_index == EXACT == "exact (numpy)"
    assert "cannot load extensions" in db.vector_index_reason
    assert "sqlite_module='pysqlite3.dbapi2'" in db.vector_index_reason
    caplog.clear()
    adb = AsyncSqliteDb(db_file=tmp_path / "async.db")
    try:
        assert (adb.vector_index, adb.vector_index_reason) == (EXACT, expected.reason)
        assert len(_said(caplog)) == 1
    finally:
        await adb.close()


def _module(name: str, connection: type, connect: Any = None) -> types.ModuleType:
    module = types.ModuleType(name)
    module.Connection = connection  # type: ignore[attr-defined]
    module.sqlite_version = "3.99.0"  # type: ignore[attr-defined]
    module.connect = connect  # type: ignore[attr-defined]
    return module


def test_reasons_for_the_numpy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each reason names what is missing and how to get it."""
    choose = choose_vector_index.__wrapped__  # not the per-process cache

    no_loading = choose(_module("fake_sqlite3", object))
    assert no_loading.name == EXACT
    assert "fake_sqlite3 (SQLite 3.99.0) cannot load extensions" in no_loading.reason
    assert "pip install pysqlite3-binary" in no_loading.reason

    class Loading:
        def enable_load_extension(self, on: bool) -> None:
            raise RuntimeError("not authorized")

        def close(self) -> None:
            pass

    refused = choose(_module("fake_loading", Loading, lambda path: Loading()))
    assert refused.name == EXACT
    assert "sqlite-vec did not load into fake_loading" in refused.reason
    assert "not authorized" in refused.reason

    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    missing = choose(_module("fake_loading", Loading, lambda path: Loading()))
    assert missing.name == EXACT
    assert "sqlite-vec is not installed: pip install 'kern-sqlite[vec]'" in missing.reason


def test_sqlite_module_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="both engine and sqlite_module"):
        SqliteDb(engine=create_engine("sqlite://"), sqlite_module="sqlite3")
    with pytest.raises(ConfigurationError, match="could not import 'no_such_sqlite'"):
        SqliteDb(db_file=tmp_path / "kern.db", sqlite_module="no_such_sqlite")
    db = SqliteDb(db_file=tmp_path / "kern.db", sqlite_module=sqlite3)
    try:
        assert db.engine.dialect.loaded_dbapi is sqlite3
    finally:
        db.close()
