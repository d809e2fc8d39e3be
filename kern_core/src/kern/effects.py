"""Logic written once as a generator of effects; one sync and one async driver run it.

An agent's turn, a learning store's step, a Mongo or Redis operation: each is a generator
that *yields* what it needs done (an effect) and receives the result, or has the failure
thrown back in at the ``yield``, so its own ``try``/``except`` decides what a failure means.
``drive`` performs the effects with blocking calls; ``adrive`` awaits them. Neither knows
what the effects mean: the caller gives a *performer*, a function from one effect to its
result (``Callable[[E], Any]``, or ``Callable[[E], Awaitable[Any]]`` for ``adrive``). The
logic knows nothing about sync or async, so the two can never drift apart.

Effects are typed: ``Effect[T]`` is something whose result is a ``T``, and
``result = yield from effect`` gives the generator that ``T`` (``yield effect`` works too,
but a generator's ``send`` type is one for all its yields, so the result is then ``Any``).
``kern.storage`` has one typed ``DbCall`` factory per method of the storage contract::

    from kern import storage

    def last_outputs(session_id: str) -> Turn[list[object]]:
        runs = yield from storage.get_last_runs(session_id, 3)  # list[Run]
        return [run.output for run in runs]

A performer may answer in pieces (a streamed model response): it returns ``Streamed``
(sync) or ``AStreamed`` (async), whose events the driver passes on to its own caller
before sending the turn the final value. ``drive`` yields those events and returns the
turn's result; ``adrive`` yields them and then ``Done(result)``. ``run`` / ``arun`` are the
same drivers for callers that want the result only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeAlias, TypeVar

from kern.models.base import Model, ModelResponse, ToolSpec
from kern.records import Message

T = TypeVar("T")
E = TypeVar("E")


class Effect(Generic[T]):
    """Something a generator asks its driver to do, whose result is a ``T``.

    ``yield from effect`` (and ``await effect`` in a coroutine a driver runs, as the
    conformance suite's sync scenarios do) yields the effect itself and evaluates to the
    result the driver sends back.
    """

    __slots__ = ()

    def __iter__(self) -> Generator[Effect[T], Any, T]:
        result: T = yield self
        return result

    __await__ = __iter__


#: A turn (or any logic written for the drivers) whose result is a ``T``.
Turn: TypeAlias = Generator[Effect[Any], Any, T]


@dataclass(frozen=True, slots=True)
class DbCall(Effect[T]):
    """Call ``method`` of the storage contract (build them with ``kern.storage``)."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelCall(Effect[ModelResponse]):
    """Ask ``model`` for its next response (a team's leader and members differ)."""

    model: Model
    messages: list[Message]
    tools: list[ToolSpec]
    #: A team member's call: its text is not streamed to the caller (the leader answers).
    quiet: bool = False


@dataclass(frozen=True, slots=True)
class Call(Effect[Any]):
    """Call user code (a tool, a workflow step function) with keyword arguments."""

    function: Callable[..., Any]
    kwargs: dict[str, Any]
    #: What a streamed run reports while it runs (the tool's name).
    name: str = ""


@dataclass(frozen=True, slots=True)
class Done(Generic[T]):
    """The last item ``adrive`` yields, and the last an ``AStreamed`` yields: the value."""

    value: T


@dataclass(frozen=True, slots=True)
class Streamed(Generic[T]):
    """A sync performer's answer in pieces: ``events`` yields what the driver passes on
    and returns the value the turn receives."""

    events: Generator[Any, None, T]


@dataclass(frozen=True, slots=True)
class AStreamed:
    """An async performer's answer in pieces: ``items`` yields what the driver passes on,
    and last ``Done(value)``, the value the turn receives."""

    items: AsyncIterator[Any]


def drive(turn: Generator[E, Any, T], perform: Callable[[E], Any]) -> Generator[Any, None, T]:
    """Run ``turn`` with blocking calls; yields what streamed performers emit, returns the
    turn's result. A performer's exception is thrown into the turn at its ``yield``."""
    value: Any = None
    error: Exception | None = None
    while True:
        try:
            effect = turn.send(value) if error is None else turn.throw(error)
        except StopIteration as finished:
            return finished.value  # type: ignore[no-any-return]
        try:
            value, error = perform(effect), None
            if isinstance(value, Streamed):
                value = yield from value.events
        except Exception as exc:  # handed to the turn, which decides
            value, error = None, exc


async def adrive(
    turn: Generator[E, Any, T], perform: Callable[[E], Awaitable[Any]]
) -> AsyncIterator[Any]:
    """Run ``turn`` without blocking the event loop; yields what streamed performers emit,
    then ``Done(result)``. Same protocol as ``drive``."""
    value: Any = None
    error: Exception | None = None
    while True:
        try:
            effect = turn.send(value) if error is None else turn.throw(error)
        except StopIteration as finished:
            yield Done(finished.value)
            return
        try:
            value, error = await perform(effect), None
            if isinstance(value, AStreamed):
                async for item in value.items:
                    if isinstance(item, Done):
                        value = item.value
                    else:
                        yield item
        except Exception as exc:
            value, error = None, exc


def run(turn: Generator[E, Any, T], perform: Callable[[E], Any]) -> T:
    """``drive`` for a caller that wants only the result."""
    return result(drive(turn, perform))


async def arun(turn: Generator[E, Any, T], perform: Callable[[E], Awaitable[Any]]) -> T:
    """``adrive`` for a caller that wants only the result.

    ``adrive`` is run to its end (its last item is the result): an async generator left
    suspended would be closed later by a task of its own, a cost on every call."""
    done: Done[T] | None = None
    async for item in adrive(turn, perform):
        if isinstance(item, Done):
            done = item
    if done is None:  # pragma: no cover - adrive always ends with Done
        raise AssertionError("adrive ended without a result")
    return done.value


def result(events: Generator[Any, None, T]) -> T:
    """Exhaust a ``drive`` and return the turn's result (its events are dropped)."""
    while True:
        try:
            next(events)
        except StopIteration as finished:
            return finished.value  # type: ignore[no-any-return]


__all__ = [
    "AStreamed",
    "Call",
    "DbCall",
    "Done",
    "Effect",
    "ModelCall",
    "Streamed",
    "Turn",
    "adrive",
    "arun",
    "drive",
    "result",
    "run",
]
