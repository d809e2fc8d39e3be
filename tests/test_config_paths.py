"""A relative SQLite/DuckDB path in kern.toml or [tool.kern] means "next to that file"."""

from __future__ import annotations

import pytest

from kern.db.config_paths import resolve_from
from kern.db.registry import configured_url


@pytest.mark.parametrize("name", ["kern.toml", "pyproject.toml"])
def test_a_relative_path_in_a_parent_folders_file_is_resolved_from_that_folder(
    name, tmp_path, monkeypatch
):
    monkeypatch.delenv("KERN_DB_URL", raising=False)
    table = "[tool.kern]\n" if name == "pyproject.toml" else ""
    (tmp_path / name).write_text(f'{table}db_url = "sqlite:///data/agents.db"\n')
    below = tmp_path / "src" / "app"
    below.mkdir(parents=True)
    assert configured_url(below) == f"sqlite:///{tmp_path.resolve()}/data/agents.db"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////tmp/a.db",
        "sqlite:///:memory:",
        "sqlite://",
        "postgresql://u@h/db",
        "duckdb:///:memory:",
    ],
)
def test_absolute_memory_and_server_urls_are_unchanged(url, tmp_path):
    assert resolve_from(url, tmp_path) == url


def test_the_query_and_driver_are_kept(tmp_path):
    resolved = resolve_from("sqlite+aiosqlite:///a.db?timeout=5", tmp_path)
    assert resolved == f"sqlite+aiosqlite:///{tmp_path.resolve()}/a.db?timeout=5"


def test_kern_db_url_keeps_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("KERN_DB_URL", "sqlite:///a.db")
    assert configured_url(tmp_path) == "sqlite:///a.db"
