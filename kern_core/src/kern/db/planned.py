"""Dbs whose operations are *plans*: generators of driver steps, run by the class.

MongoDB and Redis write each operation once, as a plan (``kern.db.mongo.ops``,
``kern.db.redis.plans``) that yields its driver calls and receives their results; the sync
class runs a plan with blocking calls, the async class awaits it. ``PlannedDb`` and
``AsyncPlannedDb`` write out every contract method once, as "run the plan of the same name":
a backend provides the plans (an object satisfying ``ContractPlans``), ``_run`` for each
flavour, and the lifecycle (``create_tables``, ``close``). A type checker sees every method.
"""

from __future__ import annotations

import abc
from collections.abc import Generator, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeAlias, TypeVar

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

S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)
R = TypeVar("R")

#: A plan of steps ``S`` whose result is an ``R``.
Plan: TypeAlias = Generator[S, Any, R]


class ContractPlans(Protocol[S_co]):
    """One plan builder per contract method, taking that method's arguments."""

    def forget_user(self, user_id: str) -> Plan[S_co, dict[str, int]]: ...
    def get_session(self, session_id: str) -> Plan[S_co, Session | None]: ...
    def upsert_session(
        self, session: Session, *, expected_version: int | None
    ) -> Plan[S_co, Session]: ...
    def list_sessions(
        self,
        *,
        user_id: str | None = None,
        component_id: str | None = None,
        session_type: SessionType | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> Plan[S_co, list[Session]]: ...
    def search_sessions(
        self, user_id: str, query: str, *, limit: int = 5
    ) -> Plan[S_co, list[Session]]: ...
    def delete_session(self, session_id: str) -> Plan[S_co, bool]: ...
    def fork_session(
        self, session_id: str, *, at_seq: int, new_session_id: str
    ) -> Plan[S_co, Session]: ...
    def retention_batch(
        self, rule: RetentionRule, *, limit: int, after: str | None = None, dry_run: bool = False
    ) -> Plan[S_co, RetentionBatch]: ...
    def commit_turn(
        self, run: Run, session: Session, *, expected_version: int | None
    ) -> Plan[S_co, tuple[Run, Session]]: ...
    def append_run(self, run: Run) -> Plan[S_co, Run]: ...
    def get_run(self, run_id: str) -> Plan[S_co, Run | None]: ...
    def get_last_runs(
        self,
        session_id: str,
        limit: int,
        *,
        before_seq: int | None = None,
        top_level_only: bool = False,
        status: RunStatus | None = None,
    ) -> Plan[S_co, list[Run]]: ...
    def read_turn(
        self,
        session_id: str,
        limit: int,
        *,
        top_level_only: bool = False,
        status: RunStatus | None = None,
    ) -> Plan[S_co, tuple[Session | None, list[Run]]]: ...
    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        output: object = None,
        messages: Sequence[object] | None = None,
        metrics: dict[str, object] | None = None,
    ) -> Plan[S_co, Run]: ...
    def upsert_memory(
        self, memory: Memory, *, embedding: Embedding | None = None
    ) -> Plan[S_co, Memory]: ...
    def get_memory(self, memory_id: str) -> Plan[S_co, Memory | None]: ...
    def list_memories(
        self, user_id: str, *, agent_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> Plan[S_co, list[Memory]]: ...
    def search_memories(
        self, user_id: str, query: str, *, agent_id: str | None = None, limit: int = 5
    ) -> Plan[S_co, list[ScoredMemory]]: ...
    def delete_memory(self, memory_id: str) -> Plan[S_co, bool]: ...
    def recall_memories(
        self,
        user_id: str,
        query: str,
        *,
        agent_id: str | None = None,
        limit: int = 5,
        recent: int = 3,
    ) -> Plan[S_co, tuple[list[ScoredMemory], list[Memory]]]: ...
    def upsert_learning(
        self, learning: Learning, *, embedding: Embedding | None = None
    ) -> Plan[S_co, Learning]: ...
    def get_learning(self, learning_id: str) -> Plan[S_co, Learning | None]: ...
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
    ) -> Plan[S_co, list[Learning]]: ...
    def search_learnings(
        self,
        query: str,
        *,
        kind: str | None = None,
        namespace: str | None = None,
        user_id: str | None = None,
        status: LearningStatus | None = LearningStatus.ACTIVE,
        limit: int = 5,
    ) -> Plan[S_co, list[ScoredLearning]]: ...
    def delete_learning(self, learning_id: str) -> Plan[S_co, bool]: ...
    def search_memories_by_vector(
        self, user_id: str, embedding: Embedding, *, agent_id: str | None = None, limit: int = 5
    ) -> Plan[S_co, list[ScoredMemory]]: ...
    def search_learnings_by_vector(
        self,
        embedding: Embedding,
        *,
        kind: str | None = None,
        namespace: str | None = None,
        user_id: str | None = None,
        status: LearningStatus | None = LearningStatus.ACTIVE,
        limit: int = 5,
    ) -> Plan[S_co, list[ScoredLearning]]: ...
    def set_embeddings(
        self, table: VectorTable, embeddings: Mapping[str, Embedding]
    ) -> Plan[S_co, int]: ...
    def memories_without_embedding(
        self, model: str, *, limit: int = 100
    ) -> Plan[S_co, list[Memory]]: ...
    def learnings_without_embedding(
        self, model: str, *, kinds: Sequence[str] | None = None, limit: int = 100
    ) -> Plan[S_co, list[Learning]]: ...
    def export_records(
        self,
        record_kind: RecordKind,
        *,
        after: str | None = None,
        limit: int = DEFAULT_PAGE,
        user_id: str | None = None,
    ) -> Plan[S_co, RecordPage]: ...
    def import_records(self, batch: RecordPage) -> Plan[S_co, int]: ...
    def storage_report(self) -> Plan[S_co, StorageReport]: ...


class PlannedDb(BaseDb, Generic[S]):
    """The sync contract as "run the plan of the same name" (see the module docstring)."""

    plans: ContractPlans[S]

    @abc.abstractmethod
    def _run(self, plan: Plan[S, R]) -> R:
        """Perform ``plan``'s steps with blocking calls and return its result."""

    def forget_user(self, user_id: str) -> dict[str, int]:
        return self._run(self.plans.forget_user(user_id))

    def get_session(self, session_id: str) -> Session | None:
        return self._run(self.plans.get_session(session_id))

    def upsert_session(self, session: Session, *, expected_version: int | None) -> Session:
        return self._run(self.plans.upsert_session(session, expected_version=expected_version))

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
            self.plans.list_sessions(
                user_id=user_id,
                component_id=component_id,
                session_type=session_type,
                limit=limit,
                offset=offset,
            )
        )

    def search_sessions(self, user_id: str, query: str, *, limit: int = 5) -> list[Session]:
        return self._run(self.plans.search_sessions(user_id, query, limit=limit))

    def delete_session(self, session_id: str) -> bool:
        return self._run(self.plans.delete_session(session_id))

    def fork_session(self, session_id: str, *, at_seq: int, new_session_id: str) -> Session:
        return self._run(
            self.plans.fork_session(session_id, at_seq=at_seq, new_session_id=new_session_id)
        )

    def retention_batch(
        self, rule: RetentionRule, *, limit: int, after: str | None = None, dry_run: bool = False
    ) -> RetentionBatch:
        return self._run(
            self.plans.retention_batch(rule, limit=limit, after=after, dry_run=dry_run)
        )

    def commit_turn(
        self, run: Run, session: Session, *, expected_version: int | None
    ) -> tuple[Run, Session]:
        return self._run(self.plans.commit_turn(run, session, expected_version=expected_version))

    def append_run(self, run: Run) -> Run:
        return self._run(self.plans.append_run(run))

    def get_run(self, run_id: str) -> Run | None:
        return self._run(self.plans.get_run(run_id))

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
            self.plans.get_last_runs(
                session_id,
                limit,
                before_seq=before_seq,
                top_level_only=top_level_only,
                status=status,
            )
        )

    def read_turn(
        self,
        session_id: str,
        limit: int,
        *,
        top_level_only: bool = False,
        status: RunStatus | None = None,
    ) -> tuple[Session | None, list[Run]]:
        return self._run(
            self.plans.read_turn(session_id, limit, top_level_only=top_level_only, status=status)
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
            self.plans.update_run(
                run_id, status=status, output=output, messages=messages, metrics=metrics
            )
        )

    def upsert_memory(self, memory: Memory, *, embedding: Embedding | None = None) -> Memory:
        return self._run(self.plans.upsert_memory(memory, embedding=embedding))

    def get_memory(self, memory_id: str) -> Memory | None:
        return self._run(self.plans.get_memory(memory_id))

    def list_memories(
        self, user_id: str, *, agent_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Memory]:
        return self._run(
            self.plans.list_memories(user_id, agent_id=agent_id, limit=limit, offset=offset)
        )

    def search_memories(
        self, user_id: str, query: str, *, agent_id: str | None = None, limit: int = 5
    ) -> list[ScoredMemory]:
        return self._run(self.plans.search_memories(user_id, query, agent_id=agent_id, limit=limit))

    def delete_memory(self, memory_id: str) -> bool:
        return self._run(self.plans.delete_memory(memory_id))

    def recall_memories(
        self,
        user_id: str,
        query: str,
        *,
        agent_id: str | None = None,
        limit: int = 5,
        recent: int = 3,
    ) -> tuple[list[ScoredMemory], list[Memory]]:
        return self._run(
            self.plans.recall_memories(
                user_id, query, agent_id=agent_id, limit=limit, recent=recent
            )
        )

    def upsert_learning(
        self, learning: Learning, *, embedding: Embedding | None = None
    ) -> Learning:
        return self._run(self.plans.upsert_learning(learning, embedding=embedding))

    def get_learning(self, learning_id: str) -> Learning | None:
        return self._run(self.plans.get_learning(learning_id))

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
            self.plans.query_learnings(
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
        return self._run(
            self.plans.search_learnings(
                query, kind=kind, namespace=namespace, user_id=user_id, status=status, limit=limit
            )
        )

    def delete_learning(self, learning_id: str) -> bool:
        return self._run(self.plans.delete_learning(learning_id))

    def search_memories_by_vector(
        self, user_id: str, embedding: Embedding, *, agent_id: str | None = None, limit: int = 5
    ) -> list[ScoredMemory]:
        return self._run(
            self.plans.search_memories_by_vector(user_id, embedding, agent_id=agent_id, limit=limit)
        )

    def search_learnings_by_vector(
        self,
        embedding: Embedding,
        *,
        kind: str | None = None,
        namespace: str | None = None,
        user_id: str | None = None,
        status: LearningStatus | None = LearningStatus.ACTIVE,
        limit: int = 5,
    ) -> list[ScoredLearning]:
        return self._run(
            self.plans.search_learnings_by_vector(
                embedding,
                kind=kind,
                namespace=namespace,
                user_id=user_id,
                status=status,
                limit=limit,
            )
        )

    def set_embeddings(self, table: VectorTable, embeddings: Mapping[str, Embedding]) -> int:
        return self._run(self.plans.set_embeddings(table, embeddings))

    def memories_without_embedding(self, model: str, *, limit: int = 100) -> list[Memory]:
        return self._run(self.plans.memories_without_embedding(model, limit=limit))

    def learnings_without_embedding(
        self, model: str, *, kinds: Sequence[str] | None = None, limit: int = 100
    ) -> list[Learning]:
        return self._run(self.plans.learnings_without_embedding(model, kinds=kinds, limit=limit))

    def export_records(
        self,
        record_kind: RecordKind,
        *,
        after: str | None = None,
        limit: int = DEFAULT_PAGE,
        user_id: str | None = None,
    ) -> RecordPage:
        return self._run(
            self.plans.export_records(record_kind, after=after, limit=limit, user_id=user_id)
        )

    def import_records(self, batch: RecordPage) -> int:
        return self._run(self.plans.import_records(batch))

    def storage_report(self) -> StorageReport:
        return self._run(self.plans.storage_report())


class AsyncPlannedDb(AsyncBaseDb, Generic[S]):
    """The async contract as "await the plan of the same name" (see the module docstring)."""

    plans: ContractPlans[S]

    @abc.abstractmethod
    async def _run(self, plan: Plan[S, R]) -> R:
        """Perform ``plan``'s steps, awaiting each, and return its result."""

    async def forget_user(self, user_id: str) -> dict[str, int]:
        return await self._run(self.plans.forget_user(user_id))

    async def get_session(self, session_id: str) -> Session | None:
        return await self._run(self.plans.get_session(session_id))

    async def upsert_session(self, session: Session, *, expected_version: int | None) -> Session:
        return await self._run(
            self.plans.upsert_session(session, expected_version=expected_version)
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
        return await self._run(
            self.plans.list_sessions(
                user_id=user_id,
                component_id=component_id,
                session_type=session_type,
                limit=limit,
                offset=offset,
            )
        )

    async def search_sessions(self, user_id: str, query: str, *, limit: int = 5) -> list[Session]:
        return await self._run(self.plans.search_sessions(user_id, query, limit=limit))

    async def delete_session(self, session_id: str) -> bool:
        return await self._run(self.plans.delete_session(session_id))

    async def fork_session(self, session_id: str, *, at_seq: int, new_session_id: str) -> Session:
        return await self._run(
            self.plans.fork_session(session_id, at_seq=at_seq, new_session_id=new_session_id)
        )

    async def retention_batch(
        self, rule: RetentionRule, *, limit: int, after: str | None = None, dry_run: bool = False
    ) -> RetentionBatch:
        return await self._run(
            self.plans.retention_batch(rule, limit=limit, after=after, dry_run=dry_run)
        )

    async def commit_turn(
        self, run: Run, session: Session, *, expected_version: int | None
    ) -> tuple[Run, Session]:
        return await self._run(
            self.plans.commit_turn(run, session, expected_version=expected_version)
        )

    async def append_run(self, run: Run) -> Run:
        return await self._run(self.plans.append_run(run))

    async def get_run(self, run_id: str) -> Run | None:
        return await self._run(self.plans.get_run(run_id))

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
            self.plans.get_last_runs(
                session_id,
                limit,
                before_seq=before_seq,
                top_level_only=top_level_only,
                status=status,
            )
        )

    async def read_turn(
        self,
        session_id: str,
        limit: int,
        *,
        top_level_only: bool = False,
        status: RunStatus | None = None,
    ) -> tuple[Session | None, list[Run]]:
        return await self._run(
            self.plans.read_turn(session_id, limit, top_level_only=top_level_only, status=status)
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
            self.plans.update_run(
                run_id, status=status, output=output, messages=messages, metrics=metrics
            )
        )

    async def upsert_memory(self, memory: Memory, *, embedding: Embedding | None = None) -> Memory:
        return await self._run(self.plans.upsert_memory(memory, embedding=embedding))

    async def get_memory(self, memory_id: str) -> Memory | None:
        return await self._run(self.plans.get_memory(memory_id))

    async def list_memories(
        self, user_id: str, *, agent_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Memory]:
        return await self._run(
            self.plans.list_memories(user_id, agent_id=agent_id, limit=limit, offset=offset)
        )

    async def search_memories(
        self, user_id: str, query: str, *, agent_id: str | None = None, limit: int = 5
    ) -> list[ScoredMemory]:
        return await self._run(
            self.plans.search_memories(user_id, query, agent_id=agent_id, limit=limit)
        )

    async def delete_memory(self, memory_id: str) -> bool:
        return await self._run(self.plans.delete_memory(memory_id))

    async def recall_memories(
        self,
        user_id: str,
        query: str,
        *,
        agent_id: str | None = None,
        limit: int = 5,
        recent: int = 3,
    ) -> tuple[list[ScoredMemory], list[Memory]]:
        return await self._run(
            self.plans.recall_memories(
                user_id, query, agent_id=agent_id, limit=limit, recent=recent
            )
        )

    async def upsert_learning(
        self, learning: Learning, *, embedding: Embedding | None = None
    ) -> Learning:
        return await self._run(self.plans.upsert_learning(learning, embedding=embedding))

    async def get_learning(self, learning_id: str) -> Learning | None:
        return await self._run(self.plans.get_learning(learning_id))

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
            self.plans.query_learnings(
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
        return await self._run(
            self.plans.search_learnings(
                query, kind=kind, namespace=namespace, user_id=user_id, status=status, limit=limit
            )
        )

    async def delete_learning(self, learning_id: str) -> bool:
        return await self._run(self.plans.delete_learning(learning_id))

    async def search_memories_by_vector(
        self, user_id: str, embedding: Embedding, *, agent_id: str | None = None, limit: int = 5
    ) -> list[ScoredMemory]:
        return await self._run(
            self.plans.search_memories_by_vector(user_id, embedding, agent_id=agent_id, limit=limit)
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
        return await self._run(
            self.plans.search_learnings_by_vector(
                embedding,
                kind=kind,
                namespace=namespace,
                user_id=user_id,
                status=status,
                limit=limit,
            )
        )

    async def set_embeddings(self, table: VectorTable, embeddings: Mapping[str, Embedding]) -> int:
        return await self._run(self.plans.set_embeddings(table, embeddings))

    async def memories_without_embedding(self, model: str, *, limit: int = 100) -> list[Memory]:
        return await self._run(self.plans.memories_without_embedding(model, limit=limit))

    async def learnings_without_embedding(
        self, model: str, *, kinds: Sequence[str] | None = None, limit: int = 100
    ) -> list[Learning]:
        return await self._run(
            self.plans.learnings_without_embedding(model, kinds=kinds, limit=limit)
        )

    async def export_records(
        self,
        record_kind: RecordKind,
        *,
        after: str | None = None,
        limit: int = DEFAULT_PAGE,
        user_id: str | None = None,
    ) -> RecordPage:
        return await self._run(
            self.plans.export_records(record_kind, after=after, limit=limit, user_id=user_id)
        )

    async def import_records(self, batch: RecordPage) -> int:
        return await self._run(self.plans.import_records(batch))

    async def storage_report(self) -> StorageReport:
        return await self._run(self.plans.storage_report())


__all__ = ["AsyncPlannedDb", "ContractPlans", "Plan", "PlannedDb"]
