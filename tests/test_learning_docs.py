"""docs/learning.md's Python blocks run as written, against the scripted model server.

They are run in one child process (each block in fresh globals, in order, in an empty
working directory), with ``OPENAI_BASE_URL`` pointing at the scripted server as a reader
would point it at their provider.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "learning.md"

RUNNER = """
import json, sys, traceback
blocks = json.loads(sys.stdin.read())
for number, code in enumerate(blocks, 1):
    try:
        exec(compile(code, f"docs/learning.md block {number}", "exec"), {"__name__": "__main__"})
    except BaseException:
        traceback.print_exc()
        sys.exit(f"block {number} failed")
    print(f"-- block {number} ok", flush=True)
"""


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_every_python_block_compiles():
    found = blocks()
    assert len(found) >= 6
    for number, code in enumerate(found, 1):
        compile(code, f"block {number}", "exec")


def test_every_python_block_runs(scripted, tmp_path):
    found = blocks()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "KERN_"))}
    env |= {"OPENAI_BASE_URL": scripted.base_url, "OPENAI_API_KEY": "test"}
    done = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps(found),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.count("ok") == len(found)
    assert scripted.responses_requests()  # the examples talked to the (scripted) model
