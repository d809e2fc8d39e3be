"""The sync suite's driver: async-written scenarios run against a sync db, with no event loop.

Why a module of its own: every scenario is written once, as a coroutine that awaits the
contract's calls (``kern.testing.conformance``, "How one scenario serves both suites"). The
sync suite must call a sync db exactly as user code does, in the test's own thread, so it
wraps the db in ``_AwaitableDb`` (each call runs at once and hands back a ``_Ready``
awaitable) and drives the scenario to its end with ``_drive``, which refuses a scenario that
really suspends. ``_sync_test`` turns a scenario into the plain test function pytest runs.
kern's core effect driver is meant to replace ``_drive``; it is kept here, alone, for that.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

from kern.db.base import BaseDb

__all__ = ["_AwaitableDb", "_Ready", "_drive", "_sync_test"]


class _Ready:
    """An awaitable whose result is already there: awaiting it never suspends."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Iterator[Any]:
        return self.value
        yield  # pragma: no cover - makes this a generator


class _AwaitableDb:
    """A sync db seen through awaitable calls: each method runs at once, in this thread,
    and its result is handed back ready to ``await``. Exceptions raise at the call."""

    def __init__(self, db: BaseDb) -> None:
        self.wrapped = db

    def __getattr__(self, name: str) -> Callable[..., _Ready]:
        method = getattr(self.wrapped, name)

        def call(*args: Any, **kwargs: Any) -> _Ready:
            return _Ready(method(*args, **kwargs))

        return call


def _drive(awaitable: Awaitable[Any]) -> Any:
    """Run an awaitable that never suspends to its end, without an event loop."""
    steps = awaitable.__await__()
    try:
        yielded = steps.send(None)
    except StopIteration as done:
        return done.value
    close = getattr(steps, "close", None)
    if close is not None:
        close()
    raise TypeError(
        f"a sync-suite scenario awaited something that suspends ({yielded!r}); sync scenarios "
        "may only await the db's results"
    )


def _sync_test(scenario: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    """A plain test function that drives ``scenario`` (with the same fixtures and marks)."""

    def test(self: Any, *args: Any, **kwargs: Any) -> None:
        _drive(scenario(self, *args, **kwargs))

    for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
        setattr(test, attr, getattr(scenario, attr))
    test.__signature__ = inspect.signature(scenario)  # type: ignore[attr-defined]
    if hasattr(scenario, "pytestmark"):
        test.pytestmark = list(scenario.pytestmark)  # type: ignore[attr-defined]
    return test
