"""``RedisPlans``: the storage contract as Redis plans, one builder per contract method.

Each builder takes the arguments of the contract method of the same name and returns the
plan doing it (``kern.db.redis.plans``), written in ``sessions``, ``runs``, ``turns``,
``memories``, ``learnings``, ``docs``, ``embeddings``, ``forget``, ``export``, ``bulk``,
``retention`` and ``report``. ``RedisDb`` runs the plans blocking and ``AsyncRedisDb`` awaits them
(``kern.db.planned``), so each operation exists once, and a type checker holds every builder
to the contract's signature (``ContractPlans``).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from kern.db.base import VectorTable
from kern.db.fork import bulk_fork_steps, plan_fork
from kern.db.planned import ContractPlans
from kern.db.redis import (
    bulk,
    docs,
    export,
    forget,
    learnings,
    memories,
    report,
    retention,
    runs,
    session_search,
    sessions,
    turns,
)
from kern.db.redis.docs import DocSpec
from kern.db.redis.embeddings import set_vectors
from kern.db.redis.indexes import Ctx
from kern.db.redis.plans import Plan, Step
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


class RedisPlans(ContractPlans[Step]):
    """The plans of one db: its key layout and TTL (``ctx``), its document specs, and where
    it stores (``target``, for the storage report)."""

    def __init__(
        self,
        ctx: Ctx,
        memory_spec: DocSpec[Memory],
        learning_spec: DocSpec[Learning],
        *,
        target: str = "redis",
    ):
        self.ctx = ctx
        self.memory_spec = memory_spec
        self.learning_spec = learning_spec
        self.target = target
        #: Plans that read the database as it is: the db runs them without creating tables
        #: first (``storage_report`` must show a database kern never wrote to as it is).
        self.as_found: weakref.WeakSet[Plan[Any]] = weakref.WeakSet()

    def forget_user(self, user_id: str) -> Plan[dict[str, int]]:
        return forget.forget_user(self.ctx, self.memory_spec, self.learning_spec, user_id)

    # -- sessions -----------------------------------------------------------------------
    def get_session(self, session_id: str) -> Plan[Session | None]:
        return sessions.get_session(self.ctx, session_id)

    def upsert_session(self, session: Session, *, expected_version: int | None) -> Plan[Session]:
        return sessions.upsert_session(self.ctx, session, expected_version)

    def list_sessions(
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

    def search_sessions(self, user_id: str, query: str, *, limit: int = 5) -> Plan[list[Session]]:
        return session_search.search_sessions(self.ctx, user_id, query, limit=limit)

    def delete_session(self, session_id: str) -> Plan[bool]:
        return sessions.delete_session(self.ctx, session_id)

    def fork_session(self, session_id: str, *, at_seq: int, new_session_id: str) -> Plan[Session]:
        """The fork as one plan of this db's own plans: pages of runs read and bulk
        imported with their seqs (``kern.db.fork.bulk_fork_steps``)."""
        return plan_fork(self, bulk_fork_steps(session_id, at_seq, new_session_id))

    def retention_batch(
        self, rule: RetentionRule, *, limit: int, after: str | None = None, dry_run: bool = False
    ) -> Plan[RetentionBatch]:
        return retention.retention_batch(self.ctx, rule, limit=limit, after=after, dry_run=dry_run)

    # -- runs ---------------------------------------------------------------------------
    def commit_turn(
        self, run: Run, session: Session, *, expected_version: int | None
    ) -> Plan[tuple[Run, Session]]:
        return turns.commit_turn(self.ctx, run, session, expected_version)

    def append_run(self, run: Run) -> Plan[Run]:
        return runs.append_run(self.ctx, run)

    def get_run(self, run_id: str) -> Plan[Run | None]:
        return runs.get_run(self.ctx, run_id)

    def get_last_runs(
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

    def read_turn(
        self,
        session_id: str,
        limit: int,
        *,
        top_level_only: bool = False,
        status: RunStatus | None = None,
    ) -> Plan[tuple[Session | None, list[Run]]]:
        return turns.read_turn(
            self.ctx, session_id, limit, top_level_only=top_level_only, status=status
        )

    def update_run(
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
    def upsert_memory(self, memory: Memory, *, embedding: Embedding | None = None) -> Plan[Memory]:
        return docs.upsert(self.ctx, self.memory_spec, memory, embedding)

    def get_memory(self, memory_id: str) -> Plan[Memory | None]:
        return docs.get(self.ctx, self.memory_spec, memory_id)

    def list_memories(
        self, user_id: str, *, agent_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> Plan[list[Memory]]:
        return memories.list_memories(
            self.ctx, self.memory_spec, user_id, agent_id=agent_id, limit=limit, offset=offset
        )

    def search_memories(
        self, user_id: str, query: str, *, agent_id: str | None = None, limit: int = 5
    ) -> Plan[list[ScoredMemory]]:
        return memories.search_memories(
            self.ctx, self.memory_spec, user_id, query, agent_id=agent_id, limit=limit
        )

    def delete_memory(self, memory_id: str) -> Plan[bool]:
        return docs.delete(self.ctx, self.memory_spec, memory_id)

    def recall_memories(
        self,
        user_id: str,
        query: str,
        *,
        agent_id: str | None = None,
        limit: int = 5,
        recent: int = 3,
    ) -> Plan[tuple[list[ScoredMemory], list[Memory]]]:
        """The search and the newest memories pipelined together: the round trips of the
        longer read, not of both (the contract's default makes two calls)."""
        return memories.recall_memories(
            self.ctx, self.memory_spec, user_id, query,
            agent_id=agent_id, limit=limit, recent=recent,
        )  # fmt: skip

    # -- learnings ----------------------------------------------------------------------
    def upsert_learning(
        self, learning: Learning, *, embedding: Embedding | None = None
    ) -> Plan[Learning]:
        return docs.upsert(self.ctx, self.learning_spec, learning, embedding)

    def get_learning(self, learning_id: str) -> Plan[Learning | None]:
        return docs.get(self.ctx, self.learning_spec, learning_id)

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
    ) -> Plan[list[Learning]]:
        filters: dict[str, object] = {
            "kind": kind,
            "namespace": namespace,
            "user_id": user_id,
            "session_id": session_id,
            "entity_id": entity_id,
        }
        return learnings.query_learnings(
            self.ctx, self.learning_spec, filters=filters, status=status, limit=limit, offset=offset
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
    ) -> Plan[list[ScoredLearning]]:
        return learnings.search_learnings(
            self.ctx,
            self.learning_spec,
            query,
            kind=kind,
            namespace=namespace,
            user_id=user_id,
            status=status,
            limit=limit,
        )

    def delete_learning(self, learning_id: str) -> Plan[bool]:
        return docs.delete(self.ctx, self.learning_spec, learning_id)

    # -- vectors ------------------------------------------------------------------------
    def search_memories_by_vector(
        self, user_id: str, embedding: Embedding, *, agent_id: str | None = None, limit: int = 5
    ) -> Plan[list[ScoredMemory]]:
        return memories.search_by_vector(
            self.ctx, self.memory_spec, user_id, embedding, agent_id=agent_id, limit=limit
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
    ) -> Plan[list[ScoredLearning]]:
        return learnings.search_by_vector(
            self.ctx,
            self.learning_spec,
            embedding,
            kind=kind,
            namespace=namespace,
            user_id=user_id,
            status=status,
            limit=limit,
        )

    def set_embeddings(self, table: VectorTable, embeddings: Mapping[str, Embedding]) -> Plan[int]:
        if table == "memories":
            return set_vectors(self.ctx, self.memory_spec, embeddings)
        return set_vectors(self.ctx, self.learning_spec, embeddings)

    def memories_without_embedding(self, model: str, *, limit: int = 100) -> Plan[list[Memory]]:
        return memories.without_embedding(self.ctx, self.memory_spec, model, limit=limit)

    def learnings_without_embedding(
        self, model: str, *, kinds: Sequence[str] | None = None, limit: int = 100
    ) -> Plan[list[Learning]]:
        return learnings.without_embedding(
            self.ctx, self.learning_spec, model, kinds=kinds, limit=limit
        )

    # -- moving data ----------------------------------------------------------------------
    def export_records(
        self,
        record_kind: RecordKind,
        *,
        after: str | None = None,
        limit: int = DEFAULT_PAGE,
        user_id: str | None = None,
    ) -> Plan[RecordPage]:
        return export.export_records(
            self.ctx, self.memory_spec, self.learning_spec, record_kind,
            after=after, limit=limit, user_id=user_id,
        )  # fmt: skip

    def import_records(self, batch: RecordPage) -> Plan[int]:
        return bulk.import_records(self.ctx, self.memory_spec, self.learning_spec, batch)

    def storage_report(self) -> Plan[StorageReport]:
        plan = report.storage_report(self.ctx, self.target)
        self.as_found.add(plan)
        return plan


__all__ = ["RedisPlans"]
