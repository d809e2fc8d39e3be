"""SQLite: ``SqliteDb`` against raw ``sqlite3`` with the same index and pragmas."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kern.db.sqlite import SqliteDb

NAME = "sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    session_id TEXT NOT NULL, seq INTEGER NOT NULL, run_id TEXT NOT NULL,
    input TEXT, messages TEXT NOT NULL, output TEXT, created_at TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
)
"""
INSERT = "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, datetime('now'))"


def kern_db(folder: Path) -> SqliteDb:
    # KERN_BENCH_SQLITE_MODULE=pysqlite3.dbapi2: a driver that loads sqlite-vec
    module = os.environ.get("KERN_BENCH_SQLITE_MODULE") or None
    return SqliteDb(db_file=folder / "kern.db", sqlite_module=module)


class Floor:
    def __init__(self, folder: Path) -> None:
        self.conn = sqlite3.connect(folder / "floor.db", isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(SCHEMA)
        self.count = 0

    def seed(self, session_id: str, prior: int, messages_for: Callable[[int], list[Any]]) -> None:
        self.conn.execute("BEGIN")
        for n in range(prior):
            row = (session_id, n + 1, f"r{n}", f"m{n}", json.dumps(messages_for(n)), "a")
            self.conn.execute(INSERT, row)
        self.conn.execute("COMMIT")

    def last_messages(self, session_id: str, n: int) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT messages FROM runs WHERE session_id = ? ORDER BY seq DESC LIMIT ?",
            (session_id, n),
        ).fetchall()
        return [m for (raw,) in reversed(rows) for m in json.loads(raw)]

    def append(
        self, session_id: str, user_text: str, messages: list[dict[str, Any]], output: str
    ) -> None:
        self.count += 1
        self.conn.execute("BEGIN IMMEDIATE")
        (last,) = self.conn.execute(
            "SELECT coalesce(max(seq), 0) FROM runs WHERE session_id = ?", (session_id,)
        ).fetchone()
        row = (session_id, last + 1, f"t{self.count}", user_text, json.dumps(messages), output)
        self.conn.execute(INSERT, row)
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()
