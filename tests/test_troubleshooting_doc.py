"""docs/troubleshooting.md quotes the messages kern really prints, verbatim.

Each row's first quote (``Class: message``, ``…`` standing for any text) is checked against
the error a producer below really raises: the class name and the start of the message must
match. A row with no producer must be listed in ``UNCHECKED`` (with why), so a new row
without a check fails here instead of drifting from the code.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "troubleshooting.md"
ROW = re.compile(r"^\| `([^`]+)`", flags=re.M)

#: Rows checked elsewhere or needing a server or another install: their first quote.
UNCHECKED = {
    "SyncAsyncMismatchError": "the class-only rows; tests of each backend raise them",
    "DuckDbLockedError: … holds … DuckDB allows one writing process per file": "needs a "
    "second process holding the file: plugins/kern-duckdb/tests",
    "BackendNotInstalledError: URL scheme 'postgresql' needs the kern-postgres plugin": "needs "
    "an install without the plugin: tests/test_plugins.py fakes it",
    "StorageUnavailableError: the postgres database at postgresql://app:***@db/app is "
    "unavailable": "needs a server that is down: plugins' failover tests",
    "ConfigurationError: … OPENAI_API_KEY …": "the openai SDK's own wording",
    "StorageLoginError: the postgres server at": "needs a server refusing a login: "
    "tests/test_error_messages.py checks it on Postgres and Redis",
}


def quotes() -> list[str]:
    return ROW.findall(DOC.read_text())


def caught(fn: Callable[[], object]) -> str:
    """``Class: message`` of what ``fn`` raises (or warns)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            fn()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
    if seen:
        return f"{seen[0].category.__name__}: {seen[0].message}"
    raise AssertionError(f"{fn} raised nothing")


def in_child(code: str, **env: str) -> str:
    """The last line of a child's stderr, its module prefix (``kern.errors.``) removed."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "KERN_"))}
    done = subprocess.run(
        [sys.executable, "-c", code], env=clean | env, capture_output=True, text=True, timeout=60
    )
    lines = [line for line in done.stderr.splitlines() if "Warning:" in line] or [
        done.stderr.strip().splitlines()[-1]
    ]
    line = lines[0]
    return re.sub(r"^.*?(\w+(?:Error|Warning): )", r"\1", line)


def producers(tmp_path: Path) -> dict[str, Callable[[], str]]:
    from kern.agent import Agent
    from kern.db.sqlite import AsyncSqliteDb, SqliteDb
    from kern.models.openai import OpenAIChat
    from kern.records import Session

    db = SqliteDb(db_file=str(tmp_path / "t.db"))

    def version_conflict() -> None:
        db.upsert_session(Session(session_id="s", user_id="u"), expected_version=None)
        for _ in range(4):
            current = db.get_session("s")
            assert current is not None
            db.upsert_session(current, expected_version=current.version)
        db.upsert_session(Session(session_id="s", user_id="u"), expected_version=4)

    model = OpenAIChat(id="m", base_url="http://127.0.0.1:9/v1", api_key="x")

    def unserializable() -> None:
        Agent(db=db, model=model, session_state={"tags": {1}}).run("hi", session_id="u1")

    def model_down() -> None:
        Agent(model=OpenAIChat(id="m", base_url="http://127.0.0.1:9/v1", api_key="x")).run("hi")

    def owned() -> None:
        agent = Agent(db=db, model=OpenAIChat(id="m", base_url="http://127.0.0.1:9/v1"))
        db.upsert_session(Session(session_id="s", user_id="ada"), expected_version=None)
        agent.run("hi", session_id="s", user_id="bob")

    import kern.db

    return {
        "SyncAsyncMismatchError: agent.run() was called on an agent with an async database": (
            lambda: caught(lambda: Agent(db=AsyncSqliteDb(db_file=str(tmp_path / "a.db"))).run("x"))
        ),
        "ConfigurationError: URL scheme 'postgresql' needs the kern-postgres plugin, which is "
        "installed but disabled by KERN_DISABLE_PLUGINS=…": lambda: in_child(
            "import kern.db; kern.db.connect('postgresql://a@h/d')",
            KERN_DISABLE_PLUGINS="postgres",
        ),
        "PluginSettingsWarning: KERN_LOAD_PLUGINS names 'x', which is not an installed kern "
        "plugin; installed: …": lambda: in_child(
            "import kern.db; kern.db.connect('sqlite:///x.db')", KERN_LOAD_PLUGINS="x"
        ),
        "ConfigurationError: no installed kern backend handles URL scheme 'x'": lambda: caught(
            lambda: kern.db.connect("x://y")
        ),
        "ConfigurationError: no database configured": lambda: caught(lambda: kern.db.connect(None)),
        "VersionConflictError: session 's' is at version 5, not 4: another writer changed it": (
            lambda: caught(version_conflict)
        ),
        "UnserializableError: session_state['tags'] cannot be stored as JSON": lambda: caught(
            unserializable
        ),
        "InvalidIdError: list_memories(): user_id must be a non-empty string (None is not an id "
        "here)": lambda: caught(lambda: db.list_memories(None)),  # type: ignore[arg-type]
        "SessionOwnershipError: session 's' belongs to another user": lambda: caught(owned),
        "InvalidTextError: … contains a NUL character": lambda: caught(
            lambda: Agent(db=db, model=model).run("a\x00b", session_id="n")
        ),
        "SessionNotFoundError: no session 'x' is stored": lambda: caught(
            lambda: Agent(db=db, model=model).get_chat_history("x")
        ),
        "ModelProviderError: could not connect to the model server at …": lambda: caught(
            model_down
        ),
    }


def matches(quote: str, real: str) -> bool:
    pattern = ".*?".join(re.escape(part) for part in quote.split("…"))
    return re.match(pattern, real, flags=re.S) is not None


@pytest.mark.parametrize("quote", quotes())
def test_each_quoted_message_is_the_real_one(quote, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no kern.toml of the repository is found
    for variable in [v for v in os.environ if v.startswith("KERN_")]:
        monkeypatch.delenv(variable)
    produce = producers(tmp_path).get(quote)
    if produce is None:
        assert any(quote.startswith(key) for key in UNCHECKED), (
            f"troubleshooting.md quotes {quote!r} but nothing checks it: add a producer to "
            "tests/test_troubleshooting_doc.py"
        )
        pytest.skip(
            f"not produced here: {UNCHECKED[next(k for k in UNCHECKED if quote.startswith(k))]}"
        )
    real = produce()
    assert matches(quote, real), f"the doc quotes\n  {quote}\nbut kern says\n  {real}"
