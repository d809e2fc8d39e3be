"""The Mongo plans: the contract's exact signatures, and ``recall_memories`` as one plan.

The contract's behaviour is checked by the conformance suite; here, what the plans add:
``MongoPlans`` takes each contract method's arguments as the contract does (``PlannedDb``
passes them by keyword, defaults included), and a recall sends only the reads it needs.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator

import pytest
from mongo_probes import shared_counter  # beside conftest.py, which puts this folder on sys.path

from kern.db.base import BaseDb
from kern.db.mongo import AsyncMongoDb, MongoDb
from kern.db.mongo.plans import MongoPlans
from kern.records import Memory

COUNTER = shared_counter()

CONTRACT = sorted(
    name
    for name, member in vars(BaseDb).items()
    if inspect.isfunction(member) and not name.startswith("_")
)


@pytest.fixture
def db(mongo_kwargs: dict[str, str]) -> Iterator[MongoDb]:
    db = MongoDb(**mongo_kwargs)
    yield db
    db.close()


@pytest.mark.parametrize("name", [name for name in CONTRACT if name != "close"])
def test_each_plan_takes_the_contract_methods_arguments(name: str) -> None:
    """(``create_tables`` and ``close`` are the lifecycle, written by each class;
    ``apply_retention`` is written once, in the core, over the ``retention_batch`` plan.)"""
    if name in ("create_tables", "apply_retention"):
        assert not hasattr(MongoPlans, name)
        return
    contract = inspect.signature(getattr(BaseDb, name))
    plan = inspect.signature(getattr(MongoPlans, name))
    assert list(plan.parameters.values()) == list(contract.parameters.values())


def _memories(db: MongoDb) -> None:
    for text in ("Ada drinks tea.", "Ada has a dog.", "Ada lives in Oslo.", "Ada likes green tea."):
        db.upsert_memory(Memory(user_id="ada", content=text))


def test_recall_memories_reads_what_it_needs_in_one_plan(db: MongoDb) -> None:
    _memories(db)
    search = db.search_memories("ada", "tea", limit=2)
    newest = db.list_memories("ada", limit=3)
    with COUNTER.counting(db.database_name) as tally:
        assert db.recall_memories("ada", "tea", limit=2, recent=3) == (search, newest)
    assert tally.commands == ["find", "find"]
    with COUNTER.counting(db.database_name) as tally:
        assert db.recall_memories("ada", "", limit=2, recent=3) == ([], newest)
    assert tally.commands == ["find"]  # an empty query: no search
    with COUNTER.counting(db.database_name) as tally:
        assert db.recall_memories("ada", "tea", limit=2, recent=0) == (search, [])
    assert tally.commands == ["find"]
    assert db.recall_memories("ada", "tea", agent_id="other") == ([], [])


def test_async_recall_memories(mongo_kwargs: dict[str, str]) -> None:
    sync = MongoDb(**mongo_kwargs)
    try:
        _memories(sync)
        expected = (sync.search_memories("ada", "tea"), sync.list_memories("ada", limit=3))
    finally:
        sync.close()

    async def scenario() -> None:
        db = AsyncMongoDb(**mongo_kwargs)
        try:
            assert await db.recall_memories("ada", "tea") == expected
            assert await db.recall_memories("ada", "", recent=1) == ([], expected[1][:1])
        finally:
            await db.close()

    asyncio.run(scenario())
