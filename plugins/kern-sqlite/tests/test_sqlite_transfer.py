"""SQLite's import path: the FTS5 indexes follow imported rows exactly, and imported vectors
are searched by sqlite-vec.

Imports upsert with ``ON CONFLICT DO UPDATE``, which fires the triggers that keep the
external-content FTS5 indexes in step (``kern.db.sqlite.fts``); FTS5's own integrity check
proves each index equals what its table says, after an import, an import again, an import
that replaces rows and a ``forget_user``, on the standard ``sqlite3`` and, where installed,
on pysqlite3's SQLite with secure-delete. The conformance suite's transfer topic also runs
on sqlite-vec (pysqlite3), so that imported vectors are found by its search.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from kern.db.sqlite import SqliteDb
from kern.db.sqlite.vectors import SQLITE_VEC, choose_vector_index
from kern.db.transfer import RecordPage
from kern.records import Embedding, Learning, Memory, Session
from kern.testing.conformance import AsyncBackendConformance, BackendConformance, Capabilities
from kern.testing.conformance.transfer import TransferScenarios

PYSQLITE = "pysqlite3.dbapi2"
HAS_PYSQLITE = importlib.util.find_spec("pysqlite3") is not None
MODULES = ["sqlite3", *([PYSQLITE] if HAS_PYSQLITE else [])]


@pytest.fixture(params=MODULES)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqliteDb]:
    database = SqliteDb(db_file=tmp_path / "kern.db", sqlite_module=request.param)
    yield database
    database.close()


def fts_integrity(db: SqliteDb) -> None:
    """FTS5's check that each index matches its table (raises if not), on the db's own
    driver: an index with secure-delete cannot be opened by an older SQLite."""
    with db.engine.connect() as conn:
        for table in ("kern_memories_fts", "kern_learnings_fts", "kern_sessions_fts"):
            check = f"INSERT INTO {table}({table}, rank) VALUES ('integrity-check', 1)"
            conn.exec_driver_sql(check)


def test_fts_indexes_follow_imports(db: SqliteDb) -> None:
    session = Session(user_id="u")
    memories = [Memory(user_id="u", content=f"note {i} about alpine huts") for i in range(40)]
    learnings = [
        Learning(kind="k", session_id=session.session_id, content={"fact": f"train {i}"})
        for i in range(40)
    ]
    db.import_records(RecordPage(kind="sessions", records=[session]))
    for _ in range(2):  # the second import replaces every row with itself
        db.import_records(RecordPage(kind="memories", records=memories))
        db.import_records(RecordPage(kind="learnings", records=learnings))
        fts_integrity(db)
    assert len(db.search_memories("u", "huts", limit=100)) == 40

    moved = [m.model_copy(update={"content": "city flat", "user_id": "w"}) for m in memories[:10]]
    db.import_records(RecordPage(kind="memories", records=moved))
    fts_integrity(db)
    assert len(db.search_memories("u", "huts", limit=100)) == 30
    assert {h.memory.memory_id for h in db.search_memories("w", "flat", limit=100)} == {
        m.memory_id for m in moved
    }

    db.forget_user("u")
    fts_integrity(db)
    assert db.search_memories("u", "huts") == [] and db.search_learnings("train") == []


@pytest.mark.skipif(not HAS_PYSQLITE, reason="pysqlite3 is not installed (Linux x86_64 only)")
def test_imported_vectors_are_searched_by_sqlite_vec(tmp_path: Path) -> None:
    import pysqlite3.dbapi2 as pysqlite

    index = choose_vector_index(pysqlite)
    if not index.in_sql:
        pytest.skip(index.reason)
    db = SqliteDb(db_file=tmp_path / "kern.db", sqlite_module=PYSQLITE)
    try:
        assert db.vector_index == SQLITE_VEC
        vectors = {f"m{i}": Embedding(model="m", vector=[1.0, float(i), 0.5]) for i in range(5)}
        memories = [Memory(memory_id=key, user_id="u", content=key) for key in vectors]
        db.import_records(RecordPage(kind="memories", records=memories, embeddings=vectors))
        hits = db.search_memories_by_vector("u", vectors["m3"], limit=1)
        assert [h.memory.memory_id for h in hits] == ["m3"]
        assert db.export_records("memories").embeddings == {
            key: Embedding.from_float32("m", e.as_float32()) for key, e in vectors.items()
        }
    finally:
        db.close()


# -- the transfer topic on sqlite-vec -----------------------------------------------------------
def transfer_only(suite: type[Any]) -> type[Any]:
    """``suite`` with only the transfer topic (the rest runs in test_conformance.py)."""
    for name in dir(suite):
        if name.startswith("test_") and name not in vars(TransferScenarios):
            setattr(suite, name, None)
    return suite


class _OnSqliteVec:
    db_class: ClassVar[str]
    capabilities = Capabilities()

    def db_factory(self, tmp_path: Path) -> tuple[str, dict[str, Any]]:
        return self.db_class, {"db_file": str(tmp_path / "kern.db"), "sqlite_module": PYSQLITE}

    def raw_scan(self, db: Any) -> list[str]:
        raise NotImplementedError("the transfer topic reads through the contract only")

    @pytest.fixture(autouse=True)
    def _on_sqlite_vec(self, db: Any) -> None:
        if db.vector_index != SQLITE_VEC:
            pytest.skip(db.vector_index_reason)


@pytest.mark.skipif(not HAS_PYSQLITE, reason="pysqlite3 is not installed (Linux x86_64 only)")
@transfer_only
class TestSqliteVecTransfer(_OnSqliteVec, BackendConformance):
    db_class = "kern.db.sqlite:SqliteDb"


@pytest.mark.skipif(not HAS_PYSQLITE, reason="pysqlite3 is not installed (Linux x86_64 only)")
@transfer_only
class TestAsyncSqliteVecTransfer(_OnSqliteVec, AsyncBackendConformance):
    db_class = "kern.db.sqlite:AsyncSqliteDb"
