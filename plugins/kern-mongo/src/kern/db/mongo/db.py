"""``MongoDb`` (pymongo's ``MongoClient``) and ``AsyncMongoDb`` (pymongo's ``AsyncMongoClient``).

Both run the same operations (``kern.db.mongo.ops``) through their own driver
(``kern.db.mongo.calls``): the async twin is natively async, not a thread pool. Most
contract methods are nothing but "run ``ops.<same name>`` with the call's arguments":
those are listed once, in ``ONE_OP_METHODS``, and added to both classes by
``_with_one_op_methods``; each class writes out only the methods that do more.
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pymongo import AsyncMongoClient, MongoClient
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    NetworkTimeout,
    ServerSelectionTimeoutError,
)
from pymongo.server_type import SERVER_TYPE
from pymongo.topology_description import TOPOLOGY_TYPE

from kern.db.base import TABLES, AsyncBaseDb, BaseDb
from kern.db.mongo import config, ops
from kern.db.mongo.calls import Op, arun, run
from kern.db.mongo.locks import AsyncKeyedLocks, KeyedLocks
from kern.errors import KernError
from kern.records import Run, Session

T = TypeVar("T")


def transactions_supported(client: Any) -> bool:
    """True if ``client`` is connected to servers that run multi-document transactions: a
    replica-set primary, a mongos, or a load balancer in front of them. A standalone server
    (and nx-27017, which says it is one) has none that kern could rely on."""
    description = client.topology_description
    if description.topology_type == TOPOLOGY_TYPE.LoadBalanced:
        return True
    return any(
        server.server_type in (SERVER_TYPE.RSPrimary, SERVER_TYPE.Mongos)
        for server in description.server_descriptions().values()
    )


class _Target:
    """What both classes share: the client, the database and the collections."""

    backend_name = "mongo"
    #: pymongo's "the server cannot be reached" errors (connection refused or lost, no
    #: server selectable in time, a network timeout): the door raises them as
    #: ``StorageUnavailableError``. ``OperationFailure`` (``DuplicateKeyError``...) is not
    #: among them: the server answered.
    unavailable_errors = (
        ConnectionFailure,
        AutoReconnect,
        ServerSelectionTimeoutError,
        NetworkTimeout,
    )

    def _connect(
        self,
        db_url: str | None,
        client: Any,
        database: str | None,
        collection_prefix: str,
        *,
        is_async: bool,
    ) -> None:
        cls = type(self).__name__
        config.exactly_one_target(db_url, client, cls=cls)
        self.collection_prefix = config.check_prefix(collection_prefix, cls=cls)
        if client is not None:
            checked = (config.check_async_client if is_async else config.check_sync_client)(
                client, cls=cls
            )
            name = config.choose_database(database, config.client_database(checked), cls=cls)
            self._owns_client = False
        else:
            url = config.check_url(db_url, cls=cls)
            name = config.choose_database(database, config.url_database(url), cls=cls)
            factory = AsyncMongoClient if is_async else MongoClient
            checked = config.build_client(factory, url, cls=cls)
            self._owns_client = True
        self.client = checked
        self.database_name = name
        self._target = (
            config.url_target(db_url, name)
            if client is None
            else config.client_target(checked, name)
        )
        #: Whether commit_turn uses transactions: decided at first use (create_tables).
        self._transactions = ops.Transactions()
        #: The pymongo ``Database`` (sync or async) kern's collections live in.
        self.database = checked[name]
        #: Logical name (``"runs"``) -> the pymongo collection (``<prefix>runs``).
        self.collections: Mapping[str, Any] = {
            table: self.database[f"{collection_prefix}{table}"] for table in TABLES
        }
        self._ready = False
        self._closed = False

    def storage_target(self) -> str:
        """The server and database, as ``mongodb://[user@]host[:port][,…]/database``: no
        password and no URL options (they may hold secrets)."""
        return self._target

    def _after_setup(self) -> None:
        self._transactions.enabled = transactions_supported(self.client)

    def _check_open(self) -> None:
        if self._closed:
            raise KernError(f"{self!r} is closed: create a new one to keep using the database.")

    def __repr__(self) -> str:
        # The URL is not shown: it may hold a password.
        return (
            f"{type(self).__name__}(database={self.database_name!r}, "
            f"collection_prefix={self.collection_prefix!r})"
        )


#: Contract methods that only run the ``ops`` function of the same name, with the call's
#: arguments, through the class's ``_do``.
ONE_OP_METHODS = (
    "forget_user",
    "get_session",
    "upsert_session",
    "list_sessions",
    "delete_session",
    "get_run",
    "get_last_runs",
    "update_run",
    "upsert_memory",
    "get_memory",
    "list_memories",
    "search_memories",
    "delete_memory",
    "upsert_learning",
    "get_learning",
    "query_learnings",
    "search_learnings",
    "delete_learning",
)


def _one_op_method(name: str, *, is_async: bool) -> Callable[..., Any]:
    """The method ``name`` of ``ONE_OP_METHODS``, for ``MongoDb`` or (``is_async``) for
    ``AsyncMongoDb``, showing the contract's (``BaseDb.<name>``) signature and docstring."""
    contract = getattr(BaseDb, name)
    signature = inspect.signature(contract)
    operation = getattr(ops, name)

    def op_for(db: _Target, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Op[Any]:
        # The contract's signature checks the call and gives the defaults (``ops`` has none).
        call = signature.bind(db, *args, **kwargs)
        call.apply_defaults()
        del call.arguments["self"]
        return operation(**call.arguments)

    if is_async:

        async def method(self: AsyncMongoDb, *args: Any, **kwargs: Any) -> Any:
            return await self._do(op_for(self, args, kwargs))

    else:

        def method(self: MongoDb, *args: Any, **kwargs: Any) -> Any:
            return self._do(op_for(self, args, kwargs))

    method.__name__ = name
    method.__doc__ = contract.__doc__
    method.__signature__ = signature  # type: ignore[attr-defined]
    return method


def _with_one_op_methods(cls: type[T]) -> type[T]:
    """Class decorator: adds the ``ONE_OP_METHODS`` to ``MongoDb`` or ``AsyncMongoDb``."""
    for name in ONE_OP_METHODS:
        method = _one_op_method(name, is_async=issubclass(cls, AsyncBaseDb))
        method.__qualname__ = f"{cls.__name__}.{name}"
        setattr(cls, name, method)
    abc.update_abstractmethods(cls)
    return cls


@_with_one_op_methods
class MongoDb(_Target, BaseDb):
    """kern's storage in a MongoDB database, through pymongo's ``MongoClient``.

    Give exactly one of ``db_url`` (``mongodb://[user:pass@]host[:port]/[database]?…`` or
    ``mongodb+srv://…``) or ``client`` (a ``pymongo.MongoClient`` of yours, which ``close()``
    leaves open). The database is ``database=`` if given, else the one the URL names, else
    ``"kern"``; collections are ``<collection_prefix>sessions``, ``…runs`` and so on.
    Collections and indexes are created on first use. The object is safe to share between
    threads. The contract methods not written here are ``ONE_OP_METHODS``.
    """

    def __init__(
        self,
        db_url: str | None = None,
        *,
        client: MongoClient[Any] | None = None,
        database: str | None = None,
        collection_prefix: str = config.DEFAULT_PREFIX,
    ) -> None:
        self._connect(db_url, client, database, collection_prefix, is_async=False)
        self._ready_lock = threading.Lock()
        self._append_locks = KeyedLocks()

    def _do(self, op: Op[T]) -> T:
        if not self._ready:
            self.create_tables()
        return run(op, self.collections)

    def create_tables(self) -> None:
        self._check_open()
        with self._ready_lock:
            if not self._ready:
                run(ops.create_tables(), self.collections)
                self._after_setup()
                self._ready = True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready = False
        if self._owns_client:
            self.client.close()

    def append_run(self, run: Run) -> Run:
        with self._append_locks.hold(run.session_id):
            return self._do(ops.append_run(run))

    def commit_turn(
        self, run: Run, session: Session, *, expected_version: int | None
    ) -> tuple[Run, Session]:
        """``BaseDb.commit_turn``: in a transaction on a replica set or sharded cluster,
        else by the pending-commit protocol of ``kern.db.mongo.ops``."""
        with self._append_locks.hold(session.session_id):
            return self._do(ops.commit_turn(run, session, expected_version, self._transactions))


@_with_one_op_methods
class AsyncMongoDb(_Target, AsyncBaseDb):
    """The async twin of ``MongoDb``, on pymongo's own ``AsyncMongoClient`` (not Motor).

    Same arguments; ``client`` must be a ``pymongo.AsyncMongoClient``. Use one object per
    event loop (the client belongs to the loop that first used it).
    """

    def __init__(
        self,
        db_url: str | None = None,
        *,
        client: AsyncMongoClient[Any] | None = None,
        database: str | None = None,
        collection_prefix: str = config.DEFAULT_PREFIX,
    ) -> None:
        self._connect(db_url, client, database, collection_prefix, is_async=True)
        self._ready_lock = asyncio.Lock()
        self._append_locks = AsyncKeyedLocks()

    async def _do(self, op: Op[T]) -> T:
        if not self._ready:
            await self.create_tables()
        return await arun(op, self.collections)

    async def create_tables(self) -> None:
        self._check_open()
        async with self._ready_lock:
            if not self._ready:
                await arun(ops.create_tables(), self.collections)
                self._after_setup()
                self._ready = True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready = False
        if self._owns_client:
            await self.client.close()

    async def append_run(self, run: Run) -> Run:
        async with self._append_locks.hold(run.session_id):
            return await self._do(ops.append_run(run))

    async def commit_turn(
        self, run: Run, session: Session, *, expected_version: int | None
    ) -> tuple[Run, Session]:
        """The async ``MongoDb.commit_turn``."""
        async with self._append_locks.hold(session.session_id):
            return await self._do(
                ops.commit_turn(run, session, expected_version, self._transactions)
            )


__all__ = ["AsyncMongoDb", "MongoDb"]
