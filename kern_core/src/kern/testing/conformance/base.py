"""What every topic of the suite stands on: the subclass's hooks, the recipe, capabilities.

``ScenarioBase`` holds what a backend's test class provides (``db_factory``,
``capabilities``) and the hooks each suite fills in (``BackendConformance`` with threads and
``_drive``, ``AsyncBackendConformance`` with tasks), so that a topic mixin's scenarios can be
written once against ``store`` and these hooks, whichever suite runs them.

``Store`` is the type of ``store``: the storage contract as the scenarios see it, each
method returning an awaitable of the contract's result. Both suites' stores are one: the
async db itself, and the sync db behind ``_AwaitableDb`` (``_sync``), whose calls are
awaitable effects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pytest

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
from kern.retention import RetentionBatch, RetentionPolicy, RetentionReceipt, RetentionRule
from kern.testing.capabilities import Capabilities, skip_unless_capable
from kern.testing.conformance.recipes import Recipe, _check_recipe

__all__ = ["ScenarioBase", "Store"]


class Store(Protocol):
    """The storage contract (``kern.db.base``) as a scenario calls it: ``await store.m(...)``.

    Why a protocol: ``store`` is an ``AsyncBaseDb`` in the async suite and a sync ``BaseDb``
    behind ``_AwaitableDb`` in the sync suite; what both offer is the contract's methods, with
    the contract's arguments, each returning an awaitable of the contract's result. The
    signatures are ``AsyncBaseDb``'s (the suites' ``store`` fixtures check that both fit).
    """

    def create_tables(self) -> Awaitable[None]: ...
    def forget_user(self, user_id: str) -> Awaitable[dict[str, int]]: ...
    def close(self) -> Awaitable[None]: ...
    def get_session(self, session_id: str) -> Awaitable[Session | None]: ...
    def upsert_session(
        self, session: Session, *, expected_version: int | None
    ) -> Awaitable[Session]: ...
    def list_sessions(
        self,
        *,
        user_id: str | None = None,
        component_id: str | None = None,
        session_type: SessionType | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> Awaitable[list[Session]]: ...
    def search_sessions(
        self, user_id: str, query: str, *, limit: int = 5
    ) -> Awaitable[list[Session]]: ...
    def delete_session(self, session_id: str) -> Awaitable[bool]: ...
    def fork_session(
        self, session_id: str, *, at_seq: int, new_session_id: str
    ) -> Awaitable[Session]: ...
    def retention_batch(
        self, rule: RetentionRule, *, limit: int, after: str | None = None, dry_run: bool = False
    ) -> Awaitable[RetentionBatch]: ...
    def apply_retention(
        self,
        policy: RetentionPolicy | None = None,
        *,
        dry_run: bool = False,
        batch_size: int = 500,
        max_batches: int | None = None,
        now: datetime | None = None,
    ) -> Awaitable[RetentionReceipt]: ...
    def commit_turn(
        self, run: Run, session: Session, *, expected_version: int | None
    ) -> Awaitable[tuple[Run, Session]]: ...
    def append_run(self, run: Run) -> Awaitable[Run]: ...
    def get_run(self, run_id: str) -> Awaitable[Run | None]: ...
    def get_last_runs(
        self,
        session_id: str,
        limit: int,
        *,
        before_seq: int | None = None,
        top_level_only: bool = False,
        status: RunStatus | None = None,
    ) -> Awaitable[list[Run]]: ...
    def read_turn(
        self,
        session_id: str,
        limit: int,
        *,
        top_level_only: bool = False,
        status: RunStatus | None = None,
    ) -> Awaitable[tuple[Session | None, list[Run]]]: ...
    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        output: object = None,
        messages: Sequence[object] | None = None,
        metrics: dict[str, object] | None = None,
    ) -> Awaitable[Run]: ...
    def upsert_memory(
        self, memory: Memory, *, embedding: Embedding | None = None
    ) -> Awaitable[Memory]: ...
    def get_memory(self, memory_id: str) -> Awaitable[Memory | None]: ...
    def list_memories(
        self, user_id: str, *, agent_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> Awaitable[list[Memory]]: ...
    def search_memories(
        self, user_id: str, query: str, *, agent_id: str | None = None, limit: int = 5
    ) -> Awaitable[list[ScoredMemory]]: ...
    def delete_memory(self, memory_id: str) -> Awaitable[bool]: ...
    def recall_memories(
        self,
        user_id: str,
        query: str,
        *,
        agent_id: str | None = None,
        limit: int = 5,
        recent: int = 3,
    ) -> Awaitable[tuple[list[ScoredMemory], list[Memory]]]: ...
    def upsert_learning(
        self, learning: Learning, *, embedding: Embedding | None = None
    ) -> Awaitable[Learning]: ...
    def get_learning(self, learning_id: str) -> Awaitable[Learning | None]: ...
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
    ) -> Awaitable[list[Learning]]: ...
    def search_learnings(
        self,
        query: str,
        *,
        kind: str | None = None,
        namespace: str | None = None,
        user_id: str | None = None,
        status: LearningStatus | None = LearningStatus.ACTIVE,
        limit: int = 5,
    ) -> Awaitable[list[ScoredLearning]]: ...
    def delete_learning(self, learning_id: str) -> Awaitable[bool]: ...
    def search_memories_by_vector(
        self, user_id: str, embedding: Embedding, *, agent_id: str | None = None, limit: int = 5
    ) -> Awaitable[list[ScoredMemory]]: ...
    def search_learnings_by_vector(
        self,
        embedding: Embedding,
        *,
        kind: str | None = None,
        namespace: str | None = None,
        user_id: str | None = None,
        status: LearningStatus | None = LearningStatus.ACTIVE,
        limit: int = 5,
    ) -> Awaitable[list[ScoredLearning]]: ...
    def set_embeddings(
        self, table: VectorTable, embeddings: Mapping[str, Embedding]
    ) -> Awaitable[int]: ...
    def memories_without_embedding(
        self, model: str, *, limit: int = 100
    ) -> Awaitable[list[Memory]]: ...
    def learnings_without_embedding(
        self, model: str, *, kinds: Sequence[str] | None = None, limit: int = 100
    ) -> Awaitable[list[Learning]]: ...
    def export_records(
        self,
        record_kind: RecordKind,
        *,
        after: str | None = None,
        limit: int = DEFAULT_PAGE,
        user_id: str | None = None,
    ) -> Awaitable[RecordPage]: ...
    def import_records(self, batch: RecordPage) -> Awaitable[int]: ...
    def storage_report(self) -> Awaitable[StorageReport]: ...


class ScenarioBase:
    """The base of every topic mixin (see the module docstring). Not collected itself."""

    #: The contract class the suite's db must implement.
    base_class: ClassVar[type[BaseDb] | type[AsyncBaseDb]]
    #: What the backend does of the contract's optional behaviours: a subclass sets its own
    #: (``kern.testing.capabilities``); scenarios needing one it lacks are skipped.
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not isinstance(cls.capabilities, Capabilities):
            raise TypeError(
                f"{cls.__name__}.capabilities must be a kern.testing.capabilities.Capabilities "
                f"(e.g. Capabilities(multi_process=False)), not {cls.capabilities!r}"
            )

    @pytest.fixture(autouse=True)
    def _declared_capabilities(self, request: pytest.FixtureRequest) -> None:
        """Skip a scenario that ``requires`` a capability this class declares it lacks."""
        skip_unless_capable(type(self), self.capabilities, request.node)

    # -- what a subclass provides --------------------------------------------------------
    def db_factory(self, tmp_path: Path) -> Recipe:
        raise NotImplementedError(
            f"{type(self).__name__} must define db_factory(self, tmp_path) returning "
            "('module:Class', {constructor kwargs})"
        )

    @pytest.fixture
    def recipe(self, tmp_path: Path) -> Recipe:
        return _check_recipe(self.db_factory(tmp_path))

    # -- what each suite provides (see BackendConformance / AsyncBackendConformance) -----
    async def _open(self, recipe: Recipe) -> Store:
        """A second db built from ``recipe``, seen as a ``store``."""
        raise NotImplementedError

    async def _close(self, store: Store) -> None:
        raise NotImplementedError

    async def _measure(self, db: Any, read: Callable[[], Awaitable[Any]]) -> tuple[int, Any]:
        """``count_reads`` of ``read()``, and what the read returned."""
        raise NotImplementedError

    async def _concurrently(self, calls: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
        """Run the calls at once (threads in the sync suite, tasks in the async one)."""
        raise NotImplementedError

    async def _append_many(self, store: Store, runs: Sequence[Run]) -> list[Run]:
        """Append ``runs`` as fast as the contract allows (one ``append_run`` each)."""
        raise NotImplementedError

    async def _in_processes(self, task: str, recipe: Recipe, params: dict[str, Any]) -> list[Any]:
        """Run a child task in ``PROCESSES`` processes at once; each child's payload."""
        raise NotImplementedError
