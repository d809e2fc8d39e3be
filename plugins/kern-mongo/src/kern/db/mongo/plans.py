"""The storage contract's plans for MongoDB: ``kern.db.planned.ContractPlans`` over ``ops``.

``MongoDb`` and ``AsyncMongoDb`` (``kern.db.planned``) run "the plan of the same name" for
every contract method; ``MongoPlans`` gives each one with the contract's exact signature and
defaults (the ``ops`` functions take every argument explicitly, and ``commit_turn`` also
the db object's ``Transactions``), so a type checker sees the whole contract. The vector
operations' plans are in ``kern.db.mongo.embeddings``, moving data in
``kern.db.mongo.transfer``, a retention batch in ``kern.db.mongo.retention`` and the storage
report in ``kern.db.mongo.report``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kern.db.base import VectorTable
from kern.db.fork import bulk_fork_steps, plan_fork
from kern.db.mongo import embeddings as _vectors
from kern.db.mongo import ops, report, retention, transfer
from kern.db.mongo.calls import Op
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


class MongoPlans:
    """One ``ops`` generator per contract method; one object per db (its ``transactions``,
    and its ``site`` for the report)."""

    __slots__ = ("site", "transactions")

    def __init__(self, transactions: ops.Transactions, site: report.Site) -> None:
        self.transactions = transactions
        self.site = site

    def forget_user(self, user_id: str) -> Op[dict[str, int]]:
        return ops.forget_user(user_id)

    def get_session(self, session_id: str) -> Op[Session | None]:
        return ops.get_session(session_id)

    def upsert_session(self, session: Session, *, expected_version: int | None) -> Op[Session]:
        return ops.upsert_session(session, expected_version)

    def list_sessions(
        self,
        *,
        user_id: str | None = None,
        component_id: str | None = None,
        session_type: SessionType | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> Op[list[Session]]:
        return ops.list_sessions(
            user_id=user_id,
            component_id=component_id,
            session_type=session_type,
            limit=limit,
            offset=offset,
        )

    def search_sessions(self, user_id: str, query: str, *, limit: int = 5) -> Op[list[Session]]:
        return ops.search_sessions(user_id, query, limit=limit)

    def delete_session(self, session_id: str) -> Op[bool]:
        return ops.delete_session(session_id)

    def fork_session(self, session_id: str, *, at_seq: int, new_session_id: str) -> Op[Session]:
        """The fork as one plan of this db's own plans: pages of runs read and bulk
        imported with their seqs (``kern.db.fork.bulk_fork_steps``)."""
        return plan_fork(self, bulk_fork_steps(session_id, at_seq, new_session_id))

    def retention_batch(
        self, rule: RetentionRule, *, limit: int, after: str | None = None, dry_run: bool = False
    ) -> Op[RetentionBatch]:
        return retention.retention_batch(rule, limit=limit, after=after, dry_run=dry_run)

    def commit_turn(
        self, run: Run, session: Session, *, expected_version: int | None
    ) -> Op[tuple[Run, Session]]:
        return ops.commit_turn(run, session, expected_version, self.transactions)

    def append_run(self, run: Run) -> Op[Run]:
        return ops.append_run(run)

    def get_run(self, run_id: str) -> Op[Run | None]:
        return ops.get_run(run_id)

    def get_last_runs(
        self,
        session_id: str,
        limit: int,
        *,
        before_seq: int | None = None,
        top_level_only: bool = False,
        status: RunStatus | None = None,
    ) -> Op[list[Run]]:
        return ops.get_last_runs(
            session_id, limit, before_seq=before_seq, top_level_only=top_level_only, status=status
        )

    def read_turn(
        self,
        session_id: str,
        limit: int,
        *,
        top_level_only: bool = False,
        status: RunStatus | None = None,
    ) -> Op[tuple[Session | None, list[Run]]]:
        return ops.read_turn(session_id, limit, top_level_only=top_level_only, status=status)

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        output: object = None,
        messages: Sequence[object] | None = None,
        metrics: dict[str, object] | None = None,
    ) -> Op[Run]:
        return ops.update_run(
            run_id, status=status, output=output, messages=messages, metrics=metrics
        )

    def upsert_memory(self, memory: Memory, *, embedding: Embedding | None = None) -> Op[Memory]:
        return ops.upsert_memory(memory, embedding)

    def get_memory(self, memory_id: str) -> Op[Memory | None]:
        return ops.get_memory(memory_id)

    def list_memories(
        self, user_id: str, *, agent_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> Op[list[Memory]]:
        return ops.list_memories(user_id, agent_id=agent_id, limit=limit, offset=offset)

    def search_memories(
        self, user_id: str, query: str, *, agent_id: str | None = None, limit: int = 5
    ) -> Op[list[ScoredMemory]]:
        return ops.search_memories(user_id, query, agent_id=agent_id, limit=limit)

    def delete_memory(self, memory_id: str) -> Op[bool]:
        return ops.delete_memory(memory_id)

    def recall_memories(
        self,
        user_id: str,
        query: str,
        *,
        agent_id: str | None = None,
        limit: int = 5,
        recent: int = 3,
    ) -> Op[tuple[list[ScoredMemory], list[Memory]]]:
        return ops.recall_memories(user_id, query, agent_id=agent_id, limit=limit, recent=recent)

    def upsert_learning(
        self, learning: Learning, *, embedding: Embedding | None = None
    ) -> Op[Learning]:
        return ops.upsert_learning(learning, embedding)

    def get_learning(self, learning_id: str) -> Op[Learning | None]:
        return ops.get_learning(learning_id)

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
    ) -> Op[list[Learning]]:
        return ops.query_learnings(
            kind=kind,
            namespace=namespace,
            user_id=user_id,
            session_id=session_id,
            entity_id=entity_id,
            status=status,
            limit=limit,
            offset=offset,
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
    ) -> Op[list[ScoredLearning]]:
        return ops.search_learnings(
            query, kind=kind, namespace=namespace, user_id=user_id, status=status, limit=limit
        )

    def delete_learning(self, learning_id: str) -> Op[bool]:
        return ops.delete_learning(learning_id)

    def search_memories_by_vector(
        self, user_id: str, embedding: Embedding, *, agent_id: str | None = None, limit: int = 5
    ) -> Op[list[ScoredMemory]]:
        return _vectors.search_memories_by_vector(
            user_id, embedding, agent_id=agent_id, limit=limit
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
    ) -> Op[list[ScoredLearning]]:
        return _vectors.search_learnings_by_vector(
            embedding, kind=kind, namespace=namespace, user_id=user_id, status=status, limit=limit
        )

    def set_embeddings(self, table: VectorTable, embeddings: Mapping[str, Embedding]) -> Op[int]:
        return _vectors.set_embeddings(table, embeddings)

    def memories_without_embedding(self, model: str, *, limit: int = 100) -> Op[list[Memory]]:
        return _vectors.memories_without_embedding(model, limit=limit)

    def learnings_without_embedding(
        self, model: str, *, kinds: Sequence[str] | None = None, limit: int = 100
    ) -> Op[list[Learning]]:
        return _vectors.learnings_without_embedding(model, kinds=kinds, limit=limit)

    def export_records(
        self,
        record_kind: RecordKind,
        *,
        after: str | None = None,
        limit: int = DEFAULT_PAGE,
        user_id: str | None = None,
    ) -> Op[RecordPage]:
        return transfer.export_records(record_kind, after=after, limit=limit, user_id=user_id)

    def import_records(self, batch: RecordPage) -> Op[int]:
        return transfer.import_records(batch)

    def storage_report(self) -> Op[StorageReport]:
        return report.storage_report(self.site)


__all__ = ["MongoPlans"]
