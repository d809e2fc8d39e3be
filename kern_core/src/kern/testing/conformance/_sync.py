"""The sync suite's driver: async-written scenarios run against a sync db, with no event loop.

Why a module of its own: every scenario is written once, as a coroutine that awaits the
contract's calls (``kern.testing.conformance``, "How one scenario serves both suites"). The
sync suite must call a sync db exactly as user code does, in the test's own thread. So it
wraps the db in ``_AwaitableDb``, whose calls are effects (``kern.effects.Call``, awaitable),
and ``_drive`` runs the scenario's coroutine with kern's own sync driver
(``kern.effects.run``): each awaited call is performed at once, in this thread, its result
or exception sent back in at the ``await``. Anything else awaited would need an event loop,
and is refused. ``_sync_test`` turns a scenario into the plain test function pytest runs.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from kern.db.base import BaseDb
from kern.effects import Call, run

__all__ = ["_AwaitableDb", "_drive", "_sync_test"]


class _AwaitableDb:
    """A sync db seen through awaitable calls: ``await store.get_session(...)`` asks the
    driver to call ``db.get_session(...)`` in this thread."""

    def __init__(self, db: BaseDb) -> None:
        self.wrapped = db

    def __getattr__(self, name: str) -> Callable[..., Call]:
        method = getattr(self.wrapped, name)

        def call(*args: Any, **kwargs: Any) -> Call:
            return Call(functools.partial(method, *args, **kwargs), {}, name)

        return call


def _perform(effect: object) -> Any:
    if isinstance(effect, Call):
        return effect.function(**effect.kwargs)
    raise TypeError(
        f"a sync-suite scenario awaited something that suspends ({effect!r}); sync scenarios "
        "may only await the db's results"
    )


def _drive(awaitable: Awaitable[Any]) -> Any:
    """Run a scenario's coroutine to its end, performing its db calls in this thread."""
    return run(awaitable.__await__(), _perform)


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
