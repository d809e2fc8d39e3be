"""search_sessions on DuckDB: the user's sessions holding a query term's stem, ranked by BM25."""

from __future__ import annotations

from pathlib import Path

from kern.db.duckdb import DuckDb
from kern.records import Session


def test_stems_accents_and_underscores(tmp_path: Path) -> None:
    db = DuckDb(db_file=tmp_path / "kern.duckdb")
    try:
        for sid, summary in [
            ("cities", "Ada compared the cities she hiked in."),
            ("cafe", "Ada met Bob at the Café Central."),
            ("snake", "Ada named a variable snake_case."),
            ("category", "A category of things."),
        ]:
            db.upsert_session(
                Session(session_id=sid, user_id="ada", summary=summary), expected_version=None
            )

        assert [s.session_id for s in db.search_sessions("ada", "city hiking")] == ["cities"]
        assert [s.session_id for s in db.search_sessions("ada", "cafe")] == ["cafe"]
        assert [s.session_id for s in db.search_sessions("ada", "snake_case")] == ["snake"]
        assert db.search_sessions("ada", "cat") == []  # inside "category", not a word of it
        assert db.search_sessions("ada", "s_a") == []  # "_" is not a wildcard
        assert db.search_sessions("bob", "cafe") == []
    finally:
        db.close()
