"""search_sessions on Postgres: a generated tsvector of sessions' name and summary, keyed by
user, under a GIN index."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from kern.db.postgres import PostgresDb
from kern.records import Session


@pytest.fixture
def raw(pg_database: Any) -> Iterator[psycopg.Connection]:
    with pg_database.connect() as conn:
        yield conn


def test_a_database_made_before_the_column_gets_it_with_its_sessions(
    pg_database: Any, raw: psycopg.Connection, fresh_schema: str
) -> None:
    db = PostgresDb(db_url=pg_database.url, schema=fresh_schema)
    db.upsert_session(
        Session(session_id="old", user_id="ada", summary="Ada keeps bees in Porto."),
        expected_version=None,
    )
    db.close()
    raw.execute(f'ALTER TABLE "{fresh_schema}".kern_sessions DROP COLUMN search_vector')
    raw.execute(
        f"DELETE FROM \"{fresh_schema}\".kern_schema_versions WHERE name = 'kern_sessions_search'"
    )

    reopened = PostgresDb(db_url=pg_database.url, schema=fresh_schema)
    try:
        assert [s.session_id for s in reopened.search_sessions("ada", "bees")] == ["old"]
        assert reopened.search_sessions("bob", "bees") == []
        assert reopened.schema_versions()["kern_sessions_search"] == 1
    finally:
        reopened.close()


def test_a_session_without_user_or_summary_is_stored_and_not_found(
    pg_database: Any, fresh_schema: str
) -> None:
    db = PostgresDb(db_url=pg_database.url, schema=fresh_schema)
    try:
        db.upsert_session(Session(session_id="bare"), expected_version=None)
        db.upsert_session(
            Session(session_id="named", user_id="ada", name="Bees and hives"),
            expected_version=None,
        )
        assert db.get_session("bare") is not None
        assert [s.session_id for s in db.search_sessions("ada", "hives")] == ["named"]
    finally:
        db.close()
