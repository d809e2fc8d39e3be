"""The MongoDB server these tests run against, and fresh databases on it.

The server, in order: ``KERN_TEST_MONGO_URL``; else one already listening on
127.0.0.1:27017; else a throwaway ``nx-27017`` (the wire-compatible server that stands in for
MongoDB, pinned 0.8.1) started for this test session from its own virtualenv,
``.kern-test/nx-27017`` (created and installed if missing; ``KERN_TEST_NX_VENV`` moves it).
Under ``CI=true`` no server is a failure; elsewhere the tests skip, saying how to install.

Isolation: every test gets a database of its own (``kern_test_<session>_<n>``). On a server
this session did not start, the collections also get a prefix of their own and are dropped
by name at the end, so nothing outside this session is touched, even on a server that keeps
every database in one file.
"""

from __future__ import annotations

import itertools
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from kern.db.base import TABLES

# The helpers beside this file (nx_server: the server and its venv; mongo_probes: the
# command counter) are imported by name by the test modules too. The importlib import mode
# (root pyproject) puts no test folder on sys.path, so this conftest, loaded first, does.
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from mongo_probes import shared_counter  # noqa: E402
from nx_server import (  # noqa: E402
    INSTALL_HINT,
    Server,
    ServerUnavailable,
    ensure_nx,
    use_test_server,
)

shared_counter()  # before any client exists: pymongo gives listeners to new clients only

REPO = Path(__file__).resolve().parents[3]
NX_VENV = Path(os.environ.get("KERN_TEST_NX_VENV", REPO / ".kern-test" / "nx-27017"))
SESSION = uuid.uuid4().hex[:8]


class MongoTarget:
    """The session's server, and fresh databases on it."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.prefix = "kern_" if server.owned else f"kern_t{SESSION}_"
        self._numbers = itertools.count(1)
        self.databases: list[str] = []
        self.client: MongoClient[Any] = MongoClient(server.url)

    def new_database(self) -> str:
        name = f"kern_test_{SESSION}_{next(self._numbers)}"
        self.databases.append(name)
        return name

    def url(self, database: str) -> str:
        return self.server.database_url(database)

    def cleanup(self) -> None:
        if not self.server.owned:  # our own server's data folder is simply deleted
            for database in self.databases:
                for table in TABLES:
                    self.client[database].drop_collection(f"{self.prefix}{table}")
        self.client.close()


@pytest.fixture(scope="session")
def mongo() -> Iterator[MongoTarget]:
    try:
        with use_test_server(NX_VENV) as server:
            target = MongoTarget(server)
            try:
                yield target
            finally:
                target.cleanup()
    except ServerUnavailable as exc:
        message = (
            f"no MongoDB-compatible server for the kern-mongo tests: {exc}. Set "
            f"KERN_TEST_MONGO_URL=mongodb://host:port/, or install nx-27017 in its own "
            f"venv: {INSTALL_HINT}"
        )
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def nx_executable() -> Path:
    """The nx-27017 executable, for tests that start, stop and restart a server of their
    own (``nx_server.NxServer``); installed in its venv if missing."""
    try:
        return ensure_nx(NX_VENV)
    except (ServerUnavailable, OSError) as exc:
        _unavailable(f"no nx-27017 for the tests that stop a server: {exc}. {INSTALL_HINT}")
        raise


@pytest.fixture
def mongo_url(mongo: MongoTarget) -> str:
    """A URL naming a database nobody has used yet."""
    return mongo.url(mongo.new_database())


@pytest.fixture
def mongo_kwargs(mongo: MongoTarget, mongo_url: str) -> dict[str, str]:
    """Constructor arguments of a db on a fresh database (with this session's prefix)."""
    return {"db_url": mongo_url, "collection_prefix": mongo.prefix}
