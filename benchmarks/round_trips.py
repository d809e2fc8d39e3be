"""What one agent turn sends to its database: statements (SQL backends) or commands (MongoDB).

A warm session (5 turns first), then one turn that leaves the state as it was (an append)
and one that changes it (a ``commit_turn``); the scripted model answers on loopback. SQL
statements are counted with SQLAlchemy's ``before_cursor_execute`` event (a ``COMMIT`` is
not a cursor statement and is not listed), MongoDB commands with pymongo's command
monitoring. Redis is not listed: its turn is one pipeline and one script by construction
(``kern.db.redis.turns``). Figures in docs/benchmarks.md ("Round trips per turn").

    uv run nox -s round_trips
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pymongo import monitoring
from sqlalchemy import event

from kern.agent import Agent
from kern.models.openai import OpenAIChat

REPO = Path(__file__).resolve().parent.parent
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class Commands(monitoring.CommandListener):
    """pymongo's command monitoring, noting each command's name."""

    seen: list[str] = []

    def started(self, event: Any) -> None:
        self.seen.append(event.command_name)

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass


def turns(db: Any, base_url: str, seen: list[str]) -> tuple[list[str], list[str]]:
    """What an append turn and a state-changing turn send, after 5 warm-up turns."""
    agent = Agent(
        model=OpenAIChat(id="count", base_url=base_url, api_key="count"),
        db=db,
        add_history_to_context=True,
        num_history_runs=3,
    )
    for n in range(5):
        agent.run(f"warm-up {n}", session_id="s")
    seen.clear()
    agent.run("an append", session_id="s")
    append = list(seen)
    seen.clear()
    agent.run("a state change", session_id="s", session_state={"n": 1})
    return append, list(seen)


def sql_counter(db: Any) -> list[str]:
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        seen.append(statement.split()[0].upper())

    event.listen(db.engine, "before_cursor_execute", note)
    return seen


def sql_dbs(folder: Path) -> Iterator[tuple[str, Any]]:
    """The three SQL backends, one after the other (Postgres's schema dropped after use)."""
    from kern.db.duckdb import DuckDb
    from kern.db.postgres import PostgresDb
    from kern.db.sqlite import SqliteDb

    yield "sqlite", SqliteDb(db_file=str(folder / "count.db"))
    schema = f"count_{uuid.uuid4().hex[:8]}"
    postgres = PostgresDb(db_url=POSTGRES_URL, schema=schema)
    try:
        yield "postgres", postgres
    finally:
        with postgres.engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        postgres.close()
    yield "duckdb", DuckDb(db_file=str(folder / "count.duckdb"))


def show(name: str, what: str, sent: list[str]) -> None:
    print(f"| {name} | {what} | {len(sent)} | {', '.join(sent)} |", flush=True)


def main() -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "kern.testing.scripted_server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    base_url = server.stdout.readline().strip()
    print("| backend | turn | sent | statements / commands |")
    print("|---|---|---:|---|")
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for name, db in sql_dbs(Path(scratch)):
                append, change = turns(db, base_url, sql_counter(db))
                show(name, "append", append)
                show(name, "state change", change)
        sys.path.insert(0, str(REPO / "plugins" / "kern-mongo" / "tests"))
        import nx_server

        from kern.db.mongo import MongoDb

        monitoring.register(Commands())
        with nx_server.use_test_server(REPO / ".kern-test" / "nx-27017") as mongo:
            db = MongoDb(db_url=mongo.url, database=f"count{uuid.uuid4().hex[:8]}")
            append, change = turns(db, base_url, Commands.seen)
            show("mongo (nx-27017)", "append", append)
            show("mongo (nx-27017)", "state change", change)
            db.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
