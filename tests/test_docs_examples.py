"""Every fenced ``python`` block of README.md and docs/ runs as pasted, so a stale example fails.

Blocks are found by globbing (README.md, docs/**/*.md): a page or block added later is run
without touching this file. The conventions a block's author uses, in an HTML comment on the
line right above the fence, are documented in docs/contributing-docs.md:

- ``<!-- fragment -->``: part of a larger program (a plugin's module, a server that is not
  here): compiled (top-level ``await`` allowed) but not run.
- ``<!-- needs: postgres -->`` (or ``mongo``, ``redis``, several comma-separated): every quoted
  URL of that backend in the block is replaced by a fresh database on the test session's
  server (tests/conftest.py ``backend_url``), keeping the block's driver scheme.

Every other block runs alone in a new Python process, in an empty working directory, with
``OPENAI_BASE_URL`` and the README's local model URL (``http://localhost:11434/v1``) pointing
at kern's scripted model server: only the model's address changes, as DESIGN.md allows.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCAL_MODEL_URL = "http://localhost:11434/v1"
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```", flags=re.S | re.M)
MARKER = re.compile(r"^<!--\s*(.*?)\s*-->$")
#: The quoted URLs a ``needs:`` marker replaces, per backend: group 1 is the scheme kept.
URLS = {
    "postgres": re.compile(r"""(?<=["'])(postgresql(?:\+\w+)?)://[^"']*(?=["'])"""),
    "mongo": re.compile(r"""(?<=["'])(mongodb)://[^"']*(?=["'])"""),
    "redis": re.compile(r"""(?<=["'])(rediss?)://[^"']*(?=["'])"""),
}


@dataclass(frozen=True)
class Block:
    """One fenced python block: where it is, its code, and what its marker asks for."""

    where: str  # "docs/storage.md:50", the fence's line
    code: str
    fragment: bool
    needs: tuple[str, ...]


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def parse_marker(text: str, where: str) -> tuple[bool, tuple[str, ...]]:
    """(fragment, needs) from the comment above a fence; an unknown marker is an error."""
    if text == "fragment":
        return True, ()
    if text.startswith("needs:"):
        needs = tuple(name.strip() for name in text.removeprefix("needs:").split(","))
        unknown = [name for name in needs if name not in URLS]
        if unknown:
            raise ValueError(f"{where}: unknown server {unknown} in <!-- {text} -->: {list(URLS)}")
        return False, needs
    raise ValueError(f"{where}: unknown marker <!-- {text} -->: fragment or needs: {list(URLS)}")


def blocks_of(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        where = f"{page.relative_to(REPO)}:{line}"
        above = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        marker = MARKER.match(above)
        fragment, needs = parse_marker(marker.group(1), where) if marker else (False, ())
        found.append(Block(where, match.group(1), fragment, needs))
    return found


def all_blocks() -> list[Block]:
    return [block for page in pages() for block in blocks_of(page)]


BLOCKS = all_blocks()
RUNNABLE = [block for block in BLOCKS if not block.fragment]


def test_the_docs_have_python_blocks_and_every_one_is_collected():
    assert len(BLOCKS) >= 30
    assert any(b.where.startswith("README.md") for b in RUNNABLE)


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_docs_block_compiles(block: Block):
    """Fragments may use top-level ``await``; a block that runs may not (it runs as a script)."""
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if block.fragment else 0
    compile(block.code, block.where, "exec", flags=flags, dont_inherit=True)


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.where for b in RUNNABLE])
def test_docs_block_runs(
    block: Block, scripted, backend_url: Callable[[str], str], tmp_path: Path
) -> None:
    code = block.code.replace(LOCAL_MODEL_URL, scripted.base_url)
    for backend in block.needs:
        fresh = backend_url(backend).split("://", 1)[1]
        code = URLS[backend].sub(lambda m, rest=fresh: f"{m.group(1)}://{rest}", code)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "KERN_"))}
    env |= {"OPENAI_BASE_URL": scripted.base_url, "OPENAI_API_KEY": "docs"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{block.where} failed:\n{result.stdout}\n{result.stderr}"


def test_an_unknown_marker_is_refused():
    with pytest.raises(ValueError, match="unknown marker"):
        parse_marker("fragmnet", "x.md:1")
    with pytest.raises(ValueError, match="unknown server"):
        parse_marker("needs: mysql", "x.md:1")
    assert parse_marker("needs: postgres, redis", "x.md:1") == (False, ("postgres", "redis"))
