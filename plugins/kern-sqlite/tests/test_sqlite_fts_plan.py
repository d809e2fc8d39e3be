"""The text search's query plan: the FTS index drives, on every SQLite kern runs on.

SQLite 3.51 (pysqlite3's here) would otherwise drive the join from the base table's
``user_id`` index and run the MATCH once per row of that user: 0.9 s instead of 3 ms for a
user with 10,000 memories. A plan, not a timing, is what this checks.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from kern.db.sqlite import SqliteDb
from kern.records import Learning, LearningStatus, Memory

DRIVERS = ["sqlite3"] + (["pysqlite3.dbapi2"] if importlib.util.find_spec("pysqlite3") else [])


def plan_of(db: SqliteDb, search: Any) -> list[str]:
    """The EXPLAIN QUERY PLAN details of the last statement ``search()`` runs."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        search()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    statement, parameters = next(s for s in reversed(seen) if "MATCH" in s[0])
    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
    return [str(row[-1]) for row in rows]


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_fts_index_drives_a_users_memory_search(tmp_path: Path, driver: str) -> None:
    db = SqliteDb(db_file=tmp_path / "k.db", sqlite_module=driver)
    try:
        for i in range(300):
            db.upsert_memory(Memory(user_id="heavy", content=f"note {i} about tea topic{i % 9}"))
        db.upsert_memory(Memory(user_id="light", content="tea"))
        plan = plan_of(db, lambda: db.search_memories("heavy", "tea topic7", limit=5))
        assert plan[0].startswith("SCAN kern_memories_fts VIRTUAL TABLE"), plan
        assert any("USING INTEGER PRIMARY KEY" in step for step in plan), plan
        hits = db.search_memories("heavy", "topic7", limit=50)
        assert len(hits) == 33 and {h.memory.user_id for h in hits} == {"heavy"}
    finally:
        db.close()


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_fts_index_drives_a_learning_search(tmp_path: Path, driver: str) -> None:
    db = SqliteDb(db_file=tmp_path / "k.db", sqlite_module=driver)
    try:
        for i in range(200):
            db.upsert_learning(
                Learning(
                    kind="learned_knowledge",
                    namespace="global",
                    content={"text": f"insight {i} on caching layer{i % 7}"},
                    status=LearningStatus.ACTIVE,
                )
            )

        def search() -> None:
            db.search_learnings(
                "caching layer3", kind="learned_knowledge", namespace="global", limit=5
            )

        plan = plan_of(db, search)
        assert plan[0].startswith("SCAN kern_learnings_fts VIRTUAL TABLE"), plan
    finally:
        db.close()
