"""One implementation of the contract, two drivers: pymongo's sync and async clients.

Each operation of ``kern.db.mongo.ops`` is a generator that yields what it needs from the
server (a ``Call`` on a collection, or a ``Pause`` between retries) and receives the result,
or has the driver's exception thrown back in at the ``yield``. ``run`` performs the calls
on a ``pymongo.MongoClient``'s collections, ``arun`` awaits them on an
``AsyncMongoClient``'s: the logic cannot drift apart between ``MongoDb`` and
``AsyncMongoDb``, and neither blocks where it should not.

An operation may also run some of its calls in one multi-document transaction: it yields
``Transaction("start")``, then its calls (sent with that transaction's session), then
``Transaction("commit")`` or ``Transaction("abort")``. A transaction still open when the
operation ends, by an error or otherwise, is aborted. ``Bulk`` sends several updates of
different collections, in order, in one round trip where the server can.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pymongo import UpdateOne

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


@dataclass(frozen=True)
class Transaction:
    """``action`` ``"start"``, ``"commit"`` or ``"abort"`` the operation's transaction.

    Between start and commit (or abort) every ``Call`` is sent in the transaction. Starting
    one while another is open aborts the open one first; aborting when none is open, or
    one the server already ended, does nothing.
    """

    action: str


@dataclass(frozen=True)
class Bulk:
    """Several ``update_one`` calls, performed in order: as one ``bulkWrite`` command (one
    round trip) where every server has it (MongoDB 8.0+, nx-27017), else one after the
    other. The first that fails raises, and those after it are not performed.
    """

    calls: tuple[Call, ...]


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


def _models(step: Bulk, collections: Mapping[str, Any]) -> list[UpdateOne]:
    models = []
    for call in step.calls:
        if call.method != "update_one" or call.kwargs:
            raise TypeError(f"Bulk performs update_one calls only, not {call}")
        namespace = collections[call.collection].full_name
        models.append(UpdateOne(*call.args, namespace=namespace))
    return models


Step = Call | Pause | Transaction | Bulk
#: What every operation of ``ops`` is.
Op = Generator[Step, Any, T]


def _client(collections: Mapping[str, Any]) -> Any:
    return next(iter(collections.values())).database.client


def run(op: Op[T], collections: Mapping[str, Any]) -> T:
    """Perform ``op`` with blocking calls on sync pymongo collections."""
    result: Any = None
    error: BaseException | None = None
    session: Any = None
    try:
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
                if isinstance(step, Transaction):
                    if step.action == "commit":
                        session, committing = None, session
                        try:
                            committing.commit_transaction()
                        finally:
                            committing.end_session()
                    else:
                        session = _end(session)
                        if step.action == "start":
                            session = _client(collections).start_session()
                            session.start_transaction()
                    continue
                if isinstance(step, Bulk):
                    client = _client(collections)
                    if session is None and client_bulk_write(client):
                        client.bulk_write(_models(step, collections), ordered=True)
                    else:
                        for call in step.calls:
                            kwargs = call.kwargs if session is None else {"session": session}
                            getattr(collections[call.collection], call.method)(*call.args, **kwargs)
                    continue
                target = collections[step.collection]
                kwargs = step.kwargs if session is None else {**step.kwargs, "session": session}
                if step.method == "find":
                    result = list(target.find(*step.args, **kwargs))
                else:
                    result = getattr(target, step.method)(*step.args, **kwargs)
            except Exception as exc:
                error = exc
    finally:
        _end(session)


def _end(session: Any) -> None:
    """Abort ``session``'s transaction if one is open (pymongo ignores the server's errors
    there) and end the session."""
    if session is not None:
        try:
            if session.in_transaction:
                session.abort_transaction()
        finally:
            session.end_session()


async def arun(op: Op[T], collections: Mapping[str, Any]) -> T:
    """Perform ``op`` by awaiting calls on ``AsyncMongoClient`` collections."""
    result: Any = None
    error: BaseException | None = None
    session: Any = None
    try:
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
                if isinstance(step, Transaction):
                    if step.action == "commit":
                        session, committing = None, session
                        try:
                            await committing.commit_transaction()
                        finally:
                            await committing.end_session()
                    else:
                        session = await _aend(session)
                        if step.action == "start":
                            session = _client(collections).start_session()
                            await session.start_transaction()
                    continue
                if isinstance(step, Bulk):
                    client = _client(collections)
                    if session is None and client_bulk_write(client):
                        await client.bulk_write(_models(step, collections), ordered=True)
                    else:
                        for call in step.calls:
                            kwargs = call.kwargs if session is None else {"session": session}
                            target = collections[call.collection]
                            await getattr(target, call.method)(*call.args, **kwargs)
                    continue
                target = collections[step.collection]
                kwargs = step.kwargs if session is None else {**step.kwargs, "session": session}
                if step.method == "find":
                    result = await target.find(*step.args, **kwargs).to_list(None)
                else:
                    result = await getattr(target, step.method)(*step.args, **kwargs)
            except Exception as exc:
                error = exc
    finally:
        await _aend(session)


async def _aend(session: Any) -> None:
    """The async ``_end``."""
    if session is not None:
        try:
            if session.in_transaction:
                await session.abort_transaction()
        finally:
            await session.end_session()
