"""kern.testing's end-to-end scenarios on SQLite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kern.testing import scenarios
from kern.testing.scripted_server import ScriptedServer


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


def test_team_and_workflow_across_processes(scripted, tmp_path):
    recipe = ("kern.db.sqlite:SqliteDb", {"db_file": str(tmp_path / "kern.db")})
    scenarios.team_and_workflow_across_processes(recipe, scripted)
