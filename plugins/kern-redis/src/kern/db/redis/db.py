"""``RedisDb`` and ``AsyncRedisDb``: the storage contract on Redis, standalone or Cluster.

Both classes hand the same plans (``kern.db.redis.sessions``, ``runs``, ``memories``,
``learnings``, ``forget``) to a runner: blocking for ``RedisDb``, awaited for
``AsyncRedisDb``. The key layout is described in ``kern.db.redis.keys`` and
docs/backends/redis.md.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any, TypeVar

from kern.db.base import AsyncBaseDb, BaseDb
from kern.db.redis import docs, forget, learnings, memories, runs, schema, sessions
from kern.db.redis.client import Connection, connect
from kern.db.redis.indexes import Ctx
from kern.db.redis.keys import DEFAULT_PREFIX, Keys
from kern.db.redis.plans import AsyncRunner, Plan, SyncRunner
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
    connection: Connection

    def _setup(
        self,
        db_url: str | None,
        client: Any,
        key_prefix: str,
        session_ttl: int | None,
        cluster: bool | None,
        max_connections: int,
        *,
        want_async: bool,
    ) -> None:
        cls = type(self).__name__
        keys = Keys(key_prefix)
        ttl = _check_ttl(session_ttl)
        self.max_connections = _positive("max_connections", max_connections)
        self.connection = connect(
            db_url,
            client,
            cluster=cluster,
            want_async=want_async,
            cls=cls,
            max_connections=self.max_connections,
        )
        self.ctx = Ctx(keys, ttl, self.connection.cluster)
        self._memories = memories.spec(self.ctx)
        self._learnings = learnings.spec(self.ctx)
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

    def __repr__(self) -> str:
        kind = ", cluster=True" if self.cluster else ""
        return (
            f"{type(self).__name__}({self.connection.where!r}, "
            f"key_prefix={self.key_prefix!r}{kind})"
        )

    def _closed_error(self) -> KernError:
        return KernError(f"{self!r} is closed: create a new one to keep using the database.")

    # -- the plans, by contract method ---------------------------------------------------
    def _plan_forget(self, user_id: str) -> Plan[dict[str, int]]:
        return forget.forget_user(self.ctx, self._memories, self._learnings, user_id)

    def _plan_list_sessions(self, **kw: Any) -> Plan[list[Session]]:
        return sessions.list_sessions(self.ctx, **kw)

    def _plan_query_learnings(
        self,
        kind: str | None,
        namespace: str | None,
        user_id: str | None,
        session_id: str | None,
        entity_id: str | None,
        status: LearningStatus | None,
        limit: int,
        offset: int,
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


class RedisDb(_RedisCommon, BaseDb):
    """kern's storage in Redis (redis-py), standalone or Redis Cluster.

    Give one of ``db_url`` (``redis://host:6379/0``, ``rediss://…``, ``unix://…``; add
    ``?cluster=true`` for a cluster) or ``client`` (a ``redis.Redis`` or
    ``redis.cluster.RedisCluster`` of yours; closing the db leaves it open). ``cluster=True``
    makes a cluster client from ``db_url``. ``key_prefix`` starts every key (``kern:``);
    ``session_ttl`` (seconds) makes sessions expire that long after their last write.
    ``max_connections`` bounds the calls on the wire at once (and the pool of a client
    built from ``db_url``): more threads than that wait for a free one.
    """

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
        self._setup(
            db_url, client, key_prefix, session_ttl, cluster, max_connections, want_async=False
        )
        self._runner = SyncRunner(
            self.connection.client, cluster=self.connection.cluster, limit=self.max_connections
        )
        self._ready_lock = threading.Lock()

    def _run(self, plan: Plan[T]) -> T:
        if not self._ready:
            self.create_tables()
        return self._runner.run(plan)

    # -- lifecycle ----------------------------------------------------------------------
    def create_tables(self) -> None:
        if self._closed:
            raise self._closed_error()
        with self._ready_lock:
            while not self._ready:
                if self._runner.run(schema.create_tables(self.ctx)) >= 0:
                    self._ready = True
                else:
                    time.sleep(_MIGRATION_POLL)  # another process is migrating

    def schema_versions(self) -> dict[str, int]:
        """The recorded version of each logical table's key layout."""
        return self._run(schema.read_versions(self.ctx))

    def forget_user(self, user_id: str) -> dict[str, int]:
        return self._run(self._plan_forget(user_id))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready = False  # the next use goes through create_tables(), which refuses
        if self.connection.owned:
            self.connection.client.close()

    # -- sessions -----------------------------------------------------------------------
    def get_session(self, session_id: str) -> Session | None:
        return self._run(sessions.get_session(self.ctx, session_id))

    def upsert_session(self, session: Session, *, expected_version: int | None) -> Session:
        return self._run(sessions.upsert_session(self.ctx, session, expected_version))

    def list_sessions(
        self,
        *,
        user_id: str | None = None,
        component_id: str | None = None,
        session_type: SessionType | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Session]:
        return self._run(
            self._plan_list_sessions(
                user_id=user_id,
                component_id=component_id,
                session_type=session_type,
                limit=limit,
                offset=offset,
            )
        )

    def delete_session(self, session_id: str) -> bool:
        return self._run(sessions.delete_session(self.ctx, session_id))

    # -- runs ---------------------------------------------------------------------------
    def append_run(self, run: Run) -> Run:
        return self._run(runs.append_run(self.ctx, run))

    def get_run(self, run_id: str) -> Run | None:
        return self._run(runs.get_run(self.ctx, run_id))

    def get_last_runs(
        self,
        session_id: str,
        limit: int,
        *,
        before_seq: int | None = None,
        top_level_only: bool = False,
        status: RunStatus | None = None,
    ) -> list[Run]:
        return self._run(
            runs.get_last_runs(
                self.ctx,
                session_id,
                limit,
                before_seq=before_seq,
                top_level_only=top_level_only,
                status=status,
            )
        )

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        output: object = None,
        messages: Sequence[object] | None = None,
        metrics: dict[str, object] | None = None,
    ) -> Run:
        return self._run(
            runs.update_run(
                self.ctx, run_id, status=status, output=output, messages=messages, metrics=metrics
            )
        )

    # -- memories -----------------------------------------------------------------------
    def upsert_memory(self, memory: Memory) -> Memory:
        return self._run(docs.upsert(self.ctx, self._memories, memory))

    def get_memory(self, memory_id: str) -> Memory | None:
        return self._run(docs.get(self.ctx, self._memories, memory_id))

    def list_memories(
        self, user_id: str, *, agent_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Memory]:
        return self._run(
            memories.list_memories(
                self.ctx, self._memories, user_id, agent_id=agent_id, limit=limit, offset=offset
            )
        )

    def search_memories(
        self, user_id: str, query: str, *, agent_id: str | None = None, limit: int = 5
    ) -> list[ScoredMemory]:
        return self._run(
            memories.search_memories(
                self.ctx, self._memories, user_id, query, agent_id=agent_id, limit=limit
            )
        )

    def recall_memories(
        self,
        user_id: str,
        query: str,
        *,
        agent_id: str | None = None,
        limit: int = 5,
        recent: int = 3,
    ) -> tuple[list[ScoredMemory], list[Memory]]:
        """What a turn's recall reads of a user's memories: up to ``limit`` ranked for
        ``query`` (none if it is empty) and the ``recent`` newest, their commands pipelined
        together. Beyond the contract: for ``kern.learn.stores.OneCallUserMemoryStore``."""
        return self._run(
            memories.recall_memories(
                self.ctx, self._memories, user_id, query,
                agent_id=agent_id, limit=limit, recent=recent,
            )
        )  # fmt: skip

    def delete_memory(self, memory_id: str) -> bool:
        return self._run(docs.delete(self.ctx, self._memories, memory_id))

    # -- learnings ----------------------------------------------------------------------
    def upsert_learning(self, learning: Learning) -> Learning:
        return self._run(docs.upsert(self.ctx, self._learnings, learning))

    def get_learning(self, learning_id: str) -> Learning | None:
        return self._run(docs.get(self.ctx, self._learnings, learning_id))

    def query_learnings(
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
    ) -> list[Learning]:
        return self._run(
            self._plan_query_learnings(
                kind, namespace, user_id, session_id, entity_id, status, limit, offset
            )
        )

    def search_learnings(
        self,
        query: str,
        *,
        kind: str | None = None,
        namespace: str | None = None,
        user_id: str | None = None,
        status: LearningStatus | None = LearningStatus.ACTIVE,
        limit: int = 5,
    ) -> list[ScoredLearning]:
        return self._run(
            learnings.search_learnings(
                self.ctx,
                self._learnings,
                query,
                kind=kind,
                namespace=namespace,
                user_id=user_id,
                status=status,
                limit=limit,
            )
        )

    def delete_learning(self, learning_id: str) -> bool:
        return self._run(docs.delete(self.ctx, self._learnings, learning_id))


class AsyncRedisDb(_RedisCommon, AsyncBaseDb):
    """The async twin of ``RedisDb`` on ``redis.asyncio``: same arguments and behaviour.

    ``client`` is a ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``.
    """

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
        self._setup(
            db_url, client, key_prefix, session_ttl, cluster, max_connections, want_async=True
        )
        self._runner = AsyncRunner(
            self.connection.client, cluster=self.connection.cluster, limit=self.max_connections
        )
        # First use runs once: concurrent first commands on a fresh asyncio RedisCluster
        # race inside redis-py while it connects (seen with redis-py 8.1).
        self._ready_lock = asyncio.Lock()

    async def _run(self, plan: Plan[T]) -> T:
        if not self._ready:
            await self.create_tables()
        return await self._runner.run(plan)

    # -- lifecycle ----------------------------------------------------------------------
    async def create_tables(self) -> None:
        if self._closed:
            raise self._closed_error()
        async with self._ready_lock:
            while not self._ready:
                if await self._runner.run(schema.create_tables(self.ctx)) >= 0:
                    self._ready = True
                else:
                    await asyncio.sleep(_MIGRATION_POLL)

    async def schema_versions(self) -> dict[str, int]:
        return await self._run(schema.read_versions(self.ctx))

    async def forget_user(self, user_id: str) -> dict[str, int]:
        return await self._run(self._plan_forget(user_id))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready = False
        if self.connection.owned:
            await self.connection.client.aclose()

    # -- sessions -----------------------------------------------------------------------
    async def get_session(self, session_id: str) -> Session | None:
        return await self._run(sessions.get_session(self.ctx, session_id))

    async def upsert_session(self, session: Session, *, expected_version: int | None) -> Session:
        return await self._run(sessions.upsert_session(self.ctx, session, expected_version))

    async def list_sessions(
        self,
        *,
        user_id: str | None = None,
        component_id: str | None = None,
        session_type: SessionType | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Session]:
        return await self._run(
            self._plan_list_sessions(
                user_id=user_id,
                component_id=component_id,
                session_type=session_type,
                limit=limit,
                offset=offset,
            )
        )

    async def delete_session(self, session_id: str) -> bool:
        return await self._run(sessions.delete_session(self.ctx, session_id))

    # -- runs ---------------------------------------------------------------------------
    async def append_run(self, run: Run) -> Run:
        return await self._run(runs.append_run(self.ctx, run))

    async def get_run(self, run_id: str) -> Run | None:
        return await self._run(runs.get_run(self.ctx, run_id))

    async def get_last_runs(
        self,
        session_id: str,
        limit: int,
        *,
        before_seq: int | None = None,
        top_level_only: bool = False,
        status: RunStatus | None = None,
    ) -> list[Run]:
        return await self._run(
            runs.get_last_runs(
                self.ctx,
                session_id,
                limit,
                before_seq=before_seq,
                top_level_only=top_level_only,
                status=status,
            )
        )

    async def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        output: object = None,
        messages: Sequence[object] | None = None,
        metrics: dict[str, object] | None = None,
    ) -> Run:
        return await self._run(
            runs.update_run(
                self.ctx, run_id, status=status, output=output, messages=messages, metrics=metrics
            )
        )

    # -- memories -----------------------------------------------------------------------
    async def upsert_memory(self, memory: Memory) -> Memory:
        return await self._run(docs.upsert(self.ctx, self._memories, memory))

    async def get_memory(self, memory_id: str) -> Memory | None:
        return await self._run(docs.get(self.ctx, self._memories, memory_id))

    async def list_memories(
        self, user_id: str, *, agent_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Memory]:
        return await self._run(
            memories.list_memories(
                self.ctx, self._memories, user_id, agent_id=agent_id, limit=limit, offset=offset
            )
        )

    async def search_memories(
        self, user_id: str, query: str, *, agent_id: str | None = None, limit: int = 5
    ) -> list[ScoredMemory]:
        return await self._run(
            memories.search_memories(
                self.ctx, self._memories, user_id, query, agent_id=agent_id, limit=limit
            )
        )

    async def recall_memories(
        self,
        user_id: str,
        query: str,
        *,
        agent_id: str | None = None,
        limit: int = 5,
        recent: int = 3,
    ) -> tuple[list[ScoredMemory], list[Memory]]:
        """See ``RedisDb.recall_memories``."""
        return await self._run(
            memories.recall_memories(
                self.ctx, self._memories, user_id, query,
                agent_id=agent_id, limit=limit, recent=recent,
            )
        )  # fmt: skip

    async def delete_memory(self, memory_id: str) -> bool:
        return await self._run(docs.delete(self.ctx, self._memories, memory_id))

    # -- learnings ----------------------------------------------------------------------
    async def upsert_learning(self, learning: Learning) -> Learning:
        return await self._run(docs.upsert(self.ctx, self._learnings, learning))

    async def get_learning(self, learning_id: str) -> Learning | None:
        return await self._run(docs.get(self.ctx, self._learnings, learning_id))

    async def query_learnings(
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
    ) -> list[Learning]:
        return await self._run(
            self._plan_query_learnings(
                kind, namespace, user_id, session_id, entity_id, status, limit, offset
            )
        )

    async def search_learnings(
        self,
        query: str,
        *,
        kind: str | None = None,
        namespace: str | None = None,
        user_id: str | None = None,
        status: LearningStatus | None = LearningStatus.ACTIVE,
        limit: int = 5,
    ) -> list[ScoredLearning]:
        return await self._run(
            learnings.search_learnings(
                self.ctx,
                self._learnings,
                query,
                kind=kind,
                namespace=namespace,
                user_id=user_id,
                status=status,
                limit=limit,
            )
        )

    async def delete_learning(self, learning_id: str) -> bool:
        return await self._run(docs.delete(self.ctx, self._learnings, learning_id))


__all__ = ["AsyncRedisDb", "RedisDb"]
