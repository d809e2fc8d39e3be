"""One turn's logic, two ways to run it: the sync and the async driver.

An agent's turn is written once, as a generator that *yields* what it needs done
(``DbCall``, ``ModelCall``, ``ToolRun``) and receives the result. The sync driver performs
those effects with blocking calls; the async driver awaits them, offloading a sync database
or a sync tool to a worker thread so the event loop never blocks. Neither driver knows
anything about agents, and the turn knows nothing about sync or async.

A failed effect is thrown back into the turn at the ``yield`` that asked for it, so the
turn's own ``try``/``except`` decides what a failure means.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from kern.models.base import Model, ModelDelta, ModelResponse, ToolSpec
from kern.records import Message
from kern.run import RunEvent


@dataclass(frozen=True)
class DbCall:
    """Call ``method`` of the storage contract."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelCall:
    """Ask ``model`` for its next response (a team's leader and members differ)."""

    model: Model
    messages: list[Message]
    tools: list[ToolSpec]
    #: A team member's call: its text is not streamed to the caller (the leader answers).
    quiet: bool = False


@dataclass(frozen=True)
class Call:
    """Call user code (a tool, a workflow step function) with keyword arguments."""

    function: Callable[..., Any]
    kwargs: dict[str, Any]
    #: What a streamed run reports while it runs (the tool's name).
    name: str = ""


Effect = DbCall | ModelCall | Call
Turn = Generator[Effect, Any, Any]


def drive(turn: Turn, *, db: Any, stream: bool = False) -> Iterator[RunEvent | Any]:
    """Run ``turn`` with blocking calls. Yields streamed events; the last item is the result."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = turn.throw(error) if error is not None else turn.send(value)
        except StopIteration as finished:
            yield finished.value
            return
        value, error = None, None
        try:
            if isinstance(effect, DbCall):
                value = getattr(db, effect.method)(*effect.args, **effect.kwargs)
            elif isinstance(effect, ModelCall):
                if stream and not effect.quiet:
                    for item in effect.model.stream(effect.messages, effect.tools or None):
                        if isinstance(item, ModelDelta):
                            yield RunEvent(event="content", content=item.content)
                        else:
                            value = item
                else:
                    value = effect.model.response(effect.messages, effect.tools or None)
            else:
                if stream and effect.name:
                    yield RunEvent(event="tool_call", tool_name=effect.name)
                value = effect.function(**effect.kwargs)
                if inspect.isawaitable(value):
                    value = asyncio.run(_awaited(value))
        except Exception as exc:  # handed to the turn, which decides
            error = exc


async def adrive(turn: Turn, *, db: Any, stream: bool = False) -> AsyncIterator[RunEvent | Any]:
    """Run ``turn`` without blocking the event loop. Same protocol as ``drive``."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = turn.throw(error) if error is not None else turn.send(value)
        except StopIteration as finished:
            yield finished.value
            return
        value, error = None, None
        try:
            if isinstance(effect, DbCall):
                method = getattr(db, effect.method)
                if db.is_async:
                    value = await method(*effect.args, **effect.kwargs)
                else:
                    value = await asyncio.to_thread(method, *effect.args, **effect.kwargs)
            elif isinstance(effect, ModelCall):
                if stream and not effect.quiet:
                    async for item in effect.model.astream(effect.messages, effect.tools or None):
                        if isinstance(item, ModelDelta):
                            yield RunEvent(event="content", content=item.content)
                        else:
                            value = item
                else:
                    value = await effect.model.aresponse(effect.messages, effect.tools or None)
            else:
                if stream and effect.name:
                    yield RunEvent(event="tool_call", tool_name=effect.name)
                if inspect.iscoroutinefunction(effect.function):
                    value = await effect.function(**effect.kwargs)
                else:
                    value = await asyncio.to_thread(effect.function, **effect.kwargs)
        except Exception as exc:
            error = exc


async def _awaited(value: Any) -> Any:
    return await value


def last(items: Iterator[Any]) -> Any:
    """Exhaust a driver and return its final item (the turn's result)."""
    result = None
    for result in items:  # noqa: B007
        pass
    return result


async def alast(items: AsyncIterator[Any]) -> Any:
    result = None
    async for result in items:  # noqa: B007
        pass
    return result


__all__ = ["Call", "DbCall", "ModelCall", "ModelResponse", "adrive", "alast", "drive", "last"]
