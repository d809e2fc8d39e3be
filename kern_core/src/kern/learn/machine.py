"""The learning machine: which stores are on, and what happens each turn.

Per turn (the Agent calls both, inside its own turn, sync or async alike):

- ``recall(scope, input)`` before the model is called: each store fetches what is relevant
  (an exact get for the profile and session context, the backend's ranked search bounded
  by ``limit`` for the rest) and renders it; the texts go into the system prompt, and the
  tools of AGENTIC stores go to the model.
- ``extract(scope, run, model)`` once the answer is complete: if any store is in ALWAYS or
  PROPOSE mode, *one* model call offers the finished turn (the user's input, tool traffic
  and the answer) with one extraction tool per such store. Invalid arguments lose only
  their invalid parts, and are sent back for one retry (``kern.learn.extraction``);
  the counts go to ``run.metrics["extraction"]``.
- ``process(scope, run, model, extracted)`` after the run is stored: each store gets the
  validated arguments of the calls to its tool and writes (or proposes) what they hold.
- ``process_later(scope, run, model)`` instead, with ``background=True``: the run's learning
  is marked pending in the database and both steps run after the answer is returned
  (``kern.learn.background``).

Stores are resolved per backend through the plugin registry: a backend's own
implementation of a kind (``LearningStoreSpec(kind, store, backend="postgres")``) is
preferred, then the generic one (``backend=None``).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import JsonValue

from kern import storage
from kern.effects import Call, Effect, Turn
from kern.errors import ConfigurationError, SyncAsyncMismatchError
from kern.ids import check_id, check_input
from kern.learn.background import LEASE_SECONDS, Jobs, learn_later, resume
from kern.learn.base import (
    AGENT,
    Extraction,
    LearningMode,
    LearningNotFoundError,
    LearningStore,
    NotProposedError,
    check_namespace,
    mode_of,
)
from kern.learn.embedder import CachedEmbedder
from kern.learn.extraction import extract as extract_turn
from kern.learn.progress import progress_line
from kern.learn.ranking import Hybrid
from kern.learn.scope import LearningScope, Recall
from kern.learn.stores import UserMemoryStore
from kern.models.base import Model
from kern.performers import arun_turn, run_turn
from kern.plugins import Registry, registry, resolve
from kern.records import (
    Embedding,
    Learning,
    LearningStatus,
    Memory,
    Message,
    Run,
    RunStatus,
    ScoredMemory,
)
from kern.tools import Tool

if TYPE_CHECKING:
    from kern.db.base import AsyncBaseDb, BaseDb, VectorTable
    from kern.learn.curator import Curator
    from kern.learn.embedder import Embedder

T = TypeVar("T")

#: What ``LearningMachine.extract`` returns: the validated arguments for each store kind.
Extracted = dict[str, list[Any]]

#: The key of ``Run.metrics`` under which a turn's extraction counts are stored.
EXTRACTION_METRICS = "extraction"

#: The row recording which embedder made the database's vectors (``_note_embedder``).
EMBEDDER_RECORD = Learning(learning_id="kern-embedder", kind="kern_embedder", namespace="kern")

log = logging.getLogger("kern.learn")

#: The built-in stores in the order their sections appear in the prompt.
BUILTIN_KINDS = (
    "user_profile",
    "user_memory",
    "session_context",
    "entity_memory",
    "learned_knowledge",
    "decision_log",
)

CONTEXT_HEADER = (
    "What you have learned in earlier conversations (use it when it helps; it may be incomplete):"
)

EXTRACTION_SYSTEM = """\
You maintain the long-term memory of an AI assistant. Read the conversation turn below and \
call the tools for what is worth keeping:
{tools}
Record only what the conversation states or clearly implies; never guess. Skip small talk. \
You may call several tools, or one tool several times. If nothing is worth keeping, reply \
with the single word: nothing."""

#: Each message of the turn is cut to this many characters in the extraction request.
MAX_EXTRACTION_MESSAGE_CHARS = 4000


def resolve_store(kind: str, backend: str | None = None) -> type[LearningStore]:
    """The store class registered for ``kind``: ``backend``'s own first, then the generic."""
    stores = registry().learning_stores
    spec = (stores.get((kind, backend)) if backend else None) or stores.get((kind, None))
    if spec is None:
        known = sorted({k for k, _ in stores})
        raise ConfigurationError(
            f"no learning store of kind {kind!r} is registered (known: {', '.join(known)}). "
            "Install the plugin that provides it, or pass the store class itself."
        )
    store = resolve(spec.store)
    if not (isinstance(store, type) and issubclass(store, LearningStore)):
        raise ConfigurationError(
            f"the learning store registered for {kind!r} ({spec.store!r}) is not a "
            "kern.learn.LearningStore subclass"
        )
    return store


class _Entry:
    """One configured store, before it is resolved for a backend."""

    def __init__(
        self,
        kind: str,
        *,
        options: dict[str, Any] | None = None,
        instance: LearningStore | None = None,
        cls: type[LearningStore] | None = None,
        by_kind: bool = True,
    ) -> None:
        self.kind = kind
        self.options = options or {}
        self.instance = instance
        self.cls = cls
        #: Whether the backend's own implementation of the kind may stand in.
        self.by_kind = by_kind

    def build(self, backend: str | None) -> LearningStore:
        if not self.by_kind:
            if self.instance is not None:
                return copy.copy(self.instance)
            assert self.cls is not None
            return self.cls(**self.options)
        cls = resolve_store(self.kind, backend)
        if self.instance is not None:
            if type(self.instance) is cls:
                return copy.copy(self.instance)
            return cls(**self.instance.options)
        return cls(**self.options)


def _entry(kind: str | None, value: Any) -> _Entry | None:
    """A flag (``True``, a mode, options, a class or an instance) as an entry."""
    if value is None or value is False:
        return None
    if isinstance(value, LearningStore):
        value_kind = type(value).kind
        return _Entry(value_kind, instance=value, by_kind=_is_generic(type(value)))
    if isinstance(value, type) and issubclass(value, LearningStore):
        return _Entry(value.kind, cls=value, by_kind=_is_generic(value))
    if isinstance(value, str) and kind is None:
        return _Entry(value)
    if kind is None:
        raise ConfigurationError(
            "stores=[...] takes store kinds ('user_memory'), LearningStore classes or "
            f"instances, not {value!r}"
        )
    if value is True:
        return _Entry(kind)
    if isinstance(value, LearningMode | str):
        return _Entry(kind, options={"mode": mode_of(value)})
    if isinstance(value, dict):
        return _Entry(kind, options=dict(value))
    raise ConfigurationError(
        f"{kind}= takes True/False, a LearningMode, a dict of options or a store, not {value!r}"
    )


def _is_generic(cls: type[LearningStore]) -> bool:
    """Whether ``cls`` is exactly the generic store registered for its kind."""
    spec = registry().learning_stores.get((cls.kind, None))
    if spec is None:
        return False
    try:
        return resolve(spec.store) is cls
    except ImportError:
        return False


class LearningMachine:
    """Which learning stores an agent uses, in which mode and namespace.

    ``LearningMachine()`` (what ``Agent(learning=True)`` builds) turns on the user profile
    and user memory in ALWAYS mode. Each store flag takes ``True``, a ``LearningMode``,
    a dict of the store's options, or a store instance (``UserProfileStore(schema=...)``).
    ``stores=[...]`` lists stores by kind, class or instance (third-party kinds too);
    when it is given, the profile and memory are on only if named there or by their flag.

    ``mode`` is the default mode of stores that set none; ``namespace`` the default of
    entity memory and learned knowledge (the decision log is per agent unless given one).
    ``model`` does the extraction instead of the agent's model. ``embedder`` lets the
    curator find near-duplicates by embedding similarity.

    ``background=True`` returns the answer before the extraction runs (a task on the loop
    for ``arun``, a worker thread for ``run``); a run whose learning has not finished is
    marked in the database, and the next process finishes it (``resume_pending``).
    ``wait()`` / ``await await_pending()`` wait for it; ``lease_seconds`` is how long a
    process holds a pending run before another may take it over.

    ``agent.get_learning_machine()`` returns the machine bound to the agent's db and model:
    ``approve``, ``reject``, ``pending`` and ``curator`` work on that db (sync methods on
    a sync db; the ``a``-prefixed twins on either).
    """

    def __init__(
        self,
        *,
        user_profile: Any = None,
        user_memory: Any = None,
        session_context: Any = None,
        entity_memory: Any = None,
        learned_knowledge: Any = None,
        decision_log: Any = None,
        stores: Sequence[Any] = (),
        mode: LearningMode | str = LearningMode.ALWAYS,
        namespace: str | None = None,
        embedder: Embedder | None = None,
        hybrid: Hybrid | None = None,
        model: Model | None = None,
        db: BaseDb | AsyncBaseDb | None = None,
        background: bool = False,
    ) -> None:
        default_on = not stores
        flags = {
            "user_profile": default_on if user_profile is None else user_profile,
            "user_memory": default_on if user_memory is None else user_memory,
            "session_context": session_context,
            "entity_memory": entity_memory,
            "learned_knowledge": learned_knowledge,
            "decision_log": decision_log,
        }
        entries = [e for kind, value in flags.items() if (e := _entry(kind, value))]
        for value in stores:
            entry = _entry(None, value)
            assert entry is not None
            entries.append(entry)
        kinds = [e.kind for e in entries]
        if not all(kinds):
            raise ConfigurationError("every learning store needs a non-empty `kind`")
        repeated = sorted({k for k in kinds if kinds.count(k) > 1})
        if repeated:
            raise ConfigurationError(f"learning store configured twice: {', '.join(repeated)}")
        self._entries = entries
        resolved_mode = mode_of(mode)
        assert resolved_mode is not None
        self.mode = resolved_mode
        if namespace is not None:
            check_namespace(namespace)
        self.namespace = namespace
        self.embedder = embedder
        self.hybrid = hybrid or Hybrid()
        #: What the stores embed with: the same model, each text asked for once.
        self._store_embedder = CachedEmbedder(embedder) if embedder is not None else None
        #: The embedders already recorded in (and checked against) the database.
        self._noted_embedders: set[str] = set()
        self.model = model
        self.db = db
        #: Whether learning runs after the answer is returned (``kern.learn.background``).
        self.background = background
        #: Seconds a process holds a pending run before another may take it over.
        self.lease_seconds = LEASE_SECONDS
        #: What this machine (and its bound copies) scheduled in the background.
        self.jobs = Jobs()
        self._cache: dict[str | None, tuple[Registry, list[LearningStore]]] = {}
        # Fail at construction on unknown kinds and bad options, not at the first turn.
        self.stores_for(None)

    # -- configuration ---------------------------------------------------------------
    @property
    def kinds(self) -> list[str]:
        return [entry.kind for entry in self._entries]

    def stores_for(self, backend: str | None) -> list[LearningStore]:
        """The configured stores as implemented for ``backend`` (cached)."""
        current = registry()
        cached = self._cache.get(backend)
        if cached is not None and cached[0] is current:
            return cached[1]
        stores = [self._configured(entry.build(backend)) for entry in self._entries]
        self._cache[backend] = (current, stores)
        return stores

    @property
    def stores(self) -> list[LearningStore]:
        """The stores for the bound db's backend (generic ones when unbound)."""
        return self.stores_for(self._backend)

    def store(self, kind: str) -> LearningStore:
        """The configured store of ``kind``; an unconfigured kind gets a default instance
        (so that its proposals can still be approved)."""
        for store in self.stores:
            if store.kind == kind:
                return store
        return self._configured(resolve_store(kind, self._backend)())

    def _configured(self, store: LearningStore) -> LearningStore:
        if store.mode is None:
            store.mode = self.mode
        if store.vectorised and self._store_embedder is not None:
            store.embedder = self._store_embedder
            store.hybrid = self.hybrid
        if (
            store.namespaced
            and store.namespace is None
            and self.namespace is not None
            and AGENT not in store.extra_namespaces
        ):
            store.namespace = self.namespace
        return store

    def bind(
        self, *, db: BaseDb | AsyncBaseDb | None = None, model: Model | None = None
    ) -> LearningMachine:
        """A copy of this machine working on ``db`` (its own ``model`` kept if it has one)."""
        bound = copy.copy(self)
        if db is not None:
            bound.db = db
        if bound.model is None:
            bound.model = model
        return bound

    @property
    def _backend(self) -> str | None:
        return getattr(self.db, "backend_name", None) or None

    # -- the turn --------------------------------------------------------------------
    def recall(self, scope: LearningScope, input: Any) -> Turn[Recall]:
        """Before the model loop: the context and tools the stores add to this turn."""
        query = input if isinstance(input, str) else str(input or "")
        if self.embedder is not None and self.embedder.id not in self._noted_embedders:
            self._noted_embedders.add(self.embedder.id)
            yield from self._note_embedder(self.embedder)
        sections: list[str] = []
        tools: list[Tool] = []
        for store in self.stores_for(scope.backend):
            if not store.applies(scope):
                continue
            items = yield from _turn_of(store.recall(scope, query))
            text = store.build_context(items)
            if text:
                sections.append(text)
            if store.mode is LearningMode.AGENTIC:
                tools += store.get_tools(scope)
        if tools:
            names = ", ".join(tool.spec.name for tool in tools)
            sections.append(
                f"When you learn something worth keeping, save it with these tools: {names}."
            )
        context = "\n\n".join([CONTEXT_HEADER, *sections]) if sections else ""
        return Recall(context=context, tools=tools)

    def extract(self, scope: LearningScope, run: Run, model: Model) -> Turn[Extracted]:
        """The turn's extraction (ALWAYS / PROPOSE stores): the model call, its arguments
        validated part by part, at most one retry (``kern.learn.extraction``). No database
        call. It runs after the run is stored (an answered turn is never lost to a crash
        while the model extracts), so the counts it records in ``run.metrics["extraction"]``
        reach the caller's ``RunOutput``, not the stored run. Returns what each store (by
        kind) is to learn."""
        model = self.model or model
        stores = [s for s in self.stores_for(scope.backend) if s.applies(scope)]
        extractions: list[tuple[LearningStore, Extraction]] = []
        for store in stores:
            if store.mode in (LearningMode.ALWAYS, LearningMode.PROPOSE):
                extraction = store.extraction()
                if extraction is not None:
                    extractions.append((store, extraction))
        extracted: Extracted = {store.kind: [] for store in stores}
        if not extractions or run.status is not RunStatus.COMPLETED:
            return extracted
        messages = extraction_messages([e for _, e in extractions], run)
        kept, stats = yield from extract_turn(
            model, messages, [e for _, e in extractions], run.run_id
        )
        for store, extraction in extractions:
            extracted[store.kind] += kept[extraction.spec.name]
        run.metrics[EXTRACTION_METRICS] = stats.as_metrics()
        return extracted

    def process(
        self, scope: LearningScope, run: Run, model: Model, extracted: Extracted | None = None
    ) -> Turn[None]:
        """After the run is stored: let every store learn from it, with what ``extract``
        returned (extracted now when not given)."""
        if extracted is None:
            extracted = yield from self.extract(scope, run, model)
        model = self.model or model
        for store in self.stores_for(scope.backend):
            if store.applies(scope):
                learned = extracted.get(store.kind, [])
                yield from _turn_of(store.process(scope, run, model, learned))

    def process_later(self, scope: LearningScope, run: Run, model: Model) -> Turn[None]:
        """After the run is stored, with ``background=True``: mark its learning pending and
        leave ``extract`` and ``process`` to a job the driver runs after the turn."""
        yield from learn_later(self, scope, run, model)

    # -- background learning ---------------------------------------------------------
    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the learning scheduled by sync turns is done (or ``timeout`` seconds
        passed); True if nothing is left. For scripts and tests: a turn never needs it."""
        return self.jobs.wait(timeout)

    async def await_pending(self, timeout: float | None = None) -> bool:
        """Wait until the learning scheduled on this loop (and on the sync worker) is done;
        True if nothing is left. Await it before the loop ends: ``asyncio.run`` cancels
        tasks that are left, and their runs are finished by the next process instead."""
        return await self.jobs.await_pending(timeout)

    def _resume(self, limit: int) -> Turn[int]:
        if self.model is None:
            raise ConfigurationError(
                "resuming pending learning needs a model for the extraction: use "
                "agent.get_learning_machine(), or LearningMachine(model=...)"
            )
        return (yield from resume(self, self.model, self._backend, limit))

    def resume_pending(self, *, limit: int = 100) -> int:
        """Finish the learning of runs that a process left pending (it crashed, or exited
        before its background learning ran), up to ``limit`` of them, each exactly once
        whatever other processes do at the same time; returns how many were finished.
        A background machine also starts this on its first turn in a process."""
        return self._sync(self._resume(limit), "resume_pending")

    async def aresume_pending(self, *, limit: int = 100) -> int:
        return await self._async(self._resume(limit))

    # -- the proposal queue ----------------------------------------------------------
    def _proposal(self, learning_id: str, approve: bool) -> Turn[tuple[LearningStore, Learning]]:
        """The stored proposal ``learning_id`` and the store of its kind."""
        learning = yield from storage.get_learning(learning_id)
        if learning is None:
            raise LearningNotFoundError(f"no learning {learning_id!r} is stored")
        if learning.status is not LearningStatus.PROPOSED:
            verb = "approved" if approve else "rejected"
            raise NotProposedError(
                f"learning {learning_id!r} is {learning.status.value}, not proposed: only "
                f"proposed learnings can be {verb}"
            )
        return self.store(learning.kind), learning

    def _approve(self, learning_id: str) -> Turn[Learning | Memory]:
        store, learning = yield from self._proposal(learning_id, True)
        return (yield from store.approve(learning))

    def _reject(self, learning_id: str) -> Turn[Learning]:
        store, learning = yield from self._proposal(learning_id, False)
        return (yield from store.reject(learning))

    def approve(self, learning_id: str) -> Learning | Memory:
        """Approve a proposed learning: it becomes active (and is recalled from now on).
        Returns what is stored (a ``Memory`` for a user memory, else a ``Learning``)."""
        return self._sync(self._approve(learning_id), "approve")

    async def aapprove(self, learning_id: str) -> Learning | Memory:
        return await self._async(self._approve(learning_id))

    def reject(self, learning_id: str) -> Learning:
        """Reject a proposed learning: it is kept as ``rejected`` and never recalled."""
        return self._sync(self._reject(learning_id), "reject")

    async def areject(self, learning_id: str) -> Learning:
        return await self._async(self._reject(learning_id))

    def _pending(
        self, user_id: str | None, kind: str | None, namespace: str | None, limit: int
    ) -> Turn[list[Learning]]:
        return (
            yield from storage.query_learnings(
                kind=kind,
                namespace=namespace,
                user_id=user_id,
                status=LearningStatus.PROPOSED,
                limit=limit,
            )
        )

    def pending(
        self,
        *,
        user_id: str | None = None,
        kind: str | None = None,
        namespace: str | None = None,
        limit: int = 100,
    ) -> list[Learning]:
        """Proposals waiting for a decision, newest first.

        Per-user items (profile, memory, the "user" namespace) carry their user's id;
        items proposed for a shared namespace carry none: list those with ``namespace=``.
        """
        return self._sync(self._pending(user_id, kind, namespace, limit), "pending")

    async def apending(
        self,
        *,
        user_id: str | None = None,
        kind: str | None = None,
        namespace: str | None = None,
        limit: int = 100,
    ) -> list[Learning]:
        return await self._async(self._pending(user_id, kind, namespace, limit))

    # -- reading ---------------------------------------------------------------------
    def _profile(self, user_id: str) -> Turn[dict[str, Any] | None]:
        rows = yield from storage.query_learnings(
            kind="user_profile", user_id=user_id, status=LearningStatus.ACTIVE, limit=1
        )
        return dict(rows[0].content) if rows else None

    def get_user_profile(self, user_id: str) -> dict[str, Any] | None:
        """The user's active profile fields, or None."""
        return self._sync(self._profile(user_id), "get_user_profile")

    async def aget_user_profile(self, user_id: str) -> dict[str, Any] | None:
        return await self._async(self._profile(user_id))

    # -- memories --------------------------------------------------------------------
    def _memory_store(self) -> UserMemoryStore:
        store = self.store(UserMemoryStore.kind)
        if not isinstance(store, UserMemoryStore):
            raise ConfigurationError(
                f"the user_memory store of this machine is {type(store).__name__}, not a "
                "UserMemoryStore: add and search its memories through that store"
            )
        return store

    def _add_memory(
        self, user_id: str, content: str, topics: Sequence[str] | None, agent_id: str | None
    ) -> Turn[Memory | None]:
        check_id("user_id", user_id)
        check_id("agent_id", agent_id, optional=True)
        check_input(content)
        content = content.strip()
        if not content:
            return None
        return (
            yield from self._memory_store().remember(
                user_id, content, list(topics or ()), agent_id=agent_id
            )
        )

    def add_memory(
        self,
        user_id: str,
        content: str,
        topics: Sequence[str] | None = None,
        *,
        agent_id: str | None = None,
    ) -> Memory | None:
        """Store a memory of ``user_id`` now, whatever the store's mode (a person adding
        it is its approval). A restated memory is refreshed, not repeated; blank content
        stores nothing (``None``)."""
        return self._sync(self._add_memory(user_id, content, topics, agent_id), "add_memory")

    async def aadd_memory(
        self,
        user_id: str,
        content: str,
        topics: Sequence[str] | None = None,
        *,
        agent_id: str | None = None,
    ) -> Memory | None:
        return await self._async(self._add_memory(user_id, content, topics, agent_id))

    def _search_memories(
        self, user_id: str, query: str, limit: int, agent_id: str | None
    ) -> Turn[list[ScoredMemory]]:
        check_id("user_id", user_id)
        check_id("agent_id", agent_id, optional=True)
        check_input(query)
        store = self._memory_store()
        return (yield from store.search(user_id, query, agent_id=agent_id, limit=limit))

    def search_memories(
        self, user_id: str, query: str, limit: int = 5, *, agent_id: str | None = None
    ) -> list[ScoredMemory]:
        """``user_id``'s memories most relevant to ``query``, best first: the ranking a
        turn's recall uses (the backend's text search on the query's content words, fused
        with the nearest by meaning when the machine has an embedder)."""
        return self._sync(self._search_memories(user_id, query, limit, agent_id), "search_memories")

    async def asearch_memories(
        self, user_id: str, query: str, limit: int = 5, *, agent_id: str | None = None
    ) -> list[ScoredMemory]:
        return await self._async(self._search_memories(user_id, query, limit, agent_id))

    # -- vectors ---------------------------------------------------------------------
    def _require_embedder(self) -> Embedder:
        if self.embedder is None:
            raise ConfigurationError(
                "this learning machine has no embedder: create it with "
                "LearningMachine(embedder=OpenAIEmbedder(...)) or LocalEmbedder()"
            )
        return self.embedder

    def _note_embedder(self, embedder: Embedder) -> Turn[None]:
        """Record which embedder makes this database's vectors (its id and dimension), and
        say so once when it changed or rows lack its vectors: vector recall compares only
        vectors of one model, so until ``lm.reembed()`` the others are found by words only."""
        rows = yield from storage.query_learnings(
            kind=EMBEDDER_RECORD.kind, namespace=EMBEDDER_RECORD.namespace, limit=1
        )
        probe = yield from Call(embedder.embed, {"texts": ["kern"]})
        current: dict[str, JsonValue] = {"id": embedder.id, "dimensions": len(probe[0])}
        if rows and rows[0].content != current:
            log.warning(
                "vectors in this database were made by %s; this learning machine embeds with "
                "%s: recall finds the other rows by words only until lm.reembed() runs",
                rows[0].content,
                current,
            )
        if not rows or rows[0].content != current:
            yield from storage.upsert_learning(
                EMBEDDER_RECORD.model_copy(update={"content": current})
            )
        missing = yield from storage.memories_without_embedding(embedder.id, limit=1)
        if missing:
            log.warning(
                "some memories have no vector by %s (stored before vectors were on, or by "
                "another embedder): lm.reembed() gives them one",
                embedder.id,
            )

    def _reembed(
        self, batch_size: int, progress: Callable[[str, int], None] | None
    ) -> Turn[dict[str, int]]:
        embedder = self._require_embedder()
        if batch_size < 1:
            raise ConfigurationError("batch_size must be at least 1")
        model = embedder.id
        done = {"memories": 0, "learnings": 0}

        def backfill(
            table: VectorTable,
            missing: Callable[[], Effect[list[T]]],
            key: Callable[[T], str],
            text: Callable[[T], str],
        ) -> Turn[None]:
            """Embed ``table``'s rows without a vector by ``model``, a batch at a time."""
            while rows := (yield from missing()):
                vectors = yield from Call(embedder.embed, {"texts": [text(r) for r in rows]})
                embeddings = {
                    key(row): Embedding(model=model, vector=vector)
                    for row, vector in zip(rows, vectors, strict=True)
                }
                stored = yield from storage.set_embeddings(table, embeddings)
                done[table] += stored
                if progress is not None:
                    progress(table, done[table])
                if stored == 0:
                    break  # every row of the batch went away meanwhile

        yield from backfill(
            "memories",
            lambda: storage.memories_without_embedding(model, limit=batch_size),
            lambda memory: memory.memory_id,
            lambda memory: memory.content,
        )
        by_kind = {store.kind: store for store in self.stores if store.embeds}
        by_kind.pop(UserMemoryStore.kind, None)  # its learnings are proposals: not searched
        if by_kind:
            kinds = sorted(by_kind)
            yield from backfill(
                "learnings",
                lambda: storage.learnings_without_embedding(model, kinds=kinds, limit=batch_size),
                lambda learning: learning.learning_id,
                lambda learning: by_kind[learning.kind].item_text(learning.content),
            )
        return done

    def reembed(self, *, progress: bool = False, batch_size: int = 64) -> dict[str, int]:
        """Give every memory, and every learning of the stores that embed, a vector by this
        machine's embedder: those with none (stored before vectors were on) and those
        another embedder made. Resumable: an interrupted run keeps what it stored and the
        next one goes on from there. Returns the rows embedded per table;
        ``progress=True`` shows the count in the terminal as it goes."""
        with progress_line(progress) as report:
            return self._sync(self._reembed(batch_size, report), "reembed")

    async def areembed(self, *, progress: bool = False, batch_size: int = 64) -> dict[str, int]:
        with progress_line(progress) as report:
            return await self._async(self._reembed(batch_size, report))

    # -- maintenance -----------------------------------------------------------------
    @property
    def curator(self) -> Curator:
        """Pruning and deduplication of stored memories and learnings."""
        from kern.learn.curator import Curator

        return Curator(self)

    # -- driving ---------------------------------------------------------------------
    def _require_db(self) -> BaseDb | AsyncBaseDb:
        if self.db is None:
            raise ConfigurationError(
                "this learning machine has no db: use agent.get_learning_machine(), or "
                "LearningMachine(db=SqliteDb(db_file=...))"
            )
        return self.db

    def _sync(self, turn: Turn[T], name: str, async_name: str | None = None) -> T:
        db = self._require_db()
        if db.is_async:
            turn.close()
            raise SyncAsyncMismatchError(
                f"lm.{name}() was called on a learning machine with an async database "
                f"({type(db).__name__}). Use `await lm.{async_name or 'a' + name}(...)`."
            )
        return run_turn(turn, db)

    async def _async(self, turn: Turn[T]) -> T:
        return await arun_turn(turn, self._require_db())

    def __repr__(self) -> str:
        background = ", background=True" if self.background else ""
        return f"LearningMachine(stores={self.kinds!r}, mode={self.mode.value!r}{background})"


def _turn_of(result: Turn[T]) -> Turn[T]:
    """A store method's generator run as part of the turn; a plain return value (a store
    that needs no database call, written as a plain function) is taken as it is."""
    if isinstance(result, Generator):
        return (yield from result)
    return result  # not a generator, despite the protocol: the value itself


def extraction_messages(extractions: Sequence[Extraction], run: Run) -> list[Message]:
    """The request that asks the model what to keep from ``run``."""
    tools = "\n".join(f"- {e.instructions}" for e in extractions)
    lines = []
    for message in run.messages:
        text = (message.content or "")[:MAX_EXTRACTION_MESSAGE_CHARS]
        if message.role == "user":
            lines.append(f"User: {text}")
        elif message.role == "assistant":
            if text:
                lines.append(f"Assistant: {text}")
            for call in message.tool_calls or []:
                arguments = call.arguments[:MAX_EXTRACTION_MESSAGE_CHARS]
                lines.append(f"Assistant called {call.name}({arguments})")
        elif message.role == "tool":
            lines.append(f"Tool result: {text}")
    transcript = "\n\n".join(lines) or "(empty)"
    return [
        Message(role="system", content=EXTRACTION_SYSTEM.format(tools=tools)),
        Message(role="user", content=f"The conversation turn:\n\n{transcript}"),
    ]


__all__ = [
    "BUILTIN_KINDS",
    "EXTRACTION_METRICS",
    "Extracted",
    "LearningMachine",
    "extraction_messages",
    "resolve_store",
]
