"""Fixtures shared by kern-core's tests: a scripted model server and SQLite databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kern.testing.scripted_server import ScriptedServer

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO.parent / "shared" / "seeds"


@pytest.fixture(scope="session")
def scripted_server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def scripted(scripted_server: ScriptedServer) -> Iterator[ScriptedServer]:
    """The scripted server with no requests recorded and nothing queued."""
    scripted_server.clear()
    yield scripted_server
    scripted_server.clear()


@pytest.fixture
def model(scripted: ScriptedServer):
    from kern.models.openai import OpenAIChat

    return OpenAIChat(id="scripted", base_url=scripted.base_url, api_key="test")


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "kern.db"
