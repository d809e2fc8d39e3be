"""``RedisDb`` and ``AsyncRedisDb``: the storage contract on Redis, standalone or Cluster.

Both classes hand the same plans (``kern.db.redis.sessions``, ``runs``, ``memories``,
``learnings``, ``forget``) to a runner: blocking for ``RedisDb``, awaited for
``AsyncRedisDb``. The key layout is described in ``kern.db.redis.keys`` and
docs/backends/redis.md.

Each operation is written once, as ``_RedisCommon._plan_<name>``: it takes the arguments of
the public method ``<name>`` and returns the plan. ``@_runs_plans`` gives each class that
public method, running the plan blocking or awaited. To add an operation, write its
``_plan_<name>``; both classes get ``<name>``. Construction is shared too; each class
writes only what differs: running a plan (``_run``), ``create_tables`` and ``close``.
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar, get_args

from kern.db.base import AsyncBaseDb, BaseDb
from kern.db.redis import docs, forget, learnings, memories, runs, schema, sessions, turns
from kern.db.redis.client import Connection, connect
from kern.db.redis.indexes import Ctx
from kern.db.redis.keys import DEFAULT_PREFIX, Keys
from kern.db.redis.plans import UNAVAILABLE, AsyncRunner, Plan, SyncRunner
from kern.errors import ConfigurationError, KernError
from kern.records import (
    Learning,
    LearningStatus,
    Memory,
    Run,
    RunStatus,
    ScoredLearning,
    ScoredMemory,
    Session,
    SessionType,
)

T = TypeVar("T")
C = TypeVar("C", bound=type)
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
    """Construction and the plans, shared by the sync and async classes."""

    backend_name = "redis"
    #: redis-py's "cannot reach the server" errors (``kern.db.redis.plans.UNAVAILABLE``):
    #: raised to the caller as ``StorageUnavailableError``, the driver's error chained.
    unavailable_errors: ClassVar[tuple[type[BaseException], ...]] = UNAVAILABLE
    is_async: ClassVar[bool]
    connection: Connection
    _runner: Any  # SyncRunner or AsyncRunner
    _ready_lock: Any  # threading.Lock or asyncio.Lock

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
        runner = AsyncRunner if want_async else SyncRunner
        self._runner = runner(
            self.connection.client, cluster=self.connection.cluster, limit=self.max_connections
        )
        # create_tables() runs once. In the async class the lock also keeps concurrent first
        # commands on a fresh asyncio RedisCluster from racing inside redis-py while it
        # connects (seen with redis-py 8.1).
        self._ready_lock = asyncio.Lock() if want_async else threading.Lock()
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

    # -- the plans, one per public method (see the module docstring) ---------------------
    # A docstring here is the public method's; without one it is the contract's (BaseDb).
    def _plan_schema_versions(self) -> Plan[dict[str, int]]:
        """The recorded version of each logical table's key layout."""
        return schema.read_versions(self.ctx)

    def _plan_forget_user(self, user_id: str) -> Plan[dict[str, int]]:
        return forget.forget_user(self.ctx, self._memories, self._learnings, user_id)

    # -- sessions -----------------------------------------------------------------------
    def _plan_get_session(self, session_id: str) -> Plan[Session | None]:
        return sessions.get_session(self.ctx, session_id)

    def _plan_upsert_session(
        self, session: Session, *, expected_version: int | None
    ) -> Plan[Session]:
        return sessions.upsert_session(self.ctx, session, expected_version)

    def _plan_list_sessions(
        self,
        *,
        user_id: str | None = None,
        component_id: str | None = None,
        session_type: SessionType | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> Plan[list[Session]]:
        return sessions.list_sessions(
            self.ctx,
            user_id=user_id,
            component_id=component_id,
            session_type=session_type,
            limit=limit,
            offset=offset,
        )

    def _plan_delete_session(self, session_id: str) -> Plan[bool]:
        return sessions.delete_session(self.ctx, session_id)

    # -- runs ---------------------------------------------------------------------------
    def _plan_commit_turn(
        self, run: Run, session: Session, *, expected_version: int | None
    ) -> Plan[tuple[Run, Session]]:
        return turns.commit_turn(self.ctx, run, session, expected_version)

    def _plan_append_run(self, run: Run) -> Plan[Run]:
        return runs.append_run(self.ctx, run)

    def _plan_get_run(self, run_id: str) -> Plan[Run | None]:
        return runs.get_run(self.ctx, run_id)

    def _plan_get_last_runs(
        self,
        session_id: str,
        limit: int,
        *,
        before_seq: int | None = None,
        top_level_only: bool = False,
        status: RunStatus | None = None,
    ) -> Plan[list[Run]]:
        return runs.get_last_runs(
            self.ctx,
            session_id,
            limit,
            before_seq=before_seq,
            top_level_only=top_level_only,
            status=status,
        )

    def _plan_update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        output: object = None,
        messages: Sequence[object] | None = None,
        metrics: dict[str, object] | None = None,
    ) -> Plan[Run]:
        return runs.update_run(
            self.ctx, run_id, status=status, output=output, messages=messages, metrics=metrics
        )

    # -- memories -----------------------------------------------------------------------
    def _plan_upsert_memory(self, memory: Memory) -> Plan[Memory]:
        return docs.upsert(self.ctx, self._memories, memory)

    def _plan_get_memory(self, memory_id: str) -> Plan[Memory | None]:
        return docs.get(self.ctx, self._memories, memory_id)

    def _plan_list_memories(
        self, user_id: str, *, agent_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> Plan[list[Memory]]:
        return memories.list_memories(
            self.ctx, self._memories, user_id, agent_id=agent_id, limit=limit, offset=offset
        )

    def _plan_search_memories(
        self, user_id: str, query: str, *, agent_id: str | None = None, limit: int = 5
    ) -> Plan[list[ScoredMemory]]:
        return memories.search_memories(
            self.ctx, self._memories, user_id, query, agent_id=agent_id, limit=limit
        )

    def _plan_recall_memories(
        self,
        user_id: str,
        query: str,
        *,
        agent_id: str | None = None,
        limit: int = 5,
        recent: int = 3,
    ) -> Plan[tuple[list[ScoredMemory], list[Memory]]]:
        """What a turn's recall reads of a user's memories: up to ``limit`` ranked for
        ``query`` (none if it is empty) and the ``recent`` newest, their commands pipelined
        together. Beyond the contract: for ``kern.learn.stores.OneCallUserMemoryStore``."""
        return memories.recall_memories(
            self.ctx, self._memories, user_id, query,
            agent_id=agent_id, limit=limit, recent=recent,
        )  # fmt: skip

    def _plan_delete_memory(self, memory_id: str) -> Plan[bool]:
        return docs.delete(self.ctx, self._memories, memory_id)

    # -- learnings ----------------------------------------------------------------------
    def _plan_upsert_learning(self, learning: Learning) -> Plan[Learning]:
        return docs.upsert(self.ctx, self._learnings, learning)

    def _plan_get_learning(self, learning_id: str) -> Plan[Learning | None]:
        return docs.get(self.ctx, self._learnings, learning_id)

    def _plan_query_learnings(
        self,
        *,
        kind: str | None = None,
        namespace: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        entity_id: str | None = None,
        status: LearningStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Plan[list[Learning]]:
        filters = {
            "kind": kind,
            "namespace": namespace,
            "user_id": user_id,
            "session_id": session_id,
            "entity_id": entity_id,
        }
        return learnings.query_learnings(
            self.ctx, self._learnings, filters=filters, status=status, limit=limit, offset=offset
        )

    def _plan_search_learnings(
        self,
        query: str,
        *,
        kind: str | None = None,
        namespace: str | None = None,
        user_id: str | None = None,
        status: LearningStatus | None = LearningStatus.ACTIVE,
        limit: int = 5,
    ) -> Plan[list[ScoredLearning]]:
        return learnings.search_learnings(
            self.ctx,
            self._learnings,
            query,
            kind=kind,
            namespace=namespace,
            user_id=user_id,
            status=status,
            limit=limit,
        )

    def _plan_delete_learning(self, learning_id: str) -> Plan[bool]:
        return docs.delete(self.ctx, self._learnings, learning_id)


#: The public methods made from ``_plan_<name>``, in the order written above.
_PLANNED = tuple(
    name.removeprefix("_plan_") for name in vars(_RedisCommon) if name.startswith("_plan_")
)


def _plan_runner(name: str, *, is_async: bool) -> Callable[..., Any]:
    """The public method ``name``: runs the plan ``_plan_<name>`` builds from its arguments,
    blocking or awaited. It shows the builder's parameters, the plan's result type, and the
    builder's docstring (else the contract's)."""
    build = getattr(_RedisCommon, f"_plan_{name}")
    method: Callable[..., Any]
    if is_async:

        async def method(self: AsyncRedisDb, *args: Any, **kwargs: Any) -> Any:
            return await self._run(build(self, *args, **kwargs))

    else:

        def method(self: RedisDb, *args: Any, **kwargs: Any) -> Any:
            return self._run(build(self, *args, **kwargs))

    signature = inspect.signature(build, eval_str=True)
    result = get_args(signature.return_annotation)[-1]  # Plan[X] is Generator[..., ..., X]
    method.__signature__ = signature.replace(return_annotation=result)  # type: ignore[attr-defined]
    method.__name__ = name
    method.__doc__ = build.__doc__ or getattr(BaseDb, name).__doc__
    return method


def _runs_plans(cls: C) -> C:
    """Class decorator: gives ``cls`` each ``_PLANNED`` method, awaited if ``cls.is_async``."""
    for name in _PLANNED:
        method = _plan_runner(name, is_async=cls.is_async)
        method.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, method)
    abc.update_abstractmethods(cls)
    return cls


@_runs_plans
class RedisDb(_RedisCommon, BaseDb):
    """kern's storage in Redis (redis-py), standalone or Redis Cluster.

    Give one of ``db_url`` (``redis://host:6379/0``, ``rediss://…``, ``unix://…``; add
    ``?cluster=true`` for a cluster) or ``client`` (a ``redis.Redis`` or
    ``redis.cluster.RedisCluster`` of yours; closing the db leaves it open). ``cluster=True``
    makes a cluster client from ``db_url``. ``key_prefix`` starts every key (``kern:``);
    ``session_ttl`` (seconds) makes sessions expire that long after their last write.
    ``max_connections`` bounds the calls on the wire at once (and the pool of a client
    built from ``db_url``): more threads than that wait for a free one.

    Beyond the contract: ``schema_versions()`` and ``recall_memories(...)``.
    """

    def _run(self, plan: Plan[T]) -> T:
        if not self._ready:
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


@_runs_plans
class AsyncRedisDb(_RedisCommon, AsyncBaseDb):
    """The async twin of ``RedisDb`` on ``redis.asyncio``: same arguments and behaviour.

    ``client`` is a ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``.
    """

    async def _run(self, plan: Plan[T]) -> T:
        if not self._ready:
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
