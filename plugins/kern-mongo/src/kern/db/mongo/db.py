"""``MongoDb`` (pymongo's ``MongoClient``) and ``AsyncMongoDb`` (pymongo's ``AsyncMongoClient``).

Both run the same operations (``kern.db.mongo.ops``) through their own driver
(``kern.db.mongo.calls``): the async twin is natively async, not a thread pool.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pymongo import AsyncMongoClient, MongoClient

from kern.db.base import TABLES, AsyncBaseDb, BaseDb
from kern.db.mongo import config, ops
from kern.db.mongo.calls import Op, arun, run
from kern.db.mongo.locks import AsyncKeyedLocks, KeyedLocks
from kern.errors import KernError
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


class _Target:
    """What both classes share: the client, the database and the collections."""

    backend_name = "mongo"

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
        #: The pymongo ``Database`` (sync or async) kern's collections live in.
        self.database = checked[name]
        #: Logical name (``"runs"``) -> the pymongo collection (``<prefix>runs``).
        self.collections: Mapping[str, Any] = {
            table: self.database[f"{collection_prefix}{table}"] for table in TABLES
        }
        self._ready = False
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise KernError(f"{self!r} is closed: create a new one to keep using the database.")

    def __repr__(self) -> str:
        # The URL is not shown: it may hold a password.
        return (
            f"{type(self).__name__}(database={self.database_name!r}, "
            f"collection_prefix={self.collection_prefix!r})"
        )


class MongoDb(_Target, BaseDb):
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
        self._connect(db_url, client, database, collection_prefix, is_async=False)
        self._ready_lock = threading.Lock()
        self._append_locks = KeyedLocks()

    def _do(self, op: Op[T]) -> T:
        if not self._ready:
            self.create_tables()
        return run(op, self.collections)

    # -- lifecycle ------------------------------------------------------------------------
    def create_tables(self) -> None:
        self._check_open()
        with self._ready_lock:
            if not self._ready:
                run(ops.create_tables(), self.collections)
                self._ready = True

    def forget_user(self, user_id: str) -> dict[str, int]:
        return self._do(ops.forget_user(user_id))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready = False
        if self._owns_client:
            self.client.close()

    # -- sessions -------------------------------------------------------------------------
    def get_session(self, session_id: str) -> Session | None:
        return self._do(ops.get_session(session_id))

    def upsert_session(self, session: Session, *, expected_version: int | None) -> Session:
        return self._do(ops.upsert_session(session, expected_version))

    def list_sessions(
        self,
        *,
        user_id: str | None = None,
        component_id: str | None = None,
        session_type: SessionType | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Session]:
        return self._do(
            ops.list_sessions(
                user_id=user_id,
                component_id=component_id,
                session_type=session_type,
                limit=limit,
                offset=offset,
            )
        )

    def delete_session(self, session_id: str) -> bool:
        return self._do(ops.delete_session(session_id))

    # -- runs -----------------------------------------------------------------------------
    def append_run(self, run: Run) -> Run:
        with self._append_locks.hold(run.session_id):
            return self._do(ops.append_run(run))

    def get_run(self, run_id: str) -> Run | None:
        return self._do(ops.get_run(run_id))

    def get_last_runs(
        self,
        session_id: str,
        limit: int,
        *,
        before_seq: int | None = None,
        top_level_only: bool = False,
        status: RunStatus | None = None,
    ) -> list[Run]:
        return self._do(
            ops.get_last_runs(
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
        return self._do(
            ops.update_run(run_id, status=status, output=output, messages=messages, metrics=metrics)
        )

    # -- memories -------------------------------------------------------------------------
    def upsert_memory(self, memory: Memory) -> Memory:
        return self._do(ops.upsert_memory(memory))

    def get_memory(self, memory_id: str) -> Memory | None:
        return self._do(ops.get_memory(memory_id))

    def list_memories(
        self,
        user_id: str,
        *,
        agent_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Memory]:
        return self._do(ops.list_memories(user_id, agent_id=agent_id, limit=limit, offset=offset))

    def search_memories(
        self, user_id: str, query: str, *, agent_id: str | None = None, limit: int = 5
    ) -> list[ScoredMemory]:
        return self._do(ops.search_memories(user_id, query, agent_id=agent_id, limit=limit))

    def delete_memory(self, memory_id: str) -> bool:
        return self._do(ops.delete_memory(memory_id))

    # -- learnings ------------------------------------------------------------------------
    def upsert_learning(self, learning: Learning) -> Learning:
        return self._do(ops.upsert_learning(learning))

    def get_learning(self, learning_id: str) -> Learning | None:
        return self._do(ops.get_learning(learning_id))

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
        return self._do(
            ops.query_learnings(
                kind=kind,
                namespace=namespace,
                user_id=user_id,
                session_id=session_id,
                entity_id=entity_id,
                status=status,
                limit=limit,
                offset=offset,
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
        return self._do(
            ops.search_learnings(
                query, kind=kind, namespace=namespace, user_id=user_id, status=status, limit=limit
            )
        )

    def delete_learning(self, learning_id: str) -> bool:
        return self._do(ops.delete_learning(learning_id))


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

    # -- lifecycle ------------------------------------------------------------------------
    async def create_tables(self) -> None:
        self._check_open()
        async with self._ready_lock:
            if not self._ready:
                await arun(ops.create_tables(), self.collections)
                self._ready = True

    async def forget_user(self, user_id: str) -> dict[str, int]:
        return await self._do(ops.forget_user(user_id))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready = False
        if self._owns_client:
            await self.client.close()

    # -- sessions -------------------------------------------------------------------------
    async def get_session(self, session_id: str) -> Session | None:
        return await self._do(ops.get_session(session_id))

    async def upsert_session(self, session: Session, *, expected_version: int | None) -> Session:
        return await self._do(ops.upsert_session(session, expected_version))

    async def list_sessions(
        self,
        *,
        user_id: str | None = None,
        component_id: str | None = None,
        session_type: SessionType | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Session]:
        return await self._do(
            ops.list_sessions(
                user_id=user_id,
                component_id=component_id,
                session_type=session_type,
                limit=limit,
                offset=offset,
            )
        )

    async def delete_session(self, session_id: str) -> bool:
        return await self._do(ops.delete_session(session_id))

    # -- runs -----------------------------------------------------------------------------
    async def append_run(self, run: Run) -> Run:
        async with self._append_locks.hold(run.session_id):
            return await self._do(ops.append_run(run))

    async def get_run(self, run_id: str) -> Run | None:
        return await self._do(ops.get_run(run_id))

    async def get_last_runs(
        self,
        session_id: str,
        limit: int,
        *,
        before_seq: int | None = None,
        top_level_only: bool = False,
        status: RunStatus | None = None,
    ) -> list[Run]:
        return await self._do(
            ops.get_last_runs(
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
        return await self._do(
            ops.update_run(run_id, status=status, output=output, messages=messages, metrics=metrics)
        )

    # -- memories -------------------------------------------------------------------------
    async def upsert_memory(self, memory: Memory) -> Memory:
        return await self._do(ops.upsert_memory(memory))

    async def get_memory(self, memory_id: str) -> Memory | None:
        return await self._do(ops.get_memory(memory_id))

    async def list_memories(
        self,
        user_id: str,
        *,
        agent_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Memory]:
        return await self._do(
            ops.list_memories(user_id, agent_id=agent_id, limit=limit, offset=offset)
        )

    async def search_memories(
        self, user_id: str, query: str, *, agent_id: str | None = None, limit: int = 5
    ) -> list[ScoredMemory]:
        return await self._do(ops.search_memories(user_id, query, agent_id=agent_id, limit=limit))

    async def delete_memory(self, memory_id: str) -> bool:
        return await self._do(ops.delete_memory(memory_id))

    # -- learnings ------------------------------------------------------------------------
    async def upsert_learning(self, learning: Learning) -> Learning:
        return await self._do(ops.upsert_learning(learning))

    async def get_learning(self, learning_id: str) -> Learning | None:
        return await self._do(ops.get_learning(learning_id))

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
        return await self._do(
            ops.query_learnings(
                kind=kind,
                namespace=namespace,
                user_id=user_id,
                session_id=session_id,
                entity_id=entity_id,
                status=status,
                limit=limit,
                offset=offset,
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
        return await self._do(
            ops.search_learnings(
                query, kind=kind, namespace=namespace, user_id=user_id, status=status, limit=limit
            )
        )

    async def delete_learning(self, learning_id: str) -> bool:
        return await self._do(ops.delete_learning(learning_id))


__all__ = ["AsyncMongoDb", "MongoDb"]
