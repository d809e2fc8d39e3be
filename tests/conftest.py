"""Fixtures of kern-core's own tests: a model on the scripted server, SQLite databases.

``scripted_server`` and ``scripted`` come from kern's pytest plugin
(``kern.testing.pytest_plugin``), as they do for every backend plugin's tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kern.testing.scripted_server import ScriptedServer

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO.parent / "shared" / "seeds"


@pytest.fixture
def model(scripted: ScriptedServer):
    from kern.models.openai import OpenAIChat

    return OpenAIChat(id="scripted", base_url=scripted.base_url, api_key="test")


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "kern.db"
