"""kern's backend conformance suite against MongoDB, run exactly as a third party would.

Each test gets a database nobody has used (see conftest.py). The read measure is driver
level: a ``pymongo.monitoring.CommandListener`` counts the commands a read sends and the
documents the server returns, plus the keys and documents the server reports examining in
``explain`` for each ``find`` (MongoDB reports them; nx-27017 reports zero).

The raw scan reads every document of every collection of the db's database whose name
starts with its collection prefix, with a plain pymongo client (``mongo.client``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from mongo_probes import examined, shared_counter  # beside conftest.py, which imports it

from kern.testing.conformance import AsyncBackendConformance, BackendConformance, Capabilities

COUNTER = shared_counter()


def read_cost(mongo: Any, database: str, run: Callable[[], None]) -> int:
    with COUNTER.counting(database) as tally:
        run()
    return (
        len(tally.commands)
        + tally.documents_returned
        + examined(mongo.client, database, tally.finds)
    )


class _OnMongo:
    #: Every capability, sync and async: the full contract (kern.testing.capabilities).
    capabilities = Capabilities()

    @pytest.fixture(autouse=True)
    def _target(self, mongo: Any, mongo_kwargs: dict[str, str]) -> None:
        self.mongo = mongo
        self.kwargs = mongo_kwargs

    def raw_scan(self, db: Any) -> list[str]:
        """``<collection>: <document>`` for every document of the db's collections."""
        database = self.mongo.client[db.database_name]
        documents: list[str] = []
        for name in sorted(database.list_collection_names()):
            if name.startswith(db.collection_prefix):
                documents += [f"{name}: {doc!r}" for doc in database[name].find()]
        return documents


class TestMongoConformance(_OnMongo, BackendConformance):
    def db_factory(self, tmp_path: Path) -> tuple[str, dict[str, Any]]:
        return "kern.db.mongo:MongoDb", dict(self.kwargs)

    def count_reads(self, db: Any, fn: Callable[[], Any]) -> int:
        return read_cost(self.mongo, db.database_name, fn)


class TestAsyncMongoConformance(_OnMongo, AsyncBackendConformance):
    def db_factory(self, tmp_path: Path) -> tuple[str, dict[str, Any]]:
        return "kern.db.mongo:AsyncMongoDb", dict(self.kwargs)

    async def count_reads(self, db: Any, fn: Callable[[], Awaitable[Any]]) -> int:
        with COUNTER.counting(db.database_name) as tally:
            await fn()
        return (
            len(tally.commands)
            + tally.documents_returned
            + examined(self.mongo.client, db.database_name, tally.finds)
        )
