"""The Agent on Postgres: across processes, as the product docs write it, across a restart.

Models are kern's scripted OpenAI-compatible server (it answers by quoting what it was
sent), reached by the real openai SDK; assertions are on what the SDK put on the wire.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from kern.agent import Agent
from kern.db.postgres import AsyncPostgresDb, PostgresDb
from kern.models.openai import OpenAIChat

SEEDS = Path(__file__).resolve().parents[4] / "shared" / "seeds"
SEED = "persistent-memory-databases.txt"
SEED_ROLE, SEED_PASSWORD, SEED_DATABASE = "user", "pass", "my_app_db"
SEED_HOSTPORT = "localhost:5432"


def user_texts(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "user"]


def model_bodies(server: Any) -> list[dict[str, Any]]:
    return [r.body for r in server.requests if r.path.endswith("/chat/completions")]


def run_child(
    code: str, *args: str, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -c code args`` in a fresh process, without OPENAI_/KERN_ settings but ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "KERN_"))}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


# -- two processes, one session -------------------------------------------------------------
SYNC_TURN = """
import sys
from kern.agent import Agent
from kern.db.postgres import PostgresDb
from kern.models.openai import OpenAIChat

db = PostgresDb(db_url={url!r}, schema={schema!r})
agent = Agent(
    model=OpenAIChat(id="pg-test", base_url={base_url!r}, api_key="test"),
    db=db,
    add_history_to_context=True,
)
output = agent.run(sys.argv[1], session_id={session_id!r})
print(output.seq)
db.close()
"""


def test_two_processes_two_turns_history_carried(
    scripted: Any, pg_database: Any, fresh_schema: str, tmp_path: Path
) -> None:
    code = SYNC_TURN.format(
        url=pg_database.url,
        schema=fresh_schema,
        base_url=scripted.base_url,
        session_id=f"s-{uuid.uuid4().hex}",
    )
    first_turn, second_turn = "My name is Ada.", "What is my name?"
    first = run_child(code, first_turn, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = run_child(code, second_turn, cwd=tmp_path)
    assert second.returncode == 0, second.stderr

    bodies = model_bodies(scripted)
    assert [user_texts(b) for b in bodies] == [[first_turn], [first_turn, second_turn]]
    assert (first.stdout.strip(), second.stdout.strip()) == ("1", "2")


# -- the product docs' async snippet, as written ---------------------------------------------
def numbered_snippets(text: str) -> list[str]:
    """The docs' code blocks: runs of lines numbered 1, 2, 3..., numbers removed."""
    blocks: list[list[str]] = []
    expected = 1
    for line in text.splitlines():
        if line.startswith(str(expected)) and (expected > 1 or line[1:2] != "0"):
            if expected == 1:
                blocks.append([])
            blocks[-1].append(line[len(str(expected)) :])
            expected += 1
        else:
            expected = 1
    return ["\n".join(block) for block in blocks if block]


def seed_snippet(needle: str) -> str:
    path = SEEDS / SEED
    if not path.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing: CI must have shared/ beside the checkout")
        pytest.skip(f"{path} is not beside this checkout")
    return next(code for code in numbered_snippets(path.read_text()) if needle in code)


def _admin_create(admin: psycopg.Connection, statement: sql.Composable) -> bool:
    """Run a CREATE; False if the object was already there (another run made it)."""
    try:
        admin.execute(statement)
    except (psycopg.errors.DuplicateObject, psycopg.errors.DuplicateDatabase):
        return False
    return True


@pytest.fixture
def seed_database(pg_server: Any) -> Iterator[str]:
    """Role ``user`` (password ``pass``) and database ``my_app_db`` owned by it, as the docs'
    URLs assume, on the test server; both are dropped afterwards if this test made them.

    Yields the ``host:port`` the docs' ``localhost:5432`` must be replaced by: itself when
    the test server is on port 5432 of this machine (the snippet then runs exactly as
    written), the server's address otherwise.
    """
    role, database = sql.Identifier(SEED_ROLE), sql.Identifier(SEED_DATABASE)
    with pg_server.admin() as admin:
        exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (SEED_ROLE,)).fetchone()
        made_role = exists is None and _admin_create(
            admin,
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(role, sql.Literal(SEED_PASSWORD)),
        )
        exists = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (SEED_DATABASE,)
        ).fetchone()
        made_database = exists is None and _admin_create(
            admin, sql.SQL("CREATE DATABASE {} OWNER {}").format(database, role)
        )
    url = pg_server.url
    local = url.host in ("127.0.0.1", "localhost", "::1") and (url.port or 5432) == 5432
    try:
        yield SEED_HOSTPORT if local else f"{url.host}:{url.port or 5432}"
    finally:
        with pg_server.admin() as admin:
            if made_database:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))
            if made_role:
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(role))


def test_async_seed_snippet_remembers_across_two_processes(
    scripted: Any, seed_database: str, tmp_path: Path
) -> None:
    """The docs' ``Agent(db=AsyncPostgresDb(db_url="postgresql+psycopg_async://user:pass@
    localhost:5432/my_app_db"))``, run as written in two processes, one ``arun`` turn each.

    The snippet's agent has no model, so the child processes point the SDK's default at
    the scripted server (OPENAI_BASE_URL / OPENAI_API_KEY). It does not turn history on,
    so the lines appended after it do (``add_history_to_context = True``) before the turn:
    the second process's request must then carry the first process's turn, read back from
    Postgres through the async engine.
    """
    snippet = seed_snippet("AsyncPostgresDb")
    assert f'"postgresql+psycopg_async://user:pass@{SEED_HOSTPORT}/my_app_db"' in snippet
    snippet = snippet.replace(SEED_HOSTPORT, seed_database)
    session_id = f"seed-{uuid.uuid4().hex}"
    appended = textwrap.dedent(
        f"""
        import asyncio, sys
        agent.add_history_to_context = True
        output = asyncio.run(agent.arun(sys.argv[1], session_id={session_id!r}))
        print(output.seq)
        """
    )
    code = snippet + "\n" + appended
    env = {"OPENAI_BASE_URL": scripted.base_url, "OPENAI_API_KEY": "test"}
    first_turn, second_turn = "I am building a local-first web app.", "Which framework fits?"

    outputs = []
    for said in (first_turn, second_turn):
        done = run_child(code, said, cwd=tmp_path, **env)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.strip())

    bodies = model_bodies(scripted)
    assert [b["model"] for b in bodies] == ["gpt-4.1-mini"] * 2  # kern's default model
    assert [user_texts(b) for b in bodies] == [[first_turn], [first_turn, second_turn]]
    assert outputs == ["1", "2"]

    # The rows are where the docs' URL says: in my_app_db, owned by role "user".
    url = make_url(f"postgresql://user:pass@{seed_database}/my_app_db")
    with psycopg.connect(url.render_as_string(hide_password=False)) as conn:
        rows = conn.execute(
            "SELECT seq, input FROM kern_runs WHERE session_id = %s ORDER BY seq", (session_id,)
        ).fetchall()
    assert rows == [(1, first_turn), (2, second_turn)]


def test_team_snippet_postgres_db_line_works(seed_database: str, tmp_path: Path) -> None:
    """The docs' ``PostgresDb(db_url="postgresql://user:pass@localhost:5432/my_app_db")``."""
    snippet = seed_snippet("PostgresDb(db_url=")
    line = next(line for line in snippet.splitlines() if line.startswith("db = PostgresDb("))
    assert line == 'db = PostgresDb(db_url="postgresql://user:pass@localhost:5432/my_app_db")'
    code = "\n".join(
        [
            "from kern.db.postgres import PostgresDb",
            "from kern.records import Run",
            line.replace(SEED_HOSTPORT, seed_database),
            f"print(db.append_run(Run(session_id={uuid.uuid4().hex!r})).seq)",
            "db.close()",
        ]
    )
    done = run_child(code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


# -- a server restart between two turns --------------------------------------------------------
def restart_agent(db: Any, scripted: Any) -> Agent:
    model = OpenAIChat(id="pg-restart", base_url=scripted.base_url, api_key="test")
    return Agent(model=model, db=db, add_history_to_context=True)


def test_sync_agent_survives_a_server_restart(restartable_server: Any, scripted: Any) -> None:
    url = restartable_server.url.set(drivername="postgresql", database="kern_restart")
    db = PostgresDb(db_url=url, schema="sync_restart")
    agent = restart_agent(db, scripted)
    try:
        agent.run("Remember the word heliotrope.", session_id="s")
        restartable_server.restart()  # every pooled connection is now dead
        output = agent.run("Which word?", session_id="s")
    finally:
        db.close()
    assert output.seq == 2
    assert user_texts(model_bodies(scripted)[-1]) == [
        "Remember the word heliotrope.",
        "Which word?",
    ]


async def test_async_agent_survives_a_server_restart(
    restartable_server: Any, scripted: Any
) -> None:
    url = restartable_server.url.set(drivername="postgresql+psycopg_async", database="kern_restart")
    db = AsyncPostgresDb(db_url=url, schema="async_restart")
    agent = restart_agent(db, scripted)
    try:
        await agent.arun("Remember the word heliotrope.", session_id="s")
        await asyncio.to_thread(restartable_server.restart)
        output = await agent.arun("Which word?", session_id="s")
    finally:
        await db.close()
    assert output.seq == 2
    assert user_texts(model_bodies(scripted)[-1]) == [
        "Remember the word heliotrope.",
        "Which word?",
    ]
