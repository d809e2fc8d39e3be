"""Postgres: ``PostgresDb`` against bare psycopg 3 with the same key, locking and durability.

The server: ``KERN_BENCH_POSTGRES_URL``, else ``KERN_TEST_POSTGRES_URL``, else
``postgresql://postgres@127.0.0.1:5432/postgres``. kern and the floor each work in a schema
of their own, made for this run and dropped at the end.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from kern.db.postgres import PostgresDb

NAME = "postgres"

URL = make_url(
    os.environ.get("KERN_BENCH_POSTGRES_URL")
    or os.environ.get("KERN_TEST_POSTGRES_URL")
    or "postgresql://postgres@127.0.0.1:5432/postgres"
)
SCHEMA = f"kern_bench_{uuid.uuid4().hex[:8]}"
FLOOR_SCHEMA = f"{SCHEMA}_floor"

TABLE = f"{FLOOR_SCHEMA}.runs"
DDL = f"""
CREATE SCHEMA {FLOOR_SCHEMA};
CREATE TABLE {TABLE} (
    run_id text PRIMARY KEY, session_id text NOT NULL, seq integer NOT NULL,
    input jsonb, messages jsonb NOT NULL, output jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (session_id, seq)
)
"""
INSERT = (
    f"INSERT INTO {TABLE} (run_id, session_id, seq, input, messages, output) "
    "VALUES (%s, %s, %s, %s, %s, %s)"
)
LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
NEXT = f"SELECT coalesce(max(seq), 0) + 1 FROM {TABLE} WHERE session_id = %s"
LAST = f"SELECT messages FROM {TABLE} WHERE session_id = %s ORDER BY seq DESC LIMIT %s"


def conninfo() -> str:
    return URL.set(drivername="postgresql").render_as_string(hide_password=False)


def kern_db(folder: Path) -> PostgresDb:
    return PostgresDb(db_url=URL, schema=SCHEMA)


class Floor:
    """The same turn with one psycopg connection: autocommit reads, and appends as
    BEGIN / advisory lock / max(seq)+1 / INSERT / COMMIT (kern's own recipe)."""

    def __init__(self, folder: Path) -> None:
        self.conn = psycopg.connect(conninfo(), autocommit=True)
        self.conn.execute(DDL)
        self.count = 0

    def seed(self, session_id: str, prior: int, messages_for: Callable[[int], list[Any]]) -> None:
        with self.conn.transaction(), self.conn.cursor() as cursor:
            rows = [
                (f"r{session_id}{n}", session_id, n + 1, '"m"', json.dumps(messages_for(n)), '"a"')
                for n in range(prior)
            ]
            cursor.executemany(INSERT, rows)

    def last_messages(self, session_id: str, n: int) -> list[dict[str, Any]]:
        rows = self.conn.execute(LAST, (session_id, n)).fetchall()
        return [m for (messages,) in reversed(rows) for m in messages]

    def append(
        self, session_id: str, user_text: str, messages: list[dict[str, Any]], output: str
    ) -> None:
        self.count += 1
        self.conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        self.conn.execute(LOCK, (session_id,))
        (seq,) = self.conn.execute(NEXT, (session_id,)).fetchone()  # type: ignore[misc]
        row = (
            f"t{self.count}-{uuid.uuid4().hex}",
            session_id,
            seq,
            json.dumps(user_text),
            json.dumps(messages),
            json.dumps(output),
        )
        self.conn.execute(INSERT, row)
        self.conn.execute("COMMIT")

    def close(self) -> None:
        # kern's db is closed first (benchmarks/per_turn.py): both schemas can go now.
        self.conn.execute(f"DROP SCHEMA IF EXISTS {FLOOR_SCHEMA} CASCADE")
        self.conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        self.conn.close()
