"""A small SQLite database seeded through kern's API, and a runner for the ``kern`` command.

The commands run as subprocesses (``python -m kern.cli``), as a person or a script runs
them: exit codes, stdout and stderr are what is asserted on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from kern.db.sqlite import SqliteDb
from kern.learn.background import MARKER_COMPONENT, marker_id
from kern.records import (
    Learning,
    LearningStatus,
    Memory,
    Message,
    Run,
    Session,
    SessionType,
    ToolCall,
    utcnow,
)

#: Stored text that rich would read as markup if a table did not show it as written.
MARKUP = "[bold]x[/bold] <script>alert(1)</script>"


@dataclass
class Seeded:
    """The seeded database and the ids a test asserts on."""

    #: The memory holding markup, as stored.
    markup = MARKUP

    path: Path
    url: str
    ids: dict[str, str]

    def open(self) -> SqliteDb:
        return SqliteDb(db_file=self.path)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


Kern = Callable[..., Result]


def run_kern(
    *args: str | bytes,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: Any = subprocess.DEVNULL,
) -> Result:
    """``kern ARGS`` in a subprocess: no database configured but what ``args``/``env`` say."""
    environment = {k: v for k, v in os.environ.items() if k not in ("KERN_DB_URL", "KERN_DEBUG")}
    environment.update({"COLUMNS": "200", **(env or {})})
    done = subprocess.run(
        [sys.executable, "-m", "kern.cli", *args],
        capture_output=True,
        cwd=cwd,
        env=environment,
        stdin=stdin,
        timeout=60,
    )
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


def seed(path: Path) -> Seeded:
    """Two users. Ada: an agent session with tool calls, a team session (member runs under
    their leader), a workflow session (steps after the workflow run), a background-learning
    marker; memories (one old, two duplicates, one with markup); a profile, proposals of a
    memory and of an entity, an active and a rejected learning. Bob: one session, one memory."""
    db = SqliteDb(db_file=path)
    ids: dict[str, str] = {}
    now = utcnow()
    try:
        db.upsert_session(
            Session(
                session_id="s-agent",
                component_id="helper",
                user_id="ada",
                name="Trip planning",
                state={"city": "Lisbon", "nights": 3},
                summary="Ada plans a trip to Lisbon.",
                metadata={"channel": "web"},
            ),
            expected_version=None,
        )
        for turn in range(1, 4):
            messages = [Message(role="user", content=f"question {turn}")]
            if turn == 2:
                messages += [
                    Message(
                        role="assistant",
                        tool_calls=[
                            ToolCall(id="c1", name="weather", arguments='{"city": "Lisbon"}')
                        ],
                    ),
                    Message(role="tool", tool_call_id="c1", name="weather", content="sunny"),
                ]
            messages.append(Message(role="assistant", content=f"answer {turn}"))
            db.append_run(
                Run(
                    session_id="s-agent",
                    component_id="helper",
                    user_id="ada",
                    input=f"question {turn}",
                    messages=messages,
                    output=f"answer {turn}",
                )
            )

        db.upsert_session(
            Session(
                session_id="s-team",
                session_type=SessionType.TEAM,
                component_id="crew",
                user_id="ada",
            ),
            expected_version=None,
        )
        for turn in range(1, 3):
            leader = Run(
                session_id="s-team", component_id="crew", user_id="ada", input=f"team task {turn}"
            )
            ids[f"leader{turn}"] = leader.run_id
            for member in ("flights", "hotels"):
                run = Run(
                    session_id="s-team",
                    parent_run_id=leader.run_id,
                    component_id=member,
                    user_id="ada",
                    input=f"{member} for task {turn}",
                    messages=[
                        Message(role="user", content=f"{member} for task {turn}"),
                        Message(role="assistant", content=f"{member} found for task {turn}"),
                    ],
                    output=f"{member} found for task {turn}",
                )
                ids[f"{member}{turn}"] = db.append_run(run).run_id
            leader.messages = [
                Message(role="user", content=f"team task {turn}"),
                Message(role="assistant", content=f"team answer {turn}"),
            ]
            leader.output = f"team answer {turn}"
            db.append_run(leader)

        db.upsert_session(
            Session(
                session_id="s-flow",
                session_type=SessionType.WORKFLOW,
                component_id="pipeline",
                user_id="ada",
            ),
            expected_version=None,
        )
        flow = db.append_run(
            Run(session_id="s-flow", component_id="pipeline", user_id="ada", input="go")
        )
        for step in ("fetch", "summarise"):
            db.append_run(
                Run(
                    session_id="s-flow",
                    parent_run_id=flow.run_id,
                    component_id=step,
                    user_id="ada",
                    input="go",
                    output=f"{step} done",
                    metrics={"workflow_step": 0},
                )
            )
        ids["flow"] = flow.run_id

        marker = marker_id("r-pending")
        db.upsert_session(
            Session(
                session_id=marker,
                component_id=MARKER_COMPONENT,
                user_id="ada",
                name="pending learning",
            ),
            expected_version=None,
        )
        ids["marker"] = marker

        db.upsert_session(
            Session(session_id="s-bob", component_id="helper", user_id="bob"), expected_version=None
        )
        db.append_run(Run(session_id="s-bob", component_id="helper", user_id="bob", input="hi"))

        old = now - timedelta(days=400)
        memories = {
            "old": Memory(
                user_id="ada", content="Ada lived in Paris", created_at=old, updated_at=old
            ),
            "seat": Memory(
                user_id="ada", content="Ada prefers window seats on flights", topics=["travel"]
            ),
            "tea1": Memory(user_id="ada", content="Ada likes green tea"),
            "tea2": Memory(user_id="ada", content="ada likes green TEA!"),
            "markup": Memory(user_id="ada", content=MARKUP),
            "bob": Memory(user_id="bob", content="Bob plays chess"),
        }
        for name, memory in memories.items():
            ids[f"memory_{name}"] = db.upsert_memory(memory).memory_id

        learnings = {
            "profile": Learning(
                kind="user_profile",
                namespace="user",
                user_id="ada",
                content={
                    "name": "Ada Lovelace",
                    "preferred_name": "Ada",
                    "preferences": ["window seats", "green tea"],
                },
            ),
            "proposed_memory": Learning(
                kind="user_memory",
                namespace="user",
                user_id="ada",
                content={
                    "content": "Ada is allergic to peanuts",
                    "topics": ["health"],
                    "agent_id": None,
                },
                status=LearningStatus.PROPOSED,
            ),
            "proposed_entity": Learning(
                kind="entity_memory",
                namespace="user",
                user_id="ada",
                entity_id="acme",
                content={"name": "Acme", "facts": ["Ada works there"]},
                status=LearningStatus.PROPOSED,
            ),
            "insight": Learning(
                kind="learned_knowledge",
                content={"title": "Trains", "learning": "Night trains are popular"},
            ),
            "rejected": Learning(
                kind="learned_knowledge",
                user_id="ada",
                content={"title": "Wrong", "learning": "Ada hates travel"},
                status=LearningStatus.REJECTED,
            ),
            "bob": Learning(
                kind="user_memory",
                namespace="user",
                user_id="bob",
                content={"content": "Bob likes tea", "topics": [], "agent_id": None},
                status=LearningStatus.PROPOSED,
            ),
        }
        for name, learning in learnings.items():
            ids[f"learning_{name}"] = db.upsert_learning(learning).learning_id
        db.upsert_learning(
            Learning(
                learning_id="kern-embedder",
                kind="kern_embedder",
                namespace="kern",
                content={"id": "test", "dimensions": 3},
            )
        )
    finally:
        db.close()
    return Seeded(path, f"sqlite:///{path}", ids)


@pytest.fixture
def seeded(tmp_path: Path) -> Seeded:
    return seed(tmp_path / "k.db")


@pytest.fixture
def kern(seeded: Seeded) -> Kern:
    """``kern(*args)`` against the seeded database (``--db`` added after the command)."""

    def call(*args: str | bytes, **options: Any) -> Result:
        command, *rest = args
        return run_kern(command, "--db", seeded.url, *rest, **options)

    return call


@pytest.fixture
def kern_cli() -> Callable[..., Result]:
    """``kern_cli(*args, cwd=..., env=...)``: the command with only what the test passes."""
    return run_kern
