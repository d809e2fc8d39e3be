"""The runnable examples in docs/ run as written, against the scripted model server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
RUNNABLE_PAGES = ["teams-and-workflows.md", "storage.md"]


def examples() -> list[tuple[str, str]]:
    found = []
    for page in RUNNABLE_PAGES:
        blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)
        found += [(f"{page}#{n}", code) for n, code in enumerate(blocks, start=1)]
    return found


@pytest.mark.parametrize(("where", "code"), examples(), ids=[w for w, _ in examples()])
def test_docs_example_runs(where, code, scripted, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "KERN_"))}
    env |= {"OPENAI_BASE_URL": scripted.base_url, "OPENAI_API_KEY": "docs"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, f"{where} failed:\n{result.stderr}"
