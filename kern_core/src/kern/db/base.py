"""The storage contract every backend implements, sync (``BaseDb``) and async (``AsyncBaseDb``).

The contract is small on purpose: everything else (history assembly, recall, curation) is
core code written once on top of it. The two classes have the same method names; the async
one's are coroutines. ``kern.testing.conformance`` checks a backend against this contract,
and docs/plugins.md says how to write one.

What the registry and the core rely on beyond the methods:

- The constructor takes the URL as its first argument, ``db_url`` (``kern.db.connect`` calls
  ``cls(db_url=url, **options)``); ``backend_name`` is the name the plugin registers.
- ``is_async`` tells the two flavours apart; ``unavailable_errors`` and ``storage_target()``
  let the door (``kern.db.door``) report an unreachable database the same way everywhere.

Rules every implementation keeps (docs/architecture.md, "Stored records"):

- ``append_run`` writes the run once, as its own row, and assigns ``seq`` atomically:
  concurrent writers from several processes never lose or duplicate a run.
- ``get_last_runs`` reads the newest runs through an index: its cost does not grow with the
  length of the session.
- ``upsert_session`` is compare-and-set on ``version``: a stale writer gets
  ``VersionConflictError`` and nothing is overwritten.
- Every read path is indexed, and ``forget_user`` removes every row holding the user's data.

Ids and stored text are checked at the door (``kern.db.door``), before a backend runs:
implementations receive only ids that are non-empty strings of at most 255 characters with no
NUL or lone surrogate, a user id wherever the operation is per user, and text without NUL or
lone surrogates. ``None`` for an optional filter (``query_learnings(user_id=None)``) means
"any"; the per-user operations (``list_memories``, ``search_memories``, ``forget_user``)
never take ``None``.
"""

from __future__ import annotations

import abc
from collections.abc import Generator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeAlias

from kern.db.door import ContractMeta, guard_contract
from kern.db.fork import arun_fork, fork_steps, run_fork
from kern.db.report import Capability, StorageReport
from kern.db.session_search import SCAN, query_words, rank_sessions
from kern.db.steps import Request, arun_steps, run_steps
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
from kern.retention.policy import RetentionPolicy
from kern.retention.receipt import RetentionReceipt
from kern.retention.rules import RetentionBatch, RetentionRule
from kern.retention.steps import DEFAULT_BATCH, resolve_policy, retention_steps

#: The logical tables, without the configurable prefix (``kern_`` by default).
TABLES = ("sessions", "runs", "memories", "learnings", "schema_versions")

#: The tables whose rows may carry a vector (``Embedding``).
VectorTable: TypeAlias = Literal["memories", "learnings"]


class _DbInfo:
    """What both flavours share: identity used by the Agent to pick sync or async paths."""

    #: True for classes whose methods are coroutines.
    is_async: ClassVar[bool] = False
    #: The backend's registered name (``"sqlite"``, ``"postgres"``, ...).
    backend_name: ClassVar[str] = ""
    #: Driver exceptions that mean "the database cannot be reached" (connection refused or
    #: lost, server restarting). The door turns them into ``StorageUnavailableError``, with
    #: the driver's exception chained; other driver errors pass through unchanged.
    unavailable_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    #: Errors a server answers with that may mean "login refused" (MongoDB's
    #: ``OperationFailure`` code 18): the door raises those as ``StorageLoginError``.
    login_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    #: The retention policy ``apply_retention()`` applies when it is given none
    #: (``db.retention = RetentionPolicy(runs_days=30)``); else kern.toml's ``[retention]``.
    retention: RetentionPolicy | None = None

    def storage_target(self) -> str:
        """Where the data lives, for error messages: a URL without its password, a path."""
        return type(self).__name__


class BaseDb(_DbInfo, metaclass=ContractMeta):
    """A synchronous kern database."""

    is_async = False

    # -- lifecycle -----------------------------------------------------------------
    @abc.abstractmethod
    def create_tables(self) -> None:
        """Create missing tables and indexes and run pending migrations forward.

        Idempotent, and safe when several processes call it at once. Backends call it
        themselves before first use, so users never have to.
        """

    @abc.abstractmethod
    def forget_user(self, user_id: str) -> dict[str, int]:
        """Delete every row holding ``user_id``'s data; return the count per table.

        Sessions of the user go with their runs. Keys are logical table names
        (``"sessions"``, ``"runs"``, ``"memories"``, ``"learnings"``).
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections. The object must not be used afterwards."""

    def __enter__(self) -> BaseDb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sessions ------------------------------------------------------------------
    @abc.abstractmethod
    def get_session(self, session_id: str) -> Session | None:
        """The stored session, or ``None``."""

    @abc.abstractmethod
    def upsert_session(self, session: Session, *, expected_version: int | None) -> Session:
        """Store ``session`` if the stored version is ``expected_version``; return what was stored.

        ``expected_version=None`` creates the session and requires that it does not exist
        yet. Otherwise the stored row must be at ``expected_version``. The stored copy gets
        ``version = (expected_version or 0) + 1`` and a fresh ``updated_at``; ``created_at``
        of an existing row is kept. On mismatch raise ``VersionConflictError`` and change
        nothing.
        """

    @abc.abstractmethod
    def list_sessions(
        self,
        *,
        user_id: str | None = None,
        component_id: str | None = None,
        session_type: SessionType | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Session]:
        """Sessions matching every given filter, newest ``updated_at`` first."""

    def search_sessions(self, user_id: str, query: str, *, limit: int = 5) -> list[Session]:
        """A user's sessions whose name or summary best match ``query``, best first, at
        most ``limit``; none when the query has no word. Never another user's sessions.

        The default ranks the user's newest sessions by the words they share with the
        query (``kern.db.session_search``); kern's backends use their own text search.
        """
        if limit <= 0 or not query_words(query):
            return []
        sessions = self.list_sessions(user_id=user_id, limit=SCAN)
        return rank_sessions([s for s in sessions if s.user_id == user_id], query, limit)

    @abc.abstractmethod
    def delete_session(self, session_id: str) -> bool:
        """Delete the session and all of its runs. True if the session existed."""

    def fork_session(self, session_id: str, *, at_seq: int, new_session_id: str) -> Session:
        """A new session ``new_session_id`` whose history is this session's runs with
        ``seq <= at_seq``; return it (``kern.db.fork`` has the shared rules).

        The copies keep their seq and get the ids ``<new_session_id>:<seq>``; the new
        session has the source's user, the state the fork point's run recorded (else the
        source's current state) and ``metadata["forked_from"] = {"session_id", "seq",
        "state"}``. Refused, with nothing written: an unknown session
        (``SessionNotFoundError``), ``at_seq`` past the last run or a taken
        ``new_session_id`` (``ForkError``). The default copies page by page through the
        other methods; kern's backends copy inside the database.
        """
        return run_fork(self, fork_steps(session_id, at_seq, new_session_id))

    # -- runs ----------------------------------------------------------------------
    @abc.abstractmethod
    def commit_turn(
        self, run: Run, session: Session, *, expected_version: int | None
    ) -> tuple[Run, Session]:
        """Store one turn in one atomic write: append ``run`` and write ``session``.

        Either both are stored or neither is (one transaction, script or document write):
        a crash or a fault in between never leaves a state that counts a turn with no run.
        ``session`` is written compare-and-set exactly as ``upsert_session`` does
        (``expected_version=None`` creates it and requires that it does not exist yet);
        on mismatch ``VersionConflictError`` is raised and the run is not stored either.
        ``run.seq`` is assigned as by ``append_run``; ``run.session_id`` is
        ``session.session_id``.

        Idempotent on ``run.run_id``: when that run is already stored (a retry after a commit
        whose reply was lost), nothing is written and the stored run and the stored session
        are returned, so a retried turn is never stored twice.
        """

    @abc.abstractmethod
    def append_run(self, run: Run) -> Run:
        """Append ``run`` to its session, assigning the next ``seq``; return the stored run.

        The session row need not exist (a workflow may log before it writes state). When it
        does, its ``updated_at`` may be moved to the run's time; its ``version`` is not
        touched. A ``run_id`` that is already stored raises ``ValueError``.
        """

    @abc.abstractmethod
    def get_run(self, run_id: str) -> Run | None:
        """One run by id, or ``None``."""

    @abc.abstractmethod
    def get_last_runs(
        self,
        session_id: str,
        limit: int,
        *,
        before_seq: int | None = None,
        top_level_only: bool = False,
        status: RunStatus | None = None,
    ) -> list[Run]:
        """The newest ``limit`` runs of a session (with ``seq < before_seq`` if given).

        Returned oldest first (ascending ``seq``), ready to be replayed as history.
        ``top_level_only`` keeps runs without ``parent_run_id`` (a team leader's turns, not
        its members'); ``status`` keeps runs of that status. Read through the
        ``(session_id, seq)`` index: the cost is that of the rows returned.
        """

    def read_turn(
        self,
        session_id: str,
        limit: int,
        *,
        top_level_only: bool = False,
        status: RunStatus | None = None,
    ) -> tuple[Session | None, list[Run]]:
        """What a turn reads before it calls the model: ``(get_session(session_id),
        get_last_runs(session_id, limit, ...))``, in one round trip where the backend allows.

        Same results as those two calls (runs are returned even when no session row is
        stored; ``limit <= 0`` reads the session only). The default makes the two calls;
        kern's backends answer with one statement, script or command, so a turn costs one
        round trip to read and one to write.
        """
        session = self.get_session(session_id)
        runs = (
            self.get_last_runs(session_id, limit, top_level_only=top_level_only, status=status)
            if limit > 0
            else []
        )
        return session, runs

    @abc.abstractmethod
    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        output: object = None,
        messages: Sequence[object] | None = None,
        metrics: dict[str, object] | None = None,
    ) -> Run:
        """Finish (or re-mark) a run that is still ``running``; return the stored run.

        Unknown ``run_id`` raises ``RunNotFoundError``; a run that is no longer ``running``
        raises ``RunFinishedError``. ``None`` arguments leave the stored field as it is.
        """

    # -- memories ------------------------------------------------------------------
    @abc.abstractmethod
    def upsert_memory(self, memory: Memory, *, embedding: Embedding | None = None) -> Memory:
        """Insert or replace a memory by ``memory_id``; ``updated_at`` is refreshed.

        ``embedding`` (the vector of ``memory.content``) is stored with it, in the same
        write; without one the memory has no vector (a stored one described the old row).
        """

    @abc.abstractmethod
    def get_memory(self, memory_id: str) -> Memory | None: ...

    @abc.abstractmethod
    def list_memories(
        self,
        user_id: str,
        *,
        agent_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Memory]:
        """A user's memories, newest ``updated_at`` first."""

    @abc.abstractmethod
    def search_memories(
        self, user_id: str, query: str, *, agent_id: str | None = None, limit: int = 5
    ) -> list[ScoredMemory]:
        """A user's memories most relevant to ``query``, best first, at most ``limit``.

        Uses the backend's own text search where it has one. Never returns another
        user's memories.
        """

    @abc.abstractmethod
    def delete_memory(self, memory_id: str) -> bool: ...

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
        ``query`` (none when it is empty) and the ``recent`` newest.

        Two contract reads here; a backend overrides it to read both in one round trip
        (one connection, one pipeline).
        """
        ranked = (
            self.search_memories(user_id, query, agent_id=agent_id, limit=limit) if query else []
        )
        newest = self.list_memories(user_id, agent_id=agent_id, limit=recent) if recent else []
        return ranked, newest

    # -- learnings -----------------------------------------------------------------
    @abc.abstractmethod
    def upsert_learning(
        self, learning: Learning, *, embedding: Embedding | None = None
    ) -> Learning:
        """Insert or replace a learning by ``learning_id``; ``updated_at`` is refreshed.

        ``embedding`` is stored with it as ``upsert_memory`` stores a memory's."""

    @abc.abstractmethod
    def get_learning(self, learning_id: str) -> Learning | None: ...

    @abc.abstractmethod
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
        """Learnings matching every given filter, newest ``updated_at`` first."""

    @abc.abstractmethod
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
        """Learnings most relevant to ``query`` (over their JSON content), best first."""

    @abc.abstractmethod
    def delete_learning(self, learning_id: str) -> bool: ...

    # -- vectors -------------------------------------------------------------------
    @abc.abstractmethod
    def search_memories_by_vector(
        self, user_id: str, embedding: Embedding, *, agent_id: str | None = None, limit: int = 5
    ) -> list[ScoredMemory]:
        """A user's memories nearest to ``embedding``, best first, at most ``limit``.

        Only memories whose vector was made by ``embedding.model`` are compared; the score
        is their cosine similarity. Never returns another user's memories. Uses the
        backend's vector index where it has one, else an exact scan of the user's vectors.
        """

    @abc.abstractmethod
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
        """Learnings matching every given filter nearest to ``embedding`` (as
        ``search_memories_by_vector``)."""

    @abc.abstractmethod
    def set_embeddings(self, table: VectorTable, embeddings: Mapping[str, Embedding]) -> int:
        """Store vectors for rows of ``table`` by id, replacing theirs, changing nothing
        else (``updated_at`` is kept). Ids that are not stored are skipped; returns how
        many rows were set. How ``LearningMachine.reembed`` backfills."""

    @abc.abstractmethod
    def memories_without_embedding(self, model: str, *, limit: int = 100) -> list[Memory]:
        """Up to ``limit`` memories, of any user, with no vector made by ``model`` (none, or
        another model's), in a stable order: what is left to embed."""

    @abc.abstractmethod
    def learnings_without_embedding(
        self, model: str, *, kinds: Sequence[str] | None = None, limit: int = 100
    ) -> list[Learning]:
        """As ``memories_without_embedding``, for learnings of ``kinds`` (``None``: any)."""

    # -- moving data (kern export / import / copy; kern.db.transfer) -------------------
    def export_records(
        self,
        record_kind: RecordKind,
        *,
        after: str | None = None,
        limit: int = DEFAULT_PAGE,
        user_id: str | None = None,
    ) -> RecordPage:
        """Up to ``limit`` records of ``record_kind``, continuing after cursor ``after``.

        The order is the backend's and stable (an index's order: runs by session and seq);
        the page's ``cursor`` continues after its last row and is ``None`` at the end.
        Memories and learnings come with their vectors. ``user_id`` keeps exactly the rows
        ``forget_user(user_id)`` would delete. Not abstract, so that an older third-party
        backend still loads; kern's own backends all implement it.
        """
        raise NotImplementedError(_no_transfer(self, "export_records"))

    def import_records(self, batch: RecordPage) -> int:
        """Store ``batch`` as it was exported; return the number of records in it.

        Ids, ``seq``, ``version`` and timestamps are kept; a row whose id is stored already
        is replaced, so importing a page twice changes nothing; a memory's or learning's
        vector is set from ``batch.embeddings`` (or removed when it has none there). After
        an import of runs, the next ``append_run`` of each session continues after its
        highest seq. One bulk write per call (one transaction where the backend has them);
        a run whose (session, seq) is held by another run id, or a stored run the batch
        would move to another (session, seq), raises ``ValueError`` naming both, and
        nothing of that batch is written.
        """
        raise NotImplementedError(_no_transfer(self, "import_records"))

    # -- retention (kern.retention) --------------------------------------------------
    def apply_retention(
        self,
        policy: RetentionPolicy | None = None,
        *,
        dry_run: bool = False,
        batch_size: int = DEFAULT_BATCH,
        max_batches: int | None = None,
        now: datetime | None = None,
    ) -> RetentionReceipt:
        """Remove what ``policy`` (else ``self.retention``, else kern.toml's ``[retention]``)
        says to, rule by rule in batches of ``batch_size`` candidates; return the receipt.

        ``dry_run=True`` counts and removes nothing; ``max_batches`` bounds the work of one
        call per rule (the receipt says whether each rule finished). Never removes a
        session's newest run, a running run or one whose parent run is running.
        """
        steps = _retention(self, policy, dry_run, batch_size, max_batches, now)
        return run_steps(self, steps)

    def retention_batch(
        self, rule: RetentionRule, *, limit: int, after: str | None = None, dry_run: bool = False
    ) -> RetentionBatch:
        """One bounded batch of ``rule`` (``kern.retention.rules`` has the rules every
        backend keeps): examine at most ``limit`` candidates after cursor ``after``, in an
        index's order; remove those the rule takes (count them when ``dry_run``); return
        the counts per table and the cursor to continue from (``None``: done). Not
        abstract, so that an older third-party backend still loads."""
        raise NotImplementedError(_no_retention(self))

    def storage_report(self) -> StorageReport:
        """The database as it is (``kern doctor``): read-only, never creates or migrates."""
        return basic_report(self)


class AsyncBaseDb(_DbInfo, metaclass=ContractMeta):
    """The async twin of ``BaseDb``: same methods and meaning, as coroutines."""

    is_async = True

    @abc.abstractmethod
    async def create_tables(self) -> None: ...
    @abc.abstractmethod
    async def forget_user(self, user_id: str) -> dict[str, int]: ...
    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> AsyncBaseDb:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abc.abstractmethod
    async def get_session(self, session_id: str) -> Session | None: ...
    @abc.abstractmethod
    async def upsert_session(
        self, session: Session, *, expected_version: int | None
    ) -> Session: ...
    @abc.abstractmethod
    async def list_sessions(
        self,
        *,
        user_id: str | None = None,
        component_id: str | None = None,
        session_type: SessionType | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Session]: ...
    async def search_sessions(self, user_id: str, query: str, *, limit: int = 5) -> list[Session]:
        """The async ``BaseDb.search_sessions``."""
        if limit <= 0 or not query_words(query):
            return []
        sessions = await self.list_sessions(user_id=user_id, limit=SCAN)
        return rank_sessions([s for s in sessions if s.user_id == user_id], query, limit)

    @abc.abstractmethod
    async def delete_session(self, session_id: str) -> bool: ...

    async def fork_session(self, session_id: str, *, at_seq: int, new_session_id: str) -> Session:
        return await arun_fork(self, fork_steps(session_id, at_seq, new_session_id))

    @abc.abstractmethod
    async def commit_turn(
        self, run: Run, session: Session, *, expected_version: int | None
    ) -> tuple[Run, Session]:
        """The async ``BaseDb.commit_turn``: run and session in one atomic write."""

    @abc.abstractmethod
    async def append_run(self, run: Run) -> Run: ...
    @abc.abstractmethod
    async def get_run(self, run_id: str) -> Run | None: ...
    @abc.abstractmethod
    async def get_last_runs(
        self,
        session_id: str,
        limit: int,
        *,
        before_seq: int | None = None,
        top_level_only: bool = False,
        status: RunStatus | None = None,
    ) -> list[Run]: ...
    async def read_turn(
        self,
        session_id: str,
        limit: int,
        *,
        top_level_only: bool = False,
        status: RunStatus | None = None,
    ) -> tuple[Session | None, list[Run]]:
        """The async ``BaseDb.read_turn``: the session and its last runs in one round trip."""
        session = await self.get_session(session_id)
        runs = (
            await self.get_last_runs(
                session_id, limit, top_level_only=top_level_only, status=status
            )
            if limit > 0
            else []
        )
        return session, runs

    @abc.abstractmethod
    async def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        output: object = None,
        messages: Sequence[object] | None = None,
        metrics: dict[str, object] | None = None,
    ) -> Run: ...

    @abc.abstractmethod
    async def upsert_memory(
        self, memory: Memory, *, embedding: Embedding | None = None
    ) -> Memory: ...
    @abc.abstractmethod
    async def get_memory(self, memory_id: str) -> Memory | None: ...
    @abc.abstractmethod
    async def list_memories(
        self,
        user_id: str,
        *,
        agent_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Memory]: ...
    @abc.abstractmethod
    async def search_memories(
        self, user_id: str, query: str, *, agent_id: str | None = None, limit: int = 5
    ) -> list[ScoredMemory]: ...
    @abc.abstractmethod
    async def delete_memory(self, memory_id: str) -> bool: ...

    async def recall_memories(
        self,
        user_id: str,
        query: str,
        *,
        agent_id: str | None = None,
        limit: int = 5,
        recent: int = 3,
    ) -> tuple[list[ScoredMemory], list[Memory]]:
        """The async ``BaseDb.recall_memories``."""
        ranked = (
            await self.search_memories(user_id, query, agent_id=agent_id, limit=limit)
            if query
            else []
        )
        newest = (
            await self.list_memories(user_id, agent_id=agent_id, limit=recent) if recent else []
        )
        return ranked, newest

    @abc.abstractmethod
    async def upsert_learning(
        self, learning: Learning, *, embedding: Embedding | None = None
    ) -> Learning: ...
    @abc.abstractmethod
    async def get_learning(self, learning_id: str) -> Learning | None: ...
    @abc.abstractmethod
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
    ) -> list[Learning]: ...
    @abc.abstractmethod
    async def search_learnings(
        self,
        query: str,
        *,
        kind: str | None = None,
        namespace: str | None = None,
        user_id: str | None = None,
        status: LearningStatus | None = LearningStatus.ACTIVE,
        limit: int = 5,
    ) -> list[ScoredLearning]: ...
    @abc.abstractmethod
    async def delete_learning(self, learning_id: str) -> bool: ...

    @abc.abstractmethod
    async def search_memories_by_vector(
        self, user_id: str, embedding: Embedding, *, agent_id: str | None = None, limit: int = 5
    ) -> list[ScoredMemory]: ...
    @abc.abstractmethod
    async def search_learnings_by_vector(
        self,
        embedding: Embedding,
        *,
        kind: str | None = None,
        namespace: str | None = None,
        user_id: str | None = None,
        status: LearningStatus | None = LearningStatus.ACTIVE,
        limit: int = 5,
    ) -> list[ScoredLearning]: ...
    @abc.abstractmethod
    async def set_embeddings(
        self, table: VectorTable, embeddings: Mapping[str, Embedding]
    ) -> int: ...
    @abc.abstractmethod
    async def memories_without_embedding(self, model: str, *, limit: int = 100) -> list[Memory]: ...
    @abc.abstractmethod
    async def learnings_without_embedding(
        self, model: str, *, kinds: Sequence[str] | None = None, limit: int = 100
    ) -> list[Learning]: ...

    async def export_records(
        self,
        record_kind: RecordKind,
        *,
        after: str | None = None,
        limit: int = DEFAULT_PAGE,
        user_id: str | None = None,
    ) -> RecordPage:
        """The async ``BaseDb.export_records``."""
        raise NotImplementedError(_no_transfer(self, "export_records"))

    async def import_records(self, batch: RecordPage) -> int:
        """The async ``BaseDb.import_records``."""
        raise NotImplementedError(_no_transfer(self, "import_records"))

    async def apply_retention(
        self,
        policy: RetentionPolicy | None = None,
        *,
        dry_run: bool = False,
        batch_size: int = DEFAULT_BATCH,
        max_batches: int | None = None,
        now: datetime | None = None,
    ) -> RetentionReceipt:
        """The async ``BaseDb.apply_retention``."""
        steps = _retention(self, policy, dry_run, batch_size, max_batches, now)
        return await arun_steps(self, steps)

    async def retention_batch(
        self, rule: RetentionRule, *, limit: int, after: str | None = None, dry_run: bool = False
    ) -> RetentionBatch:
        """The async ``BaseDb.retention_batch``."""
        raise NotImplementedError(_no_retention(self))

    async def storage_report(self) -> StorageReport:
        """The async ``BaseDb.storage_report``."""
        return basic_report(self)


def basic_report(db: _DbInfo) -> StorageReport:
    """The report of a backend that does not read its own schema: only who and where."""
    return StorageReport(
        backend=db.backend_name,
        target=db.storage_target(),
        capabilities=[
            Capability(
                "storage report",
                False,
                f"{type(db).__name__} does not implement storage_report(), so kern doctor "
                "cannot see its schema, versions or missing tables",
                "ask the backend's authors to implement it (docs/plugins.md)",
            )
        ],
    )


def _retention(
    db: _DbInfo,
    policy: RetentionPolicy | None,
    dry_run: bool,
    batch_size: int,
    max_batches: int | None,
    now: datetime | None,
) -> Generator[Request, Any, RetentionReceipt]:
    """``apply_retention``'s steps (``kern.retention.steps``) for either flavour."""
    return retention_steps(
        db.backend_name or type(db).__name__,
        resolve_policy(db.retention, policy),
        dry_run=dry_run,
        batch_size=batch_size,
        max_batches=max_batches,
        now=now,
    )


def _no_retention(db: _DbInfo) -> str:
    return (
        f"{type(db).__name__} does not implement retention_batch, so apply_retention and "
        "kern retention cannot use it; a backend adds it as docs/plugins.md, 'Retention', "
        "describes. Nothing was deleted."
    )


def _no_transfer(db: _DbInfo, method: str) -> str:
    return (
        f"{type(db).__name__} does not implement {method}, so kern export / import / copy "
        "cannot use it; a backend adds it as docs/plugins.md, 'Moving data', describes"
    )


guard_contract(BaseDb)
