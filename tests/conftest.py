"""Fixtures of kern-core's own tests: a model on the scripted server, databases on every backend.

Databases on every backend, for the tests that move data between them (tests/transfer) or
serve any of them (tests/console): the servers come from each plugin's own test helpers,
loaded by path (a plugin's test folder is not a package): Postgres (a database of this
session's own on the server its tests find or start), MongoDB (nx-27017 or a server on
27017, a fresh database per test), Redis (a throwaway ``redis-server`` of this session's
own, so that kern can use its default key prefix on a keyspace nobody else writes to), and
files for SQLite and DuckDB. A server starts only when a test asks for it; under
``CI=true`` one that cannot be had fails the tests, as in the plugins' suites.

``scripted_server`` and ``scripted`` come from kern's pytest plugin
(``kern.testing.pytest_plugin``), as they do for every backend plugin's tests.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

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


PLUGINS = REPO / "plugins"


def _load(name: str, path: Path) -> ModuleType:
    """A helper module of a plugin's tests, by file path (``import_module`` cannot reach it)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    helpers = _load("kern_transfer_pg", PLUGINS / "kern-postgres/tests/conftest.py")
    yield from helpers.find_server()


@pytest.fixture
def postgres_url(postgres_server: Any) -> Iterator[str]:
    """A Postgres database nobody has used yet, dropped after the test."""
    helpers = sys.modules["kern_transfer_pg"]
    for database in helpers.session_database(postgres_server):
        yield database.url


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[Any]:
    nx = _load("kern_transfer_nx", PLUGINS / "kern-mongo/tests/nx_server.py")
    venv = REPO / ".kern-test" / "nx-27017"
    try:
        with nx.use_test_server(venv) as server:
            yield server
    except nx.ServerUnavailable as exc:
        _unavailable(f"no MongoDB-compatible server: {exc}. {nx.INSTALL_HINT}")


@pytest.fixture
def mongo_url(mongo_server: Any) -> Iterator[str]:
    """A Mongo database nobody has used yet, dropped after the test."""
    from pymongo import MongoClient

    name = f"kern_transfer_{uuid.uuid4().hex[:10]}"
    yield mongo_server.database_url(name)
    with MongoClient(mongo_server.database_url(name)) as client:
        client.drop_database(name)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    helpers = _load("kern_transfer_redis", PLUGINS / "kern-redis/tests/conftest.py")
    if shutil.which("redis-server") is None:
        _unavailable(f"no redis-server to start: {helpers.INSTALL}")
    server = helpers.RedisServer(tmp_path_factory.mktemp("redis"), helpers.free_port())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: Any) -> Iterator[str]:
    """Database 0 of this session's own Redis server, emptied after the test."""
    import redis

    yield redis_server.url
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()


@pytest.fixture
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """``url(backend)``: a fresh, empty database of that backend."""

    def url(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'{uuid.uuid4().hex[:8]}.db'}"
        if backend == "duckdb":
            return f"duckdb:///{tmp_path / f'{uuid.uuid4().hex[:8]}.duckdb'}"
        return str(request.getfixturevalue(f"{backend}_url"))

    return url


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
