"""The conformance suite for a sync ``BaseDb``: each scenario driven without an event loop.

Each scenario of ``Scenarios`` becomes a plain test function (``_sync_test``) that calls the
sync db directly, in the test's thread, exactly as user code does; races use threads.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from kern.db.base import BaseDb
from kern.records import Run
from kern.testing.conformance._sync import _AwaitableDb, _drive, _sync_test
from kern.testing.conformance.base import Store
from kern.testing.conformance.processes import _run_in_processes
from kern.testing.conformance.recipes import Recipe, build_db
from kern.testing.conformance.scenarios import Scenarios

__all__ = ["BackendConformance"]


class BackendConformance(Scenarios):
    """The conformance suite for a sync ``BaseDb``: subclass it as ``Test...``.

    Provide ``db_factory(self, tmp_path)`` and ``count_reads(self, db, fn) -> int`` (``fn()``
    performs the read to measure). See ``kern.testing.conformance``.
    """

    base_class = BaseDb

    def count_reads(self, db: BaseDb, fn: Callable[[], Any]) -> int:
        raise NotImplementedError(
            f"{type(self).__name__} must define count_reads(self, db, fn) -> int: call fn() "
            "once and return a backend-specific measure of the rows/work it read"
        )

    @pytest.fixture
    def db(self, recipe: Recipe) -> Iterator[BaseDb]:
        db = build_db(recipe)
        try:
            yield db
        finally:
            db.close()

    @pytest.fixture
    def store(self, db: BaseDb) -> Store:
        return _AwaitableDb(db)

    async def _open(self, recipe: Recipe) -> _AwaitableDb:
        return _AwaitableDb(build_db(recipe))

    async def _close(self, store: Store) -> None:
        assert isinstance(store, _AwaitableDb)  # what _open made
        store.wrapped.close()

    async def _measure(self, db: BaseDb, read: Callable[[], Awaitable[Any]]) -> tuple[int, Any]:
        results = []
        count = self.count_reads(db, lambda: results.append(_drive(read())))
        assert len(results) == 1, "count_reads must call fn exactly once"
        return count, results[0]

    async def _concurrently(self, calls: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda call: _drive(call()), calls))

    async def _append_many(self, store: Store, runs: Sequence[Run]) -> list[Run]:
        assert isinstance(store, _AwaitableDb)  # the store fixture's
        append = store.wrapped.append_run
        return [append(run) for run in runs]

    async def _in_processes(self, task: str, recipe: Recipe, params: dict[str, Any]) -> list[Any]:
        return _run_in_processes(task, recipe, False, {"attempts": 1, **params})


for _name in dir(Scenarios):  # the scenarios of Scenarios and of its mixins
    _scenario = getattr(Scenarios, _name)
    if _name.startswith("test_") and inspect.iscoroutinefunction(_scenario):
        setattr(BackendConformance, _name, _sync_test(_scenario))
del _name, _scenario
