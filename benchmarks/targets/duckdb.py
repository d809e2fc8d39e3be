"""DuckDB: ``DuckDb`` against the bare ``duckdb`` driver doing the same work.

The floor is what a careful hand-written DuckDB program would do for the same turn: one
connection held open for the whole run (a single process needs no turn-taking), the same
way of reading the last runs through an index (a per-session counter row, then a lookup of
``<session_id>/<seq>`` keys, since DuckDB never walks an index in order) and the same
durability (every append is one committed transaction; DuckDB syncs its WAL on commit).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from kern.db.duckdb import DuckDb

NAME = "duckdb"

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS runs (
        session_id VARCHAR NOT NULL, seq INTEGER NOT NULL, run_id VARCHAR NOT NULL,
        seq_key VARCHAR NOT NULL, input JSON, messages JSON NOT NULL, output JSON,
        created_at TIMESTAMPTZ NOT NULL
    )
    """,
    "CREATE UNIQUE INDEX IF NOT EXISTS runs_seq_key ON runs (seq_key)",
    "CREATE TABLE IF NOT EXISTS counters (session_id VARCHAR PRIMARY KEY, last_seq INTEGER)",
)
INSERT = "INSERT INTO runs VALUES ($1, $2, $3, $4, $5, $6, $7, now())"


def kern_db(folder: Path) -> DuckDb:
    return DuckDb(db_file=folder / "kern.duckdb")


class Floor:
    def __init__(self, folder: Path) -> None:
        self.conn = duckdb.connect(str(folder / "floor.duckdb"))
        for statement in SCHEMA:
            self.conn.execute(statement)
        self.count = 0

    def seed(self, session_id: str, prior: int, messages_for: Callable[[int], list[Any]]) -> None:
        self.conn.execute("BEGIN TRANSACTION")
        for n in range(prior):
            key = f"{session_id}/{n + 1}"
            row = (
                session_id,
                n + 1,
                f"r{n}",
                key,
                json.dumps(f"m{n}"),
                json.dumps(messages_for(n)),
            )
            self.conn.execute(INSERT, [*row, json.dumps("a")])
        self.conn.execute("INSERT INTO counters VALUES ($1, $2)", [session_id, prior])
        self.conn.execute("COMMIT")

    def last_messages(self, session_id: str, n: int) -> list[dict[str, Any]]:
        found = self.conn.execute(
            "SELECT last_seq FROM counters WHERE session_id = $1", [session_id]
        ).fetchone()
        if found is None or not found[0]:
            return []
        last = found[0]
        keys = [f"{session_id}/{seq}" for seq in range(max(1, last - n + 1), last + 1)]
        placeholders = ", ".join(f"${i + 1}" for i in range(len(keys)))
        rows = self.conn.execute(
            f"SELECT seq, messages FROM runs WHERE seq_key IN ({placeholders})", keys
        ).fetchall()
        return [m for _, raw in sorted(rows) for m in json.loads(raw)]

    def append(
        self, session_id: str, user_text: str, messages: list[dict[str, Any]], output: str
    ) -> None:
        self.count += 1
        self.conn.execute("BEGIN TRANSACTION")
        bumped = self.conn.execute(
            "UPDATE counters SET last_seq = last_seq + 1 WHERE session_id = $1 RETURNING last_seq",
            [session_id],
        ).fetchone()
        if bumped is None:
            self.conn.execute("INSERT INTO counters VALUES ($1, 1)", [session_id])
            seq = 1
        else:
            seq = bumped[0]
        row = (session_id, seq, f"t{self.count}", f"{session_id}/{seq}", json.dumps(user_text))
        self.conn.execute(INSERT, [*row, json.dumps(messages), json.dumps(output)])
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()
