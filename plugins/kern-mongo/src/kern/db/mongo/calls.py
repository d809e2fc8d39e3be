"""One implementation of the contract, two drivers: pymongo's sync and async clients.

Each operation of ``kern.db.mongo.ops`` is a generator that yields what it needs from the
server (a ``Call`` on a collection, or a ``Pause`` between retries) and receives the result,
or has the driver's exception thrown back in at the ``yield``. ``run`` performs the calls
on a ``pymongo.MongoClient``'s collections, ``arun`` awaits them on an
``AsyncMongoClient``'s: the logic cannot drift apart between ``MongoDb`` and
``AsyncMongoDb``, and neither blocks where it should not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """``collections[collection].<method>(*args, **kwargs)``.

    ``method="find"`` returns the list of documents (the cursor read to its end).
    """

    collection: str
    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Pause:
    """Wait ``seconds`` (``time.sleep`` or ``asyncio.sleep``): backoff between retries."""

    seconds: float


Step = Call | Pause
#: What every operation of ``ops`` is.
Op = Generator[Step, Any, T]


def run(op: Op[T], collections: Mapping[str, Any]) -> T:
    """Perform ``op`` with blocking calls on sync pymongo collections."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = op.send(result) if error is None else op.throw(error)
        except StopIteration as done:
            return done.value
        result, error = None, None
        try:
            if isinstance(step, Pause):
                time.sleep(step.seconds)
                continue
            target = collections[step.collection]
            if step.method == "find":
                result = list(target.find(*step.args, **step.kwargs))
            else:
                result = getattr(target, step.method)(*step.args, **step.kwargs)
        except Exception as exc:
            error = exc


async def arun(op: Op[T], collections: Mapping[str, Any]) -> T:
    """Perform ``op`` by awaiting calls on ``AsyncMongoClient`` collections."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = op.send(result) if error is None else op.throw(error)
        except StopIteration as done:
            return done.value
        result, error = None, None
        try:
            if isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
                continue
            target = collections[step.collection]
            if step.method == "find":
                result = await target.find(*step.args, **step.kwargs).to_list(None)
            else:
                result = await getattr(target, step.method)(*step.args, **step.kwargs)
        except Exception as exc:
            error = exc
