"""The product docs in ../shared/seeds must run as written (only base_url/api_key may change).

Each seed numbers its code lines (``1from kern.agent import Agent``); the snippets are cut
out by those numbers, pointed at the scripted server, and run as real processes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"


def snippets(text: str) -> list[str]:
    """Runs of lines numbered 1, 2, 3… with their numbers removed."""
    found: list[list[str]] = []
    expected = 1
    for line in text.splitlines():
        if line.startswith(str(expected)) and (expected > 1 or line.startswith("1")):
            if expected == 1:
                found.append([])
            found[-1].append(line[len(str(expected)) :])
            expected += 1
        elif line.startswith("1") and re.match(r"1(from|import)\b", line):
            found.append([line[1:]])
            expected = 2
        else:
            expected = 1
    return ["\n".join(lines) for lines in found]


def seed(name: str) -> str:
    path = SEEDS / name
    if not path.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing: CI must have shared/ beside the checkout")
        pytest.skip(f"{path} is not beside this checkout")
    return path.read_text()


def sqlite_quickstart() -> str:
    code = next(s for s in snippets(seed("persistent-memory-databases.txt")) if "SqliteDb" in s)
    assert 'base_url="http://localhost:11434/v1"' in code
    return code


def test_the_numbered_snippets_are_cut_out_whole():
    code = sqlite_quickstart()
    compile(code, "quickstart.py", "exec")
    assert code.count("print_response(") == 2


def run_script(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "KERN_"))}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True
    )


def readme_quickstart() -> str:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    return next(block for block in blocks if "SqliteDb(db_file=" in block)


@pytest.mark.parametrize("source", [sqlite_quickstart, readme_quickstart], ids=["seed", "readme"])
def test_sqlite_quickstart_remembers_across_two_processes(source, scripted, tmp_path):
    code = source().replace("http://localhost:11434/v1", scripted.base_url)
    first = run_script(code, tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "tmp" / "agent_storage.db").is_file()
    second = run_script(code, tmp_path)
    assert second.returncode == 0, second.stderr

    bodies = [r.body for r in scripted.requests if r.path.endswith("/chat/completions")]
    assert [b["model"] for b in bodies] == ["llama3.2:3b"] * 4
    said = [[m["content"] for m in b["messages"] if m["role"] == "user"] for b in bodies]
    first_turn = "I am working on building a local-first web app."
    second_turn = "What python web framework fits this best?"
    # In the first process, the second request carries the first turn.
    assert said[1] == [first_turn, second_turn]
    # The second process starts empty: its first request carries the first process's turns,
    # read from the SQLite file (the last 3 runs: num_history_runs=3).
    assert said[2] == [first_turn, second_turn, first_turn]
    assert said[3] == [first_turn, second_turn, first_turn, second_turn]
    assert first_turn in second.stdout  # print_response showed the exchange
    json.dumps(bodies)  # what was sent is plain JSON
