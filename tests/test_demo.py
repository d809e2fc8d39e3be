"""The README's demo command: two turns, two processes, one SQLite file, scripted model."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from kern.db.sqlite import SqliteDb


def test_demo_remembers_across_processes_with_the_labelled_scripted_model(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "KERN_"))}
    env["COLUMNS"] = "200"
    result = subprocess.run(
        [sys.executable, "-m", "kern.cli", "demo", "--session-id", "demo-test"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "LOCAL SCRIPTED MODEL" in out
    pids = re.findall(r"process (\d+)", out)
    assert len(set(pids)) == 2, "each turn runs in its own process"
    # Turn 2's answer quotes turn 1, which only the database could have supplied.
    second_turn = out.split("turn 2")[1]
    assert "local-first web app" in second_turn

    runs = SqliteDb(db_file=tmp_path / "tmp" / "kern-demo.db").get_last_runs("demo-test", 10)
    assert [run.seq for run in runs] == [1, 2]
