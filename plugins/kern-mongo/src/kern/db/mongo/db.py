"""``MongoDb`` (pymongo's ``MongoClient``) and ``AsyncMongoDb`` (pymongo's ``AsyncMongoClient``).

Both are ``kern.db.planned`` dbs: every contract method runs the plan of the same name
(``kern.db.mongo.plans``, over ``kern.db.mongo.ops``) through ``_run``, which performs its
steps with the class's own client (``kern.db.mongo.calls``): the async twin is natively
async, not a thread pool. Each class writes out only what differs: ``_run``, the lifecycle,
the per-session locks of ``append_run`` and ``commit_turn``, and ``storage_report``, which
runs its plan without ``create_tables`` first: it shows the database as it is.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from pymongo import AsyncMongoClient, MongoClient
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
)
from pymongo.server_type import SERVER_TYPE
from pymongo.topology_description import TOPOLOGY_TYPE

from kern.db.base import TABLES
from kern.db.mongo import calls, config, ops
from kern.db.mongo.calls import Step
from kern.db.mongo.locks import AsyncKeyedLocks, KeyedLocks
from kern.db.mongo.plans import MongoPlans
from kern.db.mongo.report import Site
from kern.db.planned import AsyncPlannedDb, Plan, PlannedDb
from kern.db.report import StorageReport
from kern.errors import KernError
from kern.records import Run, Session

R = TypeVar("R")


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
    """What both classes share: the client, the database, the collections and the plans."""

    backend_name: ClassVar[str] = "mongo"
    #: pymongo's "the server cannot be reached" errors (connection refused or lost, no
    #: server selectable in time, a network timeout): the door raises them as
    #: ``StorageUnavailableError``. ``OperationFailure`` (``DuplicateKeyError``...) is not
    #: among them: the server answered.
    unavailable_errors: ClassVar[tuple[type[BaseException], ...]] = (
        ConnectionFailure,
        AutoReconnect,
        ServerSelectionTimeoutError,
        NetworkTimeout,
    )
    #: A refused login is an ``OperationFailure`` (code 18, "Authentication failed."):
    #: the door raises it as ``StorageLoginError``, and any other one as it was.
    login_errors: ClassVar[tuple[type[BaseException], ...]] = (OperationFailure,)

    def _connect(
        self,
        db_url: str | None,
        client: Any,
        database: str | None,
        collection_prefix: str,
        *,
        is_async: bool,
    ) -> MongoPlans:
        """Check the arguments and open (or adopt) the client; the db's plans."""
        cls = type(self).__name__
        config.exactly_one_target(db_url, client, cls=cls)
        self.collection_prefix = config.check_prefix(collection_prefix, cls=cls)
        if client is not None:
            checked = (config.check_async_client if is_async else config.check_sync_client)(
                client, cls=cls
            )
            name = config.choose_database(database, config.client_database(checked), cls=cls)
            self._target = config.client_target(checked, name)
            self._owns_client = False
        else:
            url = config.check_url(db_url, cls=cls)
            name = config.choose_database(database, config.url_database(url), cls=cls)
            factory = AsyncMongoClient if is_async else MongoClient
            checked = config.build_client(factory, url, cls=cls)
            self._target = config.url_target(url, name)
            self._owns_client = True
        self.client: Any = checked
        self.database_name = name
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
        return MongoPlans(
            self._transactions, Site(self.backend_name, self._target, collection_prefix)
        )

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


class MongoDb(_Target, PlannedDb[Step]):
    """kern's storage in a MongoDB database, through pymongo's ``MongoClient``.

    Give exactly one of ``db_url`` (``mongodb://[user:pass@]host[:port]/[database]?…`` or
    ``mongodb+srv://…``) or ``client`` (a ``pymongo.MongoClient`` of yours, which ``close()``
    leaves open). The database is ``database=`` if given, else the one the URL names, else
    ``"kern"``; collections are ``<collection_prefix>sessions``, ``…runs`` and so on.
    Collections and indexes are created on first use. The object is safe to share between
    threads.
    """

    def __init__(
        self,
        db_url: str | None = None,
        *,
        client: MongoClient[Any] | None = None,
        database: str | None = None,
        collection_prefix: str = config.DEFAULT_PREFIX,
    ) -> None:
        self.plans = self._connect(db_url, client, database, collection_prefix, is_async=False)
        self._ready_lock = threading.Lock()
        self._append_locks = KeyedLocks()

    def _run(self, plan: Plan[Step, R]) -> R:
        if not self._ready:
            self.create_tables()
        return calls.run(plan, self.collections)

    def create_tables(self) -> None:
        self._check_open()
        with self._ready_lock:
            if not self._ready:
                calls.run(ops.create_tables(), self.collections)
                self._after_setup()
                self._ready = True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready = False
        if self._owns_client:
            self.client.close()

    def storage_report(self) -> StorageReport:
        """``BaseDb.storage_report``: read-only, so ``create_tables`` is not run first."""
        self._check_open()
        return calls.run(self.plans.storage_report(), self.collections)

    def append_run(self, run: Run) -> Run:
        """``BaseDb.append_run``; the appends of this object to one session take turns."""
        with self._append_locks.hold(run.session_id):
            return self._run(self.plans.append_run(run))

    def commit_turn(
        self, run: Run, session: Session, *, expected_version: int | None
    ) -> tuple[Run, Session]:
        """``BaseDb.commit_turn``: in a transaction on a replica set or sharded cluster,
        else by the pending-commit protocol of ``kern.db.mongo.ops``."""
        with self._append_locks.hold(session.session_id):
            return self._run(
                self.plans.commit_turn(run, session, expected_version=expected_version)
            )


class AsyncMongoDb(_Target, AsyncPlannedDb[Step]):
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
        self.plans = self._connect(db_url, client, database, collection_prefix, is_async=True)
        self._ready_lock = asyncio.Lock()
        self._append_locks = AsyncKeyedLocks()

    async def _run(self, plan: Plan[Step, R]) -> R:
        if not self._ready:
            await self.create_tables()
        return await calls.arun(plan, self.collections)

    async def create_tables(self) -> None:
        self._check_open()
        async with self._ready_lock:
            if not self._ready:
                await calls.arun(ops.create_tables(), self.collections)
                self._after_setup()
                self._ready = True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready = False
        if self._owns_client:
            await self.client.close()

    async def storage_report(self) -> StorageReport:
        """The async ``MongoDb.storage_report``."""
        self._check_open()
        return await calls.arun(self.plans.storage_report(), self.collections)

    async def append_run(self, run: Run) -> Run:
        """The async ``MongoDb.append_run``."""
        async with self._append_locks.hold(run.session_id):
            return await self._run(self.plans.append_run(run))

    async def commit_turn(
        self, run: Run, session: Session, *, expected_version: int | None
    ) -> tuple[Run, Session]:
        """The async ``MongoDb.commit_turn``."""
        async with self._append_locks.hold(session.session_id):
            return await self._run(
                self.plans.commit_turn(run, session, expected_version=expected_version)
            )


__all__ = ["AsyncMongoDb", "MongoDb"]
