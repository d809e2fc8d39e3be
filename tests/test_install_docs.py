"""The README's Install section, followed word for word as a user would.

The pip recipe runs in a fresh virtualenv, in a copy of the clone's tracked files, and must
give a working import of every backend; the uv recipe adds the clone by path to a new
project. Both reach the package index for third-party wheels (pluggy, SQLAlchemy, drivers).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
IMPORT_EVERY_BACKEND = (
    "from kern.db.sqlite import SqliteDb\n"
    "from kern.db.postgres import PostgresDb\n"
    "from kern.db.duckdb import DuckDb\n"
    "from kern.db.mongo import MongoDb\n"
    "from kern.db.redis import RedisDb\n"
    "import kern.db\n"
    "db = kern.db.connect('sqlite:///:memory:')\n"
    "print(PostgresDb.__module__, type(db).__name__)\n"
)


def install_section() -> str:
    start = README.index("\n## Install\n")
    return README[start : README.index("\n## ", start + 1)]


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def clone_copy(destination: Path) -> Path:
    """The clone's tracked files as they are in the work tree (what a user's clone holds)."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = REPO / name.decode()
        if source.is_file():
            target = destination / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def run(command: list[str] | str, cwd: Path, env: dict[str, str]) -> str:
    shell = isinstance(command, str)
    result = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        shell=shell,
        executable="/bin/bash" if shell else None,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"{command!r} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_the_install_section_warns_about_the_names_taken_on_the_index():
    section = install_section()
    assert "pip install kern` does not install this one" in section
    assert "kern-memory" in section and "`kern`" in section


def test_the_pip_recipe_installs_every_backend_in_a_fresh_virtualenv(tmp_path):
    pip_block = next(b for b in bash_blocks(install_section()) if "pip install" in b)
    clone = clone_copy(tmp_path / "kern")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {
        key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    run(f"set -euo pipefail\n{pip_block}", cwd=clone, env=env)
    out = run([str(venv / "bin" / "python"), "-c", IMPORT_EVERY_BACKEND], cwd=tmp_path, env=env)
    module, connected = out.split()
    assert module.startswith("kern.db.postgres") and connected == "SqliteDb"
    site = run(
        [str(venv / "bin" / "python"), "-c", "import kern; print(kern.__file__)"],
        cwd=tmp_path,
        env=env,
    )
    assert str(venv) in site, "kern must come from the virtualenv, not the clone"


def test_the_uv_recipe_adds_the_clone_by_path(tmp_path):
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is needed for the README's uv recipe: pip install uv")
    uv_block = next(b for b in bash_blocks(install_section()) if "uv add" in b)
    clone = clone_copy(tmp_path / "kern")
    project = tmp_path / "app"
    project.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env.pop("UV_LOCKED", None)  # a new project has no lock yet
    run([uv, "init", "--quiet", "--bare", "--name", "app"], cwd=project, env=env)
    run(uv_block.replace("/path/to/kern", str(clone)), cwd=project, env=env)
    code = "from kern.db.postgres import PostgresDb; print(PostgresDb.__name__)"
    assert run([uv, "run", "python", "-c", code], cwd=project, env=env).split() == ["PostgresDb"]
