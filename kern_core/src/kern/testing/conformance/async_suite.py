"""The conformance suite for an ``AsyncBaseDb``: each scenario awaited by pytest-asyncio.

``store`` is the async db itself; races use tasks, and the 10,000-run seed keeps
``seed_concurrency`` appends in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

import pytest
import pytest_asyncio

from kern.db.base import AsyncBaseDb
from kern.records import Run
from kern.testing.conformance.base import Store
from kern.testing.conformance.processes import _run_in_processes
from kern.testing.conformance.recipes import Recipe, build_db
from kern.testing.conformance.scenarios import Scenarios

__all__ = ["AsyncBackendConformance"]


class AsyncBackendConformance(Scenarios):
    """The conformance suite for an ``AsyncBaseDb``: subclass it as ``Test...``.

    Provide ``db_factory(self, tmp_path)`` and ``async count_reads(self, db, fn) -> int``
    (``await fn()`` performs the read to measure). See ``kern.testing.conformance``.
    """

    pytestmark = pytest.mark.asyncio
    base_class = AsyncBaseDb
    #: Appends the 10,000-run seed keeps in flight at once.
    seed_concurrency: ClassVar[int] = 1

    async def count_reads(self, db: AsyncBaseDb, fn: Callable[[], Awaitable[Any]]) -> int:
        raise NotImplementedError(
            f"{type(self).__name__} must define async count_reads(self, db, fn) -> int: "
            "await fn() once and return a backend-specific measure of the rows/work it read"
        )

    @pytest_asyncio.fixture
    async def db(self, recipe: Recipe) -> Any:
        db = build_db(recipe)
        try:
            yield db
        finally:
            await db.close()

    @pytest.fixture
    def store(self, db: AsyncBaseDb) -> Store:
        return db

    async def _open(self, recipe: Recipe) -> AsyncBaseDb:
        db: AsyncBaseDb = build_db(recipe)  # this suite's recipes build async dbs
        return db

    async def _close(self, store: Store) -> None:
        await store.close()

    async def _measure(
        self, db: AsyncBaseDb, read: Callable[[], Awaitable[Any]]
    ) -> tuple[int, Any]:
        results = []

        async def fn() -> None:
            results.append(await read())

        count = await self.count_reads(db, fn)
        assert len(results) == 1, "count_reads must await fn() exactly once"
        return count, results[0]

    async def _concurrently(self, calls: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
        return list(await asyncio.gather(*(call() for call in calls)))

    async def _append_many(self, store: Store, runs: Sequence[Run]) -> list[Run]:
        stored: list[Run] = []
        step = max(1, self.seed_concurrency)
        for start in range(0, len(runs), step):
            chunk = runs[start : start + step]
            stored.extend(await asyncio.gather(*(store.append_run(run) for run in chunk)))
        return stored

    async def _in_processes(self, task: str, recipe: Recipe, params: dict[str, Any]) -> list[Any]:
        return await asyncio.to_thread(
            _run_in_processes, task, recipe, True, {"attempts": 3, **params}
        )
