"""The learning seed's snippets run as written (only the SDK's base URL and key point at
the scripted server, through OPENAI_BASE_URL / OPENAI_API_KEY).

In ``shared/seeds/learning-machines.txt`` the numbered code lines run together on one line
(``1from kern.agent import Agent2from kern.db.sqlite import SqliteDb3...``) and the last
one runs into the prose after it (``9)One line. Your agent...``): the cutter follows the
line numbers in order and ends the last line where the code stops compiling.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from kern.db.sqlite import SqliteDb
from kern.records import Memory, utcnow
from kern.testing.scripted_server import Reply, ToolCallReply, request_messages

SEED = Path(__file__).resolve().parents[2] / "shared" / "seeds" / "learning-machines.txt"
_START = re.compile(r"(?<![0-9A-Za-z_])1(?=from |import |lm = )")


def cut(text: str, start: int) -> str:
    """The snippet whose line 1 starts at ``start``: line n runs up to the next "n+1"."""
    lines: list[str] = []
    position, number = start, 1
    while True:
        marker = str(number)
        assert text.startswith(marker, position)
        position += len(marker)
        following = text.find(str(number + 1), position)
        newline = text.find("\n", position)
        if following == -1 or (newline != -1 and newline < following):
            last = text[position : newline if newline != -1 else len(text)]
            break
        lines.append(text[position:following])
        position, number = following, number + 1
    # The last line runs into prose: keep its longest prefix that compiles.
    for end in range(len(last), -1, -1):
        code = "\n".join([*lines, last[:end]])
        try:
            compile(code, "snippet", "exec")
        except SyntaxError:
            continue
        return code
    raise AssertionError(f"no code at {start}")


def seed_snippets() -> list[str]:
    if not SEED.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SEED} is missing: CI must have shared/ beside the checkout")
        pytest.skip(f"{SEED} is not beside this checkout")
    text = SEED.read_text()
    return [cut(text, match.start()) for match in _START.finditer(text)]


def test_the_snippets_are_cut_out_whole():
    agent_snippet, curator_snippet = seed_snippets()
    assert agent_snippet.splitlines()[0] == "from kern.agent import Agent"
    assert agent_snippet.splitlines()[-1] == ")"
    assert "learning=True," in agent_snippet
    assert 'OpenAIResponses(id="gpt-5.2")' in agent_snippet
    assert curator_snippet.splitlines() == [
        "lm = agent.get_learning_machine()",
        "",
        "# Remove memories older than 90 days",
        'lm.curator.prune(user_id="alice", max_age_days=90)',
        "",
        "# Remove duplicates",
        'lm.curator.deduplicate(user_id="alice")',
    ]


def test_the_seed_snippets_run_and_the_curator_cleans_up(scripted, tmp_path):
    agent_snippet, curator_snippet = seed_snippets()
    # What alice's earlier conversations left, in the file the snippet opens.
    db = SqliteDb(db_file=tmp_path / "tmp" / "agents.db")
    now = utcnow()
    old = db.upsert_memory(
        Memory(
            user_id="alice", content="Alice is moving house.", created_at=now - timedelta(days=120)
        )
    )
    db.upsert_memory(
        Memory(user_id="alice", content="Alice likes teal.", created_at=now - timedelta(days=3))
    )
    copy = db.upsert_memory(
        Memory(user_id="alice", content="alice likes TEAL", created_at=now - timedelta(days=2))
    )
    db.close()

    scripted.script(
        Reply.text("Teal it is."),
        Reply.tool_calls(ToolCallReply("update_user_profile", {"name": "Alice"})),
    )
    turn = 'agent.run("Which colour should I paint my teal door?", user_id="alice")'
    code = "\n".join([agent_snippet, turn, curator_snippet])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "KERN_"))}
    env |= {"OPENAI_BASE_URL": scripted.base_url, "OPENAI_API_KEY": "test"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr

    # The Responses API was used, with what alice's memories hold in the context.
    answer, extraction = scripted.responses_requests()
    assert answer["model"] == extraction["model"] == "gpt-5.2"
    system = [m["content"] for m in request_messages(answer) if m["role"] == "system"]
    assert "Alice likes teal." in system[0] or "alice likes TEAL" in system[0]
    assert [t["name"] for t in extraction["tools"]] == ["update_user_profile", "save_user_memories"]

    db = SqliteDb(db_file=tmp_path / "tmp" / "agents.db")
    left = db.list_memories("alice")
    # prune removed the 120-day-old memory; deduplicate kept the newer of the two copies.
    assert [m.memory_id for m in left] == [copy.memory_id]
    assert old.memory_id not in {m.memory_id for m in left}
    [profile] = db.query_learnings(kind="user_profile", user_id="alice")
    assert profile.content == {"name": "Alice"}
