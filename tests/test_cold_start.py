"""Cold start: importing kern, building the CLI's parser or loading the plugins imports no
driver and not the openai SDK; those come with first use (issue 18).

Each check runs in a fresh interpreter, because this test process has imported everything
already. Timings are not asserted here: benchmarks/cold_start.py measures them
(docs/benchmarks.md#cold-start).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

#: The import line of the issue: an agent on SQLite with an OpenAI model.
IMPORT_LINE = (
    "from kern.agent import Agent; from kern.db.sqlite import SqliteDb; "
    "from kern.models.openai import OpenAIChat"
)

#: Modules that are only imported when a database or a model is used.
DRIVERS = ("sqlalchemy", "psycopg", "pymongo", "redis", "duckdb", "openai")

#: Heavy libraries kern's own modules import on first use too (printing, vector search).
ON_FIRST_USE = ("rich", "numpy")


def loaded_after(code: str, watched: tuple[str, ...] = (*DRIVERS, *ON_FIRST_USE)) -> list[str]:
    """The ``watched`` top-level modules a fresh interpreter has imported after ``code``."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps(sorted(m for m in {list(watched)!r} if m in sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_the_import_line_imports_no_driver_and_not_the_sdk() -> None:
    assert loaded_after(IMPORT_LINE) == []


def test_kern_help_imports_no_driver() -> None:
    code = (
        "import contextlib, io, kern.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    kern.cli.main(['--help'])"
    )
    assert loaded_after(code, (*DRIVERS, "numpy")) == []


def test_loading_every_plugin_imports_no_driver() -> None:
    """The registry needs names and URL schemes only: each plugin registers its classes as
    ``"module:Class"`` strings, so no backend's module is imported to learn them."""
    code = (
        "from kern.plugins import registry\n"
        "reg = registry()\n"
        "assert {'sqlite', 'openai'} <= set(reg.backends) | set(reg.models), reg"
    )
    assert loaded_after(code) == []


def test_kern_sessions_imports_sqlalchemy_only(tmp_path: Path) -> None:
    """``kern sessions`` on SQLite needs SQLAlchemy, and nothing of the other backends,
    the model SDK or numpy."""
    url = f"sqlite:///{tmp_path}/x.db"
    code = (
        "import contextlib, io, kern.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert kern.cli.main(['sessions', '--db', {url!r}, '--json']) == 0"
    )
    assert loaded_after(code, (*DRIVERS, "numpy")) == ["sqlalchemy"]


def test_first_use_imports_what_the_import_line_left_out(tmp_path: Path) -> None:
    """The classes imported without their drivers still work: building a SqliteDb imports
    SQLAlchemy, asking a model for its client imports the SDK."""
    code = (
        f"{IMPORT_LINE}\n"
        f"db = SqliteDb(db_file={str(tmp_path / 'x.db')!r})\n"
        "assert db.get_session('nope') is None\n"
        "OpenAIChat(id='m', base_url='http://127.0.0.1:9/v1').get_client()"
    )
    assert loaded_after(code, ("sqlalchemy", "openai")) == ["openai", "sqlalchemy"]
