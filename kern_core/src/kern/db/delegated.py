"""An async db whose every call runs the matching method of a sync db somewhere else.

Three backends' async classes are this: SQLite and DuckDB run the sync db's calls in a
worker thread (``kern.db.threaded.ThreadedAsyncDb``), Postgres runs them inside SQLAlchemy's
greenlet bridge on the async driver (``kern.db.postgres.AsyncPostgresDb``). Each contract
method is written out here, once, so that a type checker sees every signature; a subclass
says only *how* a call runs (``_call``).
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import ParamSpec, TypeVar

from kern.db.base import AsyncBaseDb, BaseDb, VectorTable
from kern.db.report import StorageReport
from kern.db.transfer import DEFAULT_PAGE, RecordKind, RecordPage
from kern.records import (
    Embedding,
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
from kern.retention.rules import RetentionBatch, RetentionRule

P = ParamSpec("P")
R = TypeVar("R")


class SyncBackedAsyncDb(AsyncBaseDb):
    """The contract's coroutines, each running ``sync_db``'s method through ``_call``."""

    #: The sync db doing the work.
    sync_db: BaseDb

    @abc.abstractmethod
    def _call(self, method: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
        """Run ``method(*args, **kwargs)`` of ``sync_db`` without blocking the event loop."""

    def storage_target(self) -> str:
        return self.sync_db.storage_target()

    async def create_tables(self) -> None:
        return await self._call(self.sync_db.create_tables)

    async def forget_user(self, user_id: str) -> dict[str, int]:
        return await self._call(self.sync_db.forget_user, user_id)

    async def close(self) -> None:
        return await self._call(self.sync_db.close)

    async def get_session(self, session_id: str) -> Session | None:
        return await self._call(self.sync_db.get_session, session_id)

    async def upsert_session(self, session: Session, *, expected_version: int | None) -> Session:
        return await self._call(
            self.sync_db.upsert_session, session, expected_version=expected_version
        )

    async def list_sessions(
        self,
        *,
        user_id: str | None = None,
        component_id: str | None = None,
        session_type: SessionType | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Session]:
        return await self._call(
            self.sync_db.list_sessions,
            user_id=user_id,
            component_id=component_id,
            session_type=session_type,
            limit=limit,
            offset=offset,
        )

    async def search_sessions(self, user_id: str, query: str, *, limit: int = 5) -> list[Session]:
        return await self._call(self.sync_db.search_sessions, user_id, query, limit=limit)

    async def delete_session(self, session_id: str) -> bool:
        return await self._call(self.sync_db.delete_session, session_id)

    async def fork_session(self, session_id: str, *, at_seq: int, new_session_id: str) -> Session:
        return await self._call(
            self.sync_db.fork_session, session_id, at_seq=at_seq, new_session_id=new_session_id
        )

    async def retention_batch(
        self, rule: RetentionRule, *, limit: int, after: str | None = None, dry_run: bool = False
    ) -> RetentionBatch:
        return await self._call(
            self.sync_db.retention_batch, rule, limit=limit, after=after, dry_run=dry_run
        )

    async def commit_turn(
        self, run: Run, session: Session, *, expected_version: int | None
    ) -> tuple[Run, Session]:
        return await self._call(
            self.sync_db.commit_turn, run, session, expected_version=expected_version
        )

    async def append_run(self, run: Run) -> Run:
        return await self._call(self.sync_db.append_run, run)

    async def get_run(self, run_id: str) -> Run | None:
        return await self._call(self.sync_db.get_run, run_id)

    async def get_last_runs(
        self,
        session_id: str,
        limit: int,
        *,
        before_seq: int | None = None,
        top_level_only: bool = False,
        status: RunStatus | None = None,
    ) -> list[Run]:
        return await self._call(
            self.sync_db.get_last_runs,
            session_id,
            limit,
            before_seq=before_seq,
            top_level_only=top_level_only,
            status=status,
        )

    async def read_turn(
        self,
        session_id: str,
        limit: int,
        *,
        top_level_only: bool = False,
        status: RunStatus | None = None,
    ) -> tuple[Session | None, list[Run]]:
        return await self._call(
            self.sync_db.read_turn,
            session_id,
            limit,
            top_level_only=top_level_only,
            status=status,
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
        return await self._call(
            self.sync_db.update_run,
            run_id,
            status=status,
            output=output,
            messages=messages,
            metrics=metrics,
        )

    async def upsert_memory(self, memory: Memory, *, embedding: Embedding | None = None) -> Memory:
        return await self._call(self.sync_db.upsert_memory, memory, embedding=embedding)

    async def get_memory(self, memory_id: str) -> Memory | None:
        return await self._call(self.sync_db.get_memory, memory_id)

    async def list_memories(
        self, user_id: str, *, agent_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Memory]:
        return await self._call(
            self.sync_db.list_memories, user_id, agent_id=agent_id, limit=limit, offset=offset
        )

    async def search_memories(
        self, user_id: str, query: str, *, agent_id: str | None = None, limit: int = 5
    ) -> list[ScoredMemory]:
        return await self._call(
            self.sync_db.search_memories, user_id, query, agent_id=agent_id, limit=limit
        )

    async def delete_memory(self, memory_id: str) -> bool:
        return await self._call(self.sync_db.delete_memory, memory_id)

    async def recall_memories(
        self,
        user_id: str,
        query: str,
        *,
        agent_id: str | None = None,
        limit: int = 5,
        recent: int = 3,
    ) -> tuple[list[ScoredMemory], list[Memory]]:
        return await self._call(
            self.sync_db.recall_memories,
            user_id,
            query,
            agent_id=agent_id,
            limit=limit,
            recent=recent,
        )

    async def upsert_learning(
        self, learning: Learning, *, embedding: Embedding | None = None
    ) -> Learning:
        return await self._call(self.sync_db.upsert_learning, learning, embedding=embedding)

    async def get_learning(self, learning_id: str) -> Learning | None:
        return await self._call(self.sync_db.get_learning, learning_id)

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
        return await self._call(
            self.sync_db.query_learnings,
            kind=kind,
            namespace=namespace,
            user_id=user_id,
            session_id=session_id,
            entity_id=entity_id,
            status=status,
            limit=limit,
            offset=offset,
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
        return await self._call(
            self.sync_db.search_learnings,
            query,
            kind=kind,
            namespace=namespace,
            user_id=user_id,
            status=status,
            limit=limit,
        )

    async def delete_learning(self, learning_id: str) -> bool:
        return await self._call(self.sync_db.delete_learning, learning_id)

    async def search_memories_by_vector(
        self, user_id: str, embedding: Embedding, *, agent_id: str | None = None, limit: int = 5
    ) -> list[ScoredMemory]:
        return await self._call(
            self.sync_db.search_memories_by_vector,
            user_id,
            embedding,
            agent_id=agent_id,
            limit=limit,
        )

    async def search_learnings_by_vector(
        self,
        embedding: Embedding,
        *,
        kind: str | None = None,
        namespace: str | None = None,
        user_id: str | None = None,
        status: LearningStatus | None = LearningStatus.ACTIVE,
        limit: int = 5,
    ) -> list[ScoredLearning]:
        return await self._call(
            self.sync_db.search_learnings_by_vector,
            embedding,
            kind=kind,
            namespace=namespace,
            user_id=user_id,
            status=status,
            limit=limit,
        )

    async def set_embeddings(self, table: VectorTable, embeddings: Mapping[str, Embedding]) -> int:
        return await self._call(self.sync_db.set_embeddings, table, embeddings)

    async def memories_without_embedding(self, model: str, *, limit: int = 100) -> list[Memory]:
        return await self._call(self.sync_db.memories_without_embedding, model, limit=limit)

    async def learnings_without_embedding(
        self, model: str, *, kinds: Sequence[str] | None = None, limit: int = 100
    ) -> list[Learning]:
        return await self._call(
            self.sync_db.learnings_without_embedding, model, kinds=kinds, limit=limit
        )

    async def export_records(
        self,
        record_kind: RecordKind,
        *,
        after: str | None = None,
        limit: int = DEFAULT_PAGE,
        user_id: str | None = None,
    ) -> RecordPage:
        return await self._call(
            self.sync_db.export_records, record_kind, after=after, limit=limit, user_id=user_id
        )

    async def import_records(self, batch: RecordPage) -> int:
        return await self._call(self.sync_db.import_records, batch)

    async def storage_report(self) -> StorageReport:
        return await self._call(self.sync_db.storage_report)


__all__ = ["SyncBackedAsyncDb"]
