"""How the effects of a turn are performed: storage on the db, the model, user code.

``kern.effects`` runs a turn with any performer; these are the ones agents, teams,
workflows and the learning machine use. ``Performer`` performs with blocking calls (for
``drive``), ``AsyncPerformer`` without blocking the event loop (for ``adrive``): a sync db
or a sync tool runs in a worker thread, an async db and an ``async def`` tool are awaited.

Tools and step functions (``Call``) follow one rule in both: ``async def`` ones are awaited
on the caller's loop by the async performer. The sync performer runs them on a loop of
their own: ``asyncio.run`` when this thread runs no loop, else (a notebook cell, a web
handler calling ``agent.run``) a private loop in a worker thread while this thread waits,
since a running loop cannot be re-entered.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from typing import Any, TypeVar

from kern.db.base import AsyncBaseDb, BaseDb
from kern.effects import (
    AStreamed,
    Call,
    DbCall,
    Done,
    Effect,
    ModelCall,
    Streamed,
    Turn,
    adrive,
    arun,
    drive,
    run,
)
from kern.models.base import ModelDelta, ModelResponse
from kern.run import RunEvent

T = TypeVar("T")


class Performer:
    """Performs effects with blocking calls on ``db`` (``None``: no storage effect may
    come). ``stream=True`` streams the model's text of calls that are not ``quiet``."""

    def __init__(self, db: BaseDb | AsyncBaseDb | None, *, stream: bool = False) -> None:
        self.db = db
        self.stream = stream

    def __call__(self, effect: Effect[Any]) -> Any:
        if isinstance(effect, DbCall):
            return getattr(self.db, effect.method)(*effect.args, **effect.kwargs)
        if isinstance(effect, ModelCall):
            tools = effect.tools or None
            if self.stream and not effect.quiet:
                return Streamed(_model_events(effect, tools))
            return effect.model.response(effect.messages, tools)
        if isinstance(effect, Call):
            if self.stream and effect.name:
                return Streamed(_tool_events(effect))
            return call_blocking(effect.function, effect.kwargs)
        raise TypeError(f"no performer for {effect!r}")


class AsyncPerformer:
    """Performs effects without blocking the event loop (see the module docstring)."""

    def __init__(self, db: BaseDb | AsyncBaseDb | None, *, stream: bool = False) -> None:
        self.db = db
        self.stream = stream

    async def __call__(self, effect: Effect[Any]) -> Any:
        if isinstance(effect, DbCall):
            method = getattr(self.db, effect.method)
            if self.db is not None and self.db.is_async:
                return await method(*effect.args, **effect.kwargs)
            return await asyncio.to_thread(method, *effect.args, **effect.kwargs)
        if isinstance(effect, ModelCall):
            tools = effect.tools or None
            if self.stream and not effect.quiet:
                return AStreamed(_amodel_events(effect, tools))
            return await effect.model.aresponse(effect.messages, tools)
        if isinstance(effect, Call):
            if self.stream and effect.name:
                return AStreamed(_atool_events(effect))
            return await call_awaiting(effect.function, effect.kwargs)
        raise TypeError(f"no performer for {effect!r}")


def _model_events(effect: ModelCall, tools: Any) -> Generator[RunEvent, None, ModelResponse]:
    response = ModelResponse()
    for item in effect.model.stream(effect.messages, tools):
        if isinstance(item, ModelDelta):
            yield RunEvent(event="content", content=item.content)
        else:
            response = item
    return response


async def _amodel_events(effect: ModelCall, tools: Any) -> AsyncIterator[Any]:
    response = ModelResponse()
    async for item in effect.model.astream(effect.messages, tools):
        if isinstance(item, ModelDelta):
            yield RunEvent(event="content", content=item.content)
        else:
            response = item
    yield Done(response)


def _tool_events(effect: Call) -> Generator[RunEvent, None, Any]:
    yield RunEvent(event="tool_call", tool_name=effect.name)
    return call_blocking(effect.function, effect.kwargs)


async def _atool_events(effect: Call) -> AsyncIterator[Any]:
    yield RunEvent(event="tool_call", tool_name=effect.name)
    yield Done(await call_awaiting(effect.function, effect.kwargs))


def call_blocking(function: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Call ``function`` and, if it is async, run it to its end from sync code."""
    value = function(**kwargs)
    if not inspect.isawaitable(value):
        return value
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_awaited(value))
    return _on_private_loop(value)


async def call_awaiting(function: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Await an ``async def`` function; run a sync one in a worker thread."""
    if inspect.iscoroutinefunction(function):
        return await function(**kwargs)
    value = await asyncio.to_thread(function, **kwargs)
    return await value if inspect.isawaitable(value) else value


async def _awaited(value: Awaitable[T]) -> T:
    return await value


def _on_private_loop(value: Awaitable[T]) -> T:
    """Run ``value`` on a new event loop in a worker thread while this thread (whose own
    loop is running, so cannot be re-entered) waits. The caller's context variables go
    with it."""
    outcome: list[Any] = []
    context = contextvars.copy_context()

    def worker() -> None:
        try:
            outcome.append((True, context.run(asyncio.run, _awaited(value))))
        except BaseException as exc:  # handed back to the waiting thread
            outcome.append((False, exc))

    thread = threading.Thread(target=worker, name="kern-async-tool", daemon=True)
    thread.start()
    thread.join()
    ok, result = outcome[0]
    if not ok:
        raise result
    return result  # type: ignore[no-any-return]


def run_turn(turn: Turn[T], db: BaseDb | AsyncBaseDb | None) -> T:
    """Run ``turn`` to its result with blocking calls on ``db``."""
    return run(turn, Performer(db))


async def arun_turn(turn: Turn[T], db: BaseDb | AsyncBaseDb | None) -> T:
    """Run ``turn`` to its result without blocking the event loop."""
    return await arun(turn, AsyncPerformer(db))


def stream_turn(turn: Turn[T], db: BaseDb | AsyncBaseDb | None) -> Generator[Any, None, T]:
    """``turn``'s streamed events (``RunEvent``); returns its result."""
    return drive(turn, Performer(db, stream=True))


def astream_turn(turn: Turn[T], db: BaseDb | AsyncBaseDb | None) -> AsyncIterator[Any]:
    """``turn``'s streamed events (``RunEvent``), then ``Done(result)``."""
    return adrive(turn, AsyncPerformer(db, stream=True))


__all__ = [
    "AsyncPerformer",
    "Performer",
    "arun_turn",
    "astream_turn",
    "call_awaiting",
    "call_blocking",
    "run_turn",
    "stream_turn",
]
