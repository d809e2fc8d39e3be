"""The steps of a Mongo operation, and their performers for pymongo's sync and async clients.

Each operation of ``kern.db.mongo.ops`` is a generator that yields what it needs from the
server (a ``Call`` on a collection, or a ``Pause`` between retries) and receives the result,
or has the driver's exception thrown back in at the ``yield``. The core drivers
(``kern.effects.run`` / ``arun``) run it; ``Steps`` performs its steps with blocking calls
on a ``pymongo.MongoClient``'s collections, ``AsyncSteps`` awaits them on an
``AsyncMongoClient``'s: the logic cannot drift apart between ``MongoDb`` and
``AsyncMongoDb``, and neither blocks where it should not.

An operation may also run some of its calls in one multi-document transaction: it yields
``Transaction("start")``, then its calls (sent with that transaction's session), then
``Transaction("commit")`` or ``Transaction("abort")``. A transaction still open when the
operation ends, by an error or otherwise, is aborted. ``Bulk`` sends several updates of
different collections, in order, in one round trip where the server can, and gives back
how many documents they matched. ``OnDatabase`` asks the database itself (a server command,
the list of its collections) what no collection call answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pymongo import UpdateOne

from kern import effects

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """``collections[collection].<method>(*args, **kwargs)``.

    ``method="find"`` or ``"aggregate"`` returns the list of documents (the cursor read
    to its end); an aggregate's ``$unionWith`` names its collection as ``collection`` does.
    """

    collection: str
    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait ``seconds`` (``time.sleep`` or ``asyncio.sleep``): backoff between retries."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Transaction:
    """``action`` ``"start"``, ``"commit"`` or ``"abort"`` the operation's transaction.

    Between start and commit (or abort) every ``Call`` is sent in the transaction. Starting
    one while another is open aborts the open one first; aborting when none is open, or
    one the server already ended, does nothing.
    """

    action: str


@dataclass(frozen=True, slots=True)
class Bulk:
    """Several ``update_one`` calls, performed in order: as one ``bulkWrite`` command (one
    round trip) where every server has it (MongoDB 8.0+, nx-27017), else one after the
    other. The first that fails raises, and those after it are not performed. The result
    is how many documents the updates matched (an update of an id not stored matches none).
    """

    calls: tuple[Call, ...]


@dataclass(frozen=True, slots=True)
class OnDatabase:
    """``database.<method>(*args, **kwargs)`` on the database holding kern's collections:
    what no collection answers (``command("buildInfo")``, ``list_collection_names``)."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


Step = Call | Pause | Transaction | Bulk | OnDatabase
#: What every operation of ``ops`` is.
Op = Generator[Step, Any, T]

#: MongoDB 8.0, the first with the client-level ``bulkWrite`` command.
CLIENT_BULK_WRITE_WIRE_VERSION = 25


def client_bulk_write(client: Any) -> bool:
    """True if every server ``client`` knows runs the client-level ``bulkWrite`` command."""
    servers = [
        server
        for server in client.topology_description.server_descriptions().values()
        if server.is_server_type_known
    ]
    return bool(servers) and all(
        server.max_wire_version >= CLIENT_BULK_WRITE_WIRE_VERSION for server in servers
    )


# -- what both performers share: everything that sends nothing ----------------------------
def _client(collections: Mapping[str, Any]) -> Any:
    return next(iter(collections.values())).database.client


def _on_database(step: OnDatabase, collections: Mapping[str, Any]) -> Any:
    """Make ``step`` on the database: its result (sync pymongo) or an awaitable of it."""
    database = next(iter(collections.values())).database
    return getattr(database, step.method)(*step.args, **step.kwargs)


def _send(call: Call, collections: Mapping[str, Any], session: Any) -> Any:
    """Make ``call`` on its collection, in the open transaction if there is one: the result
    (sync pymongo), an awaitable of it (async), or a cursor (``find``, either)."""
    kwargs = call.kwargs if session is None else {**call.kwargs, "session": session}
    args = call.args
    if call.method == "aggregate":
        args = (_named(args[0], collections), *args[1:])
    return getattr(collections[call.collection], call.method)(*args, **kwargs)


def _named(pipeline: list[dict[str, Any]], collections: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``pipeline`` with each ``$unionWith``'s logical collection name made the real one
    (the ops name collections as ``Call.collection`` does, without the table prefix)."""
    named = []
    for stage in pipeline:
        union = stage.get("$unionWith")
        if union is not None and union.get("coll") in collections:
            stage = {"$unionWith": {**union, "coll": collections[union["coll"]].name}}
        named.append(stage)
    return named


def _one_bulk_write(step: Bulk, collections: Mapping[str, Any], session: Any) -> list[UpdateOne]:
    """``step`` as the models of one client-level ``bulkWrite``; empty when it must be sent
    call by call (in a transaction, or a server without that command)."""
    if session is not None or not client_bulk_write(_client(collections)):
        return []
    models = []
    for call in step.calls:
        if call.method != "update_one" or call.kwargs:
            raise TypeError(f"Bulk performs update_one calls only, not {call}")
        query, update = call.args
        models.append(UpdateOne(query, update, namespace=collections[call.collection].full_name))
    return models


# -- the performers -------------------------------------------------------------------------
#: Calls whose cursor is read to its end: the step's result is the list of documents.
CURSORS = frozenset({"find", "aggregate"})


class Steps:
    """Performs one operation's steps with blocking calls on sync pymongo collections; holds
    its transaction's session (``end()`` aborts one left open)."""

    __slots__ = ("collections", "session")

    def __init__(self, collections: Mapping[str, Any]) -> None:
        self.collections = collections
        self.session: Any = None

    def __call__(self, step: Step) -> Any:
        if isinstance(step, Call):
            result = _send(step, self.collections, self.session)
            return list(result) if step.method in CURSORS else result
        if isinstance(step, OnDatabase):
            return _on_database(step, self.collections)
        if isinstance(step, Bulk):
            models = _one_bulk_write(step, self.collections, self.session)
            if models:
                return _client(self.collections).bulk_write(models, ordered=True).matched_count
            return sum(
                _send(call, self.collections, self.session).matched_count for call in step.calls
            )
        if isinstance(step, Transaction):
            if step.action == "commit":
                session, self.session = self.session, None
                try:
                    session.commit_transaction()
                finally:
                    session.end_session()
            else:
                self.end()
                if step.action == "start":
                    self.session = _client(self.collections).start_session()
                    self.session.start_transaction()
            return None
        time.sleep(step.seconds)
        return None

    def end(self) -> None:
        """Abort the open transaction, if any (pymongo ignores the server's errors there),
        and end its session."""
        session, self.session = self.session, None
        if session is not None:
            try:
                if session.in_transaction:
                    session.abort_transaction()
            finally:
                session.end_session()


class AsyncSteps:
    """``Steps`` for ``AsyncMongoClient`` collections: each call is awaited."""

    __slots__ = ("collections", "session")

    def __init__(self, collections: Mapping[str, Any]) -> None:
        self.collections = collections
        self.session: Any = None

    async def __call__(self, step: Step) -> Any:
        if isinstance(step, Call):
            pending = _send(step, self.collections, self.session)
            if step.method == "aggregate":  # the async client's aggregate is awaited first
                pending = await pending
            return await (pending.to_list(None) if step.method in CURSORS else pending)
        if isinstance(step, OnDatabase):
            return await _on_database(step, self.collections)
        if isinstance(step, Bulk):
            models = _one_bulk_write(step, self.collections, self.session)
            if models:
                done = await _client(self.collections).bulk_write(models, ordered=True)
                return done.matched_count
            matched = 0
            for call in step.calls:
                matched += (await _send(call, self.collections, self.session)).matched_count
            return matched
        if isinstance(step, Transaction):
            if step.action == "commit":
                session, self.session = self.session, None
                try:
                    await session.commit_transaction()
                finally:
                    await session.end_session()
            else:
                await self.aend()
                if step.action == "start":
                    self.session = _client(self.collections).start_session()
                    await self.session.start_transaction()
            return None
        await asyncio.sleep(step.seconds)
        return None

    async def aend(self) -> None:
        """The async ``Steps.end``."""
        session, self.session = self.session, None
        if session is not None:
            try:
                if session.in_transaction:
                    await session.abort_transaction()
            finally:
                await session.end_session()


def run(op: Op[T], collections: Mapping[str, Any]) -> T:
    """Perform ``op`` with blocking calls on sync pymongo collections (``kern.effects.run``
    with ``Steps``); a transaction it leaves open is aborted."""
    steps = Steps(collections)
    try:
        return effects.run(op, steps)
    finally:
        steps.end()


async def arun(op: Op[T], collections: Mapping[str, Any]) -> T:
    """Perform ``op`` by awaiting calls on ``AsyncMongoClient`` collections (``kern.effects
    .arun`` with ``AsyncSteps``); a transaction it leaves open is aborted."""
    steps = AsyncSteps(collections)
    try:
        return await effects.arun(op, steps)
    finally:
        await steps.aend()
