"""Contract defaults written once, as generators of contract calls, and their three drivers.

A default such as ``fork_session`` or ``apply_retention`` yields ``(method name, args,
kwargs)`` and receives each call's result (or its exception, thrown back in). ``run_steps``
drives it with a sync Db's own methods, ``arun_steps`` with an async Db's, and
``plan_steps`` inside a Db of plans (MongoDB, Redis), where each call is the plan of that
name: the same logic on every flavour, with no copy per flavour.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

T = TypeVar("T")

#: A contract call the steps ask for: method name, positional and keyword arguments.
Request = tuple[str, tuple[Any, ...], dict[str, Any]]


def run_steps(db: Any, steps: Generator[Request, Any, T]) -> T:
    """Drive ``steps`` with the sync Db ``db``'s own contract methods."""
    return _drive(steps, lambda name, args, kwargs: getattr(db, name)(*args, **kwargs))


async def arun_steps(db: Any, steps: Generator[Request, Any, T]) -> T:
    """Drive ``steps`` with the async Db ``db``'s own contract methods."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            name, args, kwargs = steps.throw(error) if error else steps.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        error = None
        try:
            reply = await getattr(db, name)(*args, **kwargs)
        except Exception as exc:  # handed to the steps, which may turn it into a kern error
            error = exc


def plan_steps(plans: Any, steps: Generator[Request, Any, T]) -> Generator[Any, Any, T]:
    """``steps`` as one plan of a Db of plans: each call is the plan of that name."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            name, args, kwargs = steps.throw(error) if error else steps.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        error = None
        try:
            reply = yield from getattr(plans, name)(*args, **kwargs)
        except Exception as exc:
            error = exc


def _drive(
    steps: Generator[Request, Any, T], call: Callable[[str, tuple[Any, ...], dict[str, Any]], Any]
) -> T:
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            name, args, kwargs = steps.throw(error) if error else steps.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        error = None
        try:
            reply = call(name, args, kwargs)
        except Exception as exc:
            error = exc
