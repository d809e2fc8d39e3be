"""search_sessions on SQLite: an FTS5 index of sessions' name and summary, keyed by user."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from kern.db.sqlite import SqliteDb
from kern.records import Session


def test_a_database_made_before_the_index_gets_it_with_its_sessions(tmp_path: Path) -> None:
    path = str(tmp_path / "kern.db")
    db = SqliteDb(db_file=path)
    db.upsert_session(
        Session(session_id="old", user_id="ada", summary="Ada keeps bees in Porto."),
        expected_version=None,
    )
    db.close()
    conn = sqlite3.connect(path, isolation_level=None)  # as a database of the last release
    for trigger in ("ai", "ad", "au"):
        conn.execute(f"DROP TRIGGER kern_sessions_fts_{trigger}")
    conn.execute("DROP TABLE kern_sessions_fts")
    conn.execute("DROP VIEW kern_sessions_fts_source")
    conn.execute("DELETE FROM kern_schema_versions WHERE name = 'kern_sessions_fts'")
    conn.close()

    reopened = SqliteDb(db_file=path)
    try:
        assert [s.session_id for s in reopened.search_sessions("ada", "bees")] == ["old"]
        assert reopened.schema_versions()["kern_sessions_fts"] == 1
    finally:
        reopened.close()


def test_the_search_is_answered_by_the_index(tmp_path: Path) -> None:
    db = SqliteDb(db_file=tmp_path / "kern.db")
    try:
        db.upsert_session(
            Session(session_id="s", user_id="ada", name="Bees", summary="Hives in Porto."),
            expected_version=None,
        )
        with db.engine.connect() as conn:
            plan = [
                str(row[-1])
                for row in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT rowid FROM kern_sessions_fts "
                    "WHERE kern_sessions_fts MATCH 'porto'"
                )
            ]
        assert plan[0].startswith("SCAN kern_sessions_fts VIRTUAL TABLE"), plan
        assert [s.session_id for s in db.search_sessions("ada", "Porto hives")] == ["s"]
        assert db.search_sessions("bob", "Porto") == []
    finally:
        db.close()
