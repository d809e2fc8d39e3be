"""``RedisDb`` and ``AsyncRedisDb``: the storage contract on Redis, standalone or Cluster.

Each operation is written once, as a plan (``kern.db.redis.contract.RedisPlans``, one
builder per contract method); ``PlannedDb`` and ``AsyncPlannedDb`` (``kern.db.planned``) give
each class the contract's methods as "run the plan of the same name", and a runner
(``kern.db.redis.plans``) runs it: blocking for ``RedisDb``, awaited for ``AsyncRedisDb``.
Construction is shared too; each class writes only what differs: running a plan (``_run``,
which creates the tables on first use), ``create_tables``, ``close`` and ``schema_versions``.
The key layout is described in ``kern.db.redis.keys`` and docs/backends/redis.md.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, ClassVar, TypeVar

from kern.db.planned import AsyncPlannedDb, ContractPlans, PlannedDb
from kern.db.redis import learnings, memories, schema
from kern.db.redis.client import Connection, connect
from kern.db.redis.contract import RedisPlans
from kern.db.redis.indexes import Ctx
from kern.db.redis.keys import DEFAULT_PREFIX, Keys
from kern.db.redis.plans import UNAVAILABLE, AsyncRunner, Plan, Step, SyncRunner
from kern.errors import ConfigurationError, KernError

T = TypeVar("T")
#: Seconds between checks while another process migrates the schema.
_MIGRATION_POLL = 0.05


#: Calls a db keeps on the wire at once, by default (and its own pool's size).
DEFAULT_MAX_CONNECTIONS = 50


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"{name} must be a whole number above 0, got {value!r}.")
    return value


def _check_ttl(session_ttl: int | None) -> int:
    if session_ttl is None:
        return 0
    if isinstance(session_ttl, bool) or not isinstance(session_ttl, int) or session_ttl <= 0:
        raise ConfigurationError(
            f"session_ttl must be a whole number of seconds above 0 (or None: sessions never "
            f"expire), got {session_ttl!r}."
        )
    return session_ttl


class _RedisCommon:
    """Construction, shared by the sync and async classes."""

    backend_name = "redis"
    #: redis-py's "cannot reach the server" errors (``kern.db.redis.plans.UNAVAILABLE``):
    #: raised to the caller as ``StorageUnavailableError``, the driver's error chained.
    unavailable_errors: ClassVar[tuple[type[BaseException], ...]] = UNAVAILABLE
    is_async: ClassVar[bool]
    connection: Connection
    plans: ContractPlans[Step]  # a RedisPlans, typed as PlannedDb's (or the bases disagree)
    _plans: RedisPlans  # the same object, as itself
    _runner: SyncRunner | AsyncRunner  # each class narrows it to its own
    _ready_lock: threading.Lock | asyncio.Lock

    def __init__(
        self,
        db_url: str | None = None,
        *,
        client: Any = None,
        key_prefix: str = DEFAULT_PREFIX,
        session_ttl: int | None = None,
        cluster: bool | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        want_async = self.is_async  # from BaseDb or AsyncBaseDb
        keys = Keys(key_prefix)
        ttl = _check_ttl(session_ttl)
        self.max_connections = _positive("max_connections", max_connections)
        self.connection = connect(
            db_url,
            client,
            cluster=cluster,
            want_async=want_async,
            cls=type(self).__name__,
            max_connections=self.max_connections,
        )
        self.ctx = Ctx(keys, ttl, self.connection.cluster)
        self._memories = memories.spec(self.ctx)
        self._learnings = learnings.spec(self.ctx)
        self._plans = RedisPlans(
            self.ctx, self._memories, self._learnings, target=self.connection.where
        )
        self.plans = self._plans
        # create_tables() runs once. In the async class the lock also keeps concurrent first
        # commands on a fresh asyncio RedisCluster from racing inside redis-py while it
        # connects (seen with redis-py 8.1).
        limit = self.max_connections
        if want_async:
            self._runner = AsyncRunner(self.client, cluster=self.cluster, limit=limit)
            self._ready_lock = asyncio.Lock()
        else:
            self._runner = SyncRunner(self.client, cluster=self.cluster, limit=limit)
            self._ready_lock = threading.Lock()
        self._ready = False
        self._closed = False

    @property
    def client(self) -> Any:
        """The redis-py client (``redis.Redis``, ``RedisCluster``, or their asyncio twins)."""
        return self.connection.client

    @property
    def cluster(self) -> bool:
        return self.connection.cluster

    @property
    def key_prefix(self) -> str:
        return self.ctx.keys.prefix

    @property
    def session_ttl(self) -> int | None:
        return self.ctx.ttl or None

    def storage_target(self) -> str:
        """The server's URL without its password (or the address of the user's client)."""
        return self.connection.where

    def __repr__(self) -> str:
        kind = ", cluster=True" if self.cluster else ""
        return (
            f"{type(self).__name__}({self.connection.where!r}, "
            f"key_prefix={self.key_prefix!r}{kind})"
        )

    def _closed_error(self) -> KernError:
        return KernError(f"{self!r} is closed: create a new one to keep using the database.")

    def _needs_tables(self, plan: Plan[Any]) -> bool:
        """Whether ``create_tables`` runs before ``plan``: on first use, except for plans
        that read the database as it is (``RedisPlans.as_found``: the storage report)."""
        if self._ready:
            return False
        if plan in self._plans.as_found:
            if self._closed:
                raise self._closed_error()
            return False
        return True


class RedisDb(_RedisCommon, PlannedDb[Step]):
    """kern's storage in Redis (redis-py), standalone or Redis Cluster.

    Give one of ``db_url`` (``redis://host:6379/0``, ``rediss://…``, ``unix://…``; add
    ``?cluster=true`` for a cluster) or ``client`` (a ``redis.Redis`` or
    ``redis.cluster.RedisCluster`` of yours; closing the db leaves it open). ``cluster=True``
    makes a cluster client from ``db_url``. ``key_prefix`` starts every key (``kern:``);
    ``session_ttl`` (seconds) makes sessions expire that long after their last write.
    ``max_connections`` bounds the calls on the wire at once (and the pool of a client
    built from ``db_url``): more threads than that wait for a free one.

    Beyond the contract: ``schema_versions()``.
    """

    _runner: SyncRunner
    _ready_lock: threading.Lock

    def schema_versions(self) -> dict[str, int]:
        """The recorded version of each logical table's key layout."""
        return self._run(schema.read_versions(self.ctx))

    def _run(self, plan: Plan[T]) -> T:
        if self._needs_tables(plan):
            self.create_tables()
        return self._runner.run(plan)

    def create_tables(self) -> None:
        if self._closed:
            raise self._closed_error()
        with self._ready_lock:
            while not self._ready:
                if self._runner.run(schema.create_tables(self.ctx)) >= 0:
                    self._ready = True
                else:
                    time.sleep(_MIGRATION_POLL)  # another process is migrating

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready = False  # the next use goes through create_tables(), which refuses
        if self.connection.owned:
            self.connection.client.close()


class AsyncRedisDb(_RedisCommon, AsyncPlannedDb[Step]):
    """The async twin of ``RedisDb`` on ``redis.asyncio``: same arguments and behaviour.

    ``client`` is a ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``.
    """

    _runner: AsyncRunner
    _ready_lock: asyncio.Lock

    async def schema_versions(self) -> dict[str, int]:
        """The recorded version of each logical table's key layout."""
        return await self._run(schema.read_versions(self.ctx))

    async def _run(self, plan: Plan[T]) -> T:
        if self._needs_tables(plan):
            await self.create_tables()
        return await self._runner.run(plan)

    async def create_tables(self) -> None:
        if self._closed:
            raise self._closed_error()
        async with self._ready_lock:
            while not self._ready:
                if await self._runner.run(schema.create_tables(self.ctx)) >= 0:
                    self._ready = True
                else:
                    await asyncio.sleep(_MIGRATION_POLL)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready = False
        if self.connection.owned:
            await self.connection.client.aclose()


__all__ = ["AsyncRedisDb", "RedisDb"]
