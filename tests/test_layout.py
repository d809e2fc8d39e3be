"""The namespace layout (docs/architecture.md, "Packages"): kern-core owns
``kern/__init__.py`` and ``kern/db/__init__.py``; every plugin adds only its
``kern/db/<name>/``, and every backend imports both from the editable workspace and from
built wheels in a fresh virtualenv."""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p for p in (REPO / "plugins").iterdir() if (p / "pyproject.toml").is_file())
CORE_FILES = ("kern/__init__.py", "kern/db/__init__.py")


def entry_points(plugin: Path) -> dict[str, str]:
    project = tomllib.loads((plugin / "pyproject.toml").read_text())["project"]
    return project.get("entry-points", {}).get("kern", {})


BACKEND_MODULES = sorted(
    module.split(":")[0].removesuffix("._plugin")
    for plugin in PLUGINS
    for module in entry_points(plugin).values()
)


def test_there_are_backends_to_check():
    assert "kern.db.sqlite" in BACKEND_MODULES


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_no_plugin_source_tree_ships_the_core_files(plugin):
    for path in CORE_FILES:
        assert not (plugin / "src" / path).exists(), f"{plugin.name} must not ship {path}"


@pytest.mark.parametrize("module", BACKEND_MODULES)
def test_every_backend_imports_in_the_workspace(module):
    imported = importlib.import_module(module)
    assert imported.__file__.startswith(str(REPO / "plugins"))


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> list[Path]:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is needed to build the wheels: pip install uv")
    out = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [uv, "build", "--all-packages", "--wheel", "--out-dir", str(out), "--quiet"],
        cwd=REPO,
        check=True,
    )
    return sorted(out.glob("*.whl"))


def test_only_kern_core_wheel_ships_the_core_files(wheels):
    owners: dict[str, list[str]] = {path: [] for path in CORE_FILES}
    for wheel in wheels:
        names = set(zipfile.ZipFile(wheel).namelist())
        for path in CORE_FILES:
            if path in names:
                owners[path].append(wheel.name.split("-")[0])
    assert owners == {path: ["kern_core"] for path in CORE_FILES}


def test_every_backend_imports_from_wheels_in_a_fresh_venv(wheels, tmp_path):
    uv = shutil.which("uv")
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(python), *map(str, wheels)],
        check=True,
    )
    code = (
        "import importlib, kern, kern.db\n"
        f"for name in {BACKEND_MODULES!r}:\n"
        "    module = importlib.import_module(name)\n"
        "    assert 'site-packages' in module.__file__, module.__file__\n"
        "db = kern.db.connect('sqlite:///:memory:')\n"
        "print(kern.__version__, type(db).__name__)\n"
    )
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0.1.0", "SqliteDb"]


def _venv_with(wheels: list[Path], tmp_path: Path, *requirements: str) -> Path:
    uv = shutil.which("uv")
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(python), *requirements], check=True
    )
    return python


def _wheel(wheels: list[Path], dist: str) -> str:
    return str(next(w for w in wheels if w.name.startswith(f"{dist}-")))


def test_plain_install_names_the_extra_for_other_schemes(wheels, tmp_path):
    plain = [_wheel(wheels, d) for d in ("kern_memory", "kern_core", "kern_sql", "kern_sqlite")]
    python = _venv_with(wheels, tmp_path, *plain)
    code = (
        "import kern.db\n"
        "from kern.errors import BackendNotInstalledError\n"
        "for url in ('postgresql://u@localhost/app', 'duckdb:///x.duckdb'):\n"
        "    try:\n"
        "        kern.db.connect(url)\n"
        "    except BackendNotInstalledError as exc:\n"
        "        print(exc)\n"
    )
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "pip install 'kern-memory[postgres]'" in result.stdout
    assert "pip install 'kern-memory[duckdb]'" in result.stdout


def test_extras_install_and_connect(wheels, tmp_path):
    from urllib.parse import urlsplit

    pg_url = os.environ.get("KERN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    host = urlsplit(pg_url)
    try:
        socket.create_connection((host.hostname, host.port or 5432), timeout=2).close()
    except OSError:
        message = f"no Postgres at {pg_url}: set KERN_TEST_POSTGRES_URL"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    root = _wheel(wheels, "kern_memory")
    needed = [_wheel(wheels, d) for d in ("kern_core", "kern_sql", "kern_sqlite")]
    needed += [_wheel(wheels, d) for d in ("kern_postgres", "kern_duckdb")]
    python = _venv_with(wheels, tmp_path, f"{root}[postgres,duckdb]", *needed)
    schema = f"kern_wheel_{os.getpid()}"
    code = (
        "import sys, kern.db\n"
        "from sqlalchemy import text\n"
        "pg = kern.db.connect(sys.argv[1], schema=sys.argv[2])\n"
        "print(type(pg).__name__, pg.list_sessions())\n"
        "with pg.engine.begin() as conn:\n"
        "    conn.execute(text(f'DROP SCHEMA {sys.argv[2]} CASCADE'))\n"
        "pg.close()\n"
        "duck = kern.db.connect('duckdb:///' + sys.argv[3])\n"
        "print(type(duck).__name__, duck.list_sessions())\n"
        "duck.close()\n"
    )
    duck_file = str(tmp_path / "kern.duckdb")
    result = subprocess.run(
        [str(python), "-c", code, pg_url, schema, duck_file], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["PostgresDb []", "DuckDb []"]
