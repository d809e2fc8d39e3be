"""DuckDB is embedded: no server to find or start, the tests always run.

The only thing that can be missing is the driver itself (``duckdb``, ``duckdb_engine``,
``pytz``, installed with the plugin). Then the tests fail under ``CI=true`` and skip
elsewhere, saying how to install it. Each test works in its own files under ``tmp_path``.
"""

from __future__ import annotations

import importlib
import os

import pytest

HOW_TO_INSTALL = "uv sync (in this repository) or pip install 'kern-memory[duckdb]'"


@pytest.fixture(scope="session", autouse=True)
def duckdb_driver() -> None:
    """Fail under CI, skip elsewhere, when the DuckDB driver cannot be imported or run."""
    try:
        for module in ("duckdb", "duckdb_engine", "pytz"):
            importlib.import_module(module)
        import duckdb

        duckdb.connect(":memory:").execute("SELECT 1").fetchall()
    except Exception as exc:
        message = f"DuckDB tests cannot run: {exc!r}. Install the driver: {HOW_TO_INSTALL}."
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
