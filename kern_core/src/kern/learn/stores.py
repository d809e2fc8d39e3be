"""The six built-in learning stores.

- ``UserProfileStore`` (``user_profile``): kern_learnings, one active row per user.
- ``UserMemoryStore`` (``user_memory``): rows of kern_memories (proposals wait in
  kern_learnings).
- ``SessionContextStore`` (``session_context``): kern_learnings, one active row per session.
- ``EntityMemoryStore`` (``entity_memory``): kern_learnings, one row per entity and
  namespace.
- ``LearnedKnowledgeStore`` (``learned_knowledge``): kern_learnings, one row per insight,
  in a namespace.
- ``DecisionLogStore`` (``decision_log``): kern_learnings, one row per decision, per agent
  by default.

Single documents (profile, session context, an entity) are read with an exact
``query_learnings(..., limit=1)``; collections are found with the backend's ranked search
(``search_memories`` / ``search_learnings``) bounded by ``limit``. Every write records the
run it came from (``source_run_id``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from kern import storage
from kern.effects import Turn
from kern.learn.base import (
    AGENT,
    USER,
    Extraction,
    LearningStore,
    list_model,
    model_tool,
    partial_model,
    tool_parameters,
)
from kern.learn.scope import LearningScope
from kern.learn.text import jaccard, normalise, search_query, slug, token_set, words
from kern.models.base import Model, ToolSpec
from kern.records import Learning, LearningStatus, Memory, Run, ScoredMemory
from kern.tools import Tool

#: Text this similar (token Jaccard) to a stored item is treated as the same item on write.
WRITE_DUPLICATE_THRESHOLD = 0.9
#: Lists inside a document (an entity's facts...) keep at most this many entries, newest.
MAX_LIST_ITEMS = 50


# -- item models (subclass them for custom schemas) ---------------------------------------


class UserProfile(BaseModel):
    """Structured facts about the user: one profile per user, updated as they are learned.

    Subclass it to add fields, and pass it as ``UserProfileStore(schema=MyProfile)``.
    """

    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(None, description="The user's full name.")
    preferred_name: str | None = Field(None, description="What the user likes to be called.")
    role: str | None = Field(None, description="The user's job title or role.")
    organization: str | None = Field(None, description="Where the user works or studies.")
    location: str | None = Field(None, description="Where the user lives or is based.")
    timezone: str | None = Field(None, description="The user's time zone.")
    language: str | None = Field(None, description="The language the user prefers.")
    preferences: list[str] = Field(
        default_factory=list,
        description="Lasting preferences, e.g. 'prefers concise answers'.",
    )
    interests: list[str] = Field(default_factory=list, description="Topics the user cares about.")


class MemoryItem(BaseModel):
    """One observation about the user."""

    content: str = Field(
        description="One self-contained fact about the user, in the third person "
        "('The user prefers tea to coffee')."
    )
    topics: list[str] = Field(default_factory=list, description="A few short topic tags.")


class SessionContext(BaseModel):
    """What this session is about: goal, plan and progress."""

    model_config = ConfigDict(extra="ignore")

    goal: str | None = Field(None, description="What the user wants to achieve in this session.")
    summary: str | None = Field(None, description="The session so far, in a sentence or two.")
    # None (not [] by default): a call that leaves the plan out, or must send every field
    # (strict schemas), keeps the stored plan; [] clears it.
    plan: list[str] | None = Field(
        None,
        description="The steps still planned, in order (replaces the previous plan; "
        "null leaves it unchanged).",
    )
    progress: list[str] = Field(
        default_factory=list,
        description="Steps completed or results reached (added to those recorded).",
    )


class Relationship(BaseModel):
    relation: str = Field(description="How the entity relates, e.g. 'acquired', 'works at'.")
    target: str = Field(description="The other entity's name.")


class Entity(BaseModel):
    """Facts, events and relationships about a named thing other than the user."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="The entity's name, e.g. 'Acme Corp'.")
    entity_type: str | None = Field(None, description="company, project, person, product, place...")
    facts: list[str] = Field(default_factory=list, description="Lasting facts about it.")
    events: list[str] = Field(
        default_factory=list, description="Things that happened to it, with dates if known."
    )
    relationships: list[Relationship] = Field(
        default_factory=list, description="How it relates to other entities."
    )


class Insight(BaseModel):
    """An insight that transfers across users and tasks."""

    model_config = ConfigDict(extra="ignore")

    title: str = Field(description="A short name for the insight.")
    learning: str = Field(
        description="The insight, stated so that it helps in future conversations with "
        "anyone. No personal details about the user."
    )
    context: str | None = Field(None, description="When it applies.")
    tags: list[str] = Field(default_factory=list, description="A few short tags.")


class Decision(BaseModel):
    """A decision the agent made, with its reasoning, for auditing and learning."""

    model_config = ConfigDict(extra="ignore")

    decision: str = Field(description="What was decided.")
    reasoning: str = Field(description="Why.")
    context: str | None = Field(None, description="The situation it was made in.")
    alternatives: list[str] = Field(default_factory=list, description="Options not chosen.")


# -- helpers ------------------------------------------------------------------------------


def _key(value: Any) -> str:
    if isinstance(value, str):
        return normalise(value)
    return json.dumps(value, sort_keys=True)


def merge_lists(old: list[Any], new: list[Any], cap: int = MAX_LIST_ITEMS) -> list[Any]:
    """``old`` then the entries of ``new`` not already there (compared normalised); at most
    ``cap`` entries, dropping the oldest."""
    merged = list(old)
    seen = {_key(v) for v in merged}
    for value in new:
        if _key(value) not in seen:
            seen.add(_key(value))
            merged.append(value)
    return merged[-cap:]


def merge_content(
    old: dict[str, Any],
    new: dict[str, Any],
    replace: frozenset[str] = frozenset(),
    keep: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """``new`` merged into ``old``: given scalars overwrite, lists are added to (or replaced,
    for the field names in ``replace``), None means "not given"; fields in ``keep`` keep
    their first value."""
    merged = dict(old)
    for name, value in new.items():
        if value is None or (name in keep and merged.get(name) not in (None, "")):
            continue
        if isinstance(value, list) and name not in replace:
            previous = merged.get(name)
            merged[name] = merge_lists(previous if isinstance(previous, list) else [], value)
        else:
            merged[name] = value
    return merged


def _dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)


def _label(field: str) -> str:
    return field.replace("_", " ").capitalize()


@functools.cache
def _field_words(model: type[BaseModel] | None) -> frozenset[str]:
    """Words of field names: stored JSON carries them, so they must not steer a search."""
    found: set[str] = set()
    if model is None:
        return frozenset()
    for name, info in model.model_fields.items():
        found.update(words(name.replace("_", " ")))
        annotation = info.annotation
        for arg in getattr(annotation, "__args__", ()) or ():
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                found |= _field_words(arg)
    return frozenset(found)


def _is_duplicate(text: str, other: str) -> bool:
    if normalise(text) == normalise(other):
        return True
    return jaccard(token_set(text), token_set(other)) >= WRITE_DUPLICATE_THRESHOLD


def _bullets(values: Sequence[Any]) -> str:
    return "; ".join(str(v) for v in values)


def _lines(content: dict[str, Any], skip: Sequence[str] = ()) -> list[str]:
    lines = []
    for name, value in content.items():
        if name in skip or value in (None, "", [], {}):
            continue
        shown = _bullets(value) if isinstance(value, list) else value
        lines.append(f"- {_label(name)}: {shown}")
    return lines


# -- document stores: one active row per key ----------------------------------------------


class DocumentStore(LearningStore):
    """A store holding one active document per key (a user, a session, an entity).

    ALWAYS / AGENTIC writes merge into the active document in place. PROPOSE writes a
    separate ``proposed`` row holding only the update; approving it merges it into the
    active document (the proposal row becomes the active one and the old row is marked
    ``superseded``, so the history of approved changes is kept).
    """

    #: List fields that an update replaces instead of adding to.
    replace_lists: ClassVar[frozenset[str]] = frozenset()
    #: Fields that keep their first value (an entity's name as first written).
    keep_fields: ClassVar[frozenset[str]] = frozenset()
    #: The namespace rows are stored under, for stores without configurable namespaces.
    row_namespace: ClassVar[str] = "global"

    def key(self, scope: LearningScope, content: dict[str, Any]) -> dict[str, Any]:
        """The exact filters of the document ``content`` belongs to."""
        raise NotImplementedError

    def key_of(self, learning: Learning) -> dict[str, Any]:
        """The same filters, read back from a stored row."""
        raise NotImplementedError

    def current(self, filters: dict[str, Any]) -> Turn[Learning | None]:
        rows = yield from storage.query_learnings(
            kind=self.kind, **filters, status=LearningStatus.ACTIVE, limit=1
        )
        return rows[0] if rows else None

    def save(self, scope: LearningScope, content: dict[str, Any]) -> Turn[Learning | None]:
        """Merge ``content`` into the document (or propose it); return the stored row
        (None: nothing was stored, as for an entity without a name)."""
        filters = self.key(scope, content)
        row_fields = {"namespace": self.row_namespace, **filters}
        if self.status_for_new is LearningStatus.PROPOSED:
            proposal = Learning(
                kind=self.kind,
                **row_fields,
                content=content,
                status=LearningStatus.PROPOSED,
                source_run_id=scope.run_id,
            )
            return (yield from storage.upsert_learning(proposal))
        existing = yield from self.current(filters)
        if existing is None:
            row = Learning(
                kind=self.kind,
                **row_fields,
                content=self._merge({}, content),
                source_run_id=scope.run_id,
            )
        else:
            merged = self._merge(existing.content, content)
            row = existing.model_copy(update={"content": merged, "source_run_id": scope.run_id})
        return (yield from self.save_learning(row))

    def approve(self, learning: Learning) -> Turn[Learning]:
        filters = self.key_of(learning)
        existing = yield from self.current(filters)
        base = existing.content if existing is not None else {}
        merged = self._merge(base, learning.content)
        approved = learning.model_copy(update={"content": merged, "status": LearningStatus.ACTIVE})
        stored = yield from self.save_learning(approved)
        if existing is not None and existing.learning_id != learning.learning_id:
            superseded = existing.model_copy(update={"status": LearningStatus.SUPERSEDED})
            yield from storage.upsert_learning(superseded)  # no vector: never searched again
        return stored

    def _merge(self, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        return merge_content(old, new, self.replace_lists, self.keep_fields)

    def process(
        self,
        scope: LearningScope,
        run: Run,
        model: Model,
        extracted: Sequence[BaseModel] = (),
    ) -> Turn[None]:
        for update in extracted:
            for content in self.contents(update):
                if content:
                    yield from self.save(scope, content)

    def contents(self, update: BaseModel) -> list[dict[str, Any]]:
        """The document updates in one extraction call's arguments."""
        return [_dump(update)]


class SingleDocumentStore(DocumentStore):
    """A ``DocumentStore`` updated through one tool whose arguments are a partial
    ``schema_base`` (every field optional): the user profile, the session context."""

    schema_base: ClassVar[type[BaseModel]]
    #: The update tool: its name, what it does, the extraction line, the agentic reply.
    tool_name: ClassVar[str]
    tool_description: ClassVar[str]
    tool_instructions: ClassVar[str]
    tool_reply: ClassVar[str]

    @property
    def update_model(self) -> type[BaseModel]:
        base = self.schema_base
        return partial_model(self.schema or base, f"{base.__name__}Update")

    def extraction(self) -> Extraction:
        return Extraction(
            spec=ToolSpec(
                name=self.tool_name,
                description=self.tool_description,
                parameters=tool_parameters(self.update_model),
            ),
            arguments=self.update_model,
            instructions=self.instructions or f"{self.tool_name}: {self.tool_instructions}",
        )

    def get_tools(self, scope: LearningScope) -> list[Tool]:
        def update(**fields: Any) -> Turn[str]:
            content = {k: _jsonable(v) for k, v in fields.items() if v is not None}
            if not content:
                return "Nothing to update."
            yield from self.save(scope, content)
            return self.tool_reply

        spec = self.extraction().spec
        return [model_tool(spec.name, spec.description, self.update_model, update)]


class UserProfileStore(SingleDocumentStore):
    """Structured facts about the user (name, role, preferences...), one profile per user.

    ``schema=`` takes a ``UserProfile`` subclass with custom fields.
    """

    kind = "user_profile"
    title = "User profile"
    per_user = True
    row_namespace = USER
    schema_base = UserProfile
    tool_name = "update_user_profile"
    tool_description = (
        "Record facts about the user in their profile. Send only the fields the conversation "
        "told you."
    )
    tool_instructions = "lasting facts about the user (name, role, preferences...)."
    tool_reply = "Profile updated."

    def key(self, scope: LearningScope, content: dict[str, Any]) -> dict[str, Any]:
        return {"user_id": scope.user_id}

    def key_of(self, learning: Learning) -> dict[str, Any]:
        return {"user_id": learning.user_id}

    def recall(self, scope: LearningScope, query: str) -> Turn[list[Learning]]:
        profile = yield from self.current({"user_id": scope.user_id})
        return [profile] if profile is not None else []

    def build_context(self, items: Sequence[Any]) -> str:
        if not items:
            return ""
        lines = _lines(items[0].content)
        return "\n".join([f"{self.title}:", *lines]) if lines else ""


class SessionContextStore(SingleDocumentStore):
    """The current session's goal, plan and progress (one document per session)."""

    kind = "session_context"
    title = "Current session"
    row_namespace = "session"
    schema_base = SessionContext
    tool_name = "update_session_context"
    tool_description = "Record this session's goal, plan and progress (only what changed)."
    tool_instructions = "the session's goal, current plan and progress."
    tool_reply = "Session context updated."
    replace_lists = frozenset({"plan"})

    def key(self, scope: LearningScope, content: dict[str, Any]) -> dict[str, Any]:
        return {"session_id": scope.session_id, "user_id": scope.user_id}

    def key_of(self, learning: Learning) -> dict[str, Any]:
        return {"session_id": learning.session_id}

    def current(self, filters: dict[str, Any]) -> Turn[Learning | None]:
        # The session alone identifies the document (user_id is stored, not filtered on).
        return (yield from super().current({"session_id": filters["session_id"]}))

    def recall(self, scope: LearningScope, query: str) -> Turn[list[Learning]]:
        context = yield from self.current({"session_id": scope.session_id})
        return [context] if context is not None else []

    def build_context(self, items: Sequence[Any]) -> str:
        if not items:
            return ""
        content = dict(items[0].content)
        lines = [f"{self.title}:"]
        for name in ("goal", "summary"):
            if content.get(name):
                lines.append(f"- {_label(name)}: {content[name]}")
        for name in ("plan", "progress"):
            steps = content.get(name) or []
            if steps:
                lines.append(f"- {_label(name)}:")
                lines += [f"  {i}. {step}" for i, step in enumerate(steps, 1)]
        lines += _lines(content, skip=("goal", "summary", "plan", "progress"))
        return "\n".join(lines) if len(lines) > 1 else ""


class EntityMemoryStore(DocumentStore):
    """Facts, events and relationships about named things (companies, projects, people).

    One document per entity (``entity_id`` = its name, normalised) and namespace.
    """

    kind = "entity_memory"
    title = "Known entities"
    namespaced = True
    vectorised = True
    schema_base = Entity
    keep_fields = frozenset({"name"})

    def key(self, scope: LearningScope, content: dict[str, Any]) -> dict[str, Any]:
        namespace = self.resolved_namespace(scope)
        filters: dict[str, Any] = {
            "namespace": namespace,
            "entity_id": slug(str(content.get("name", ""))),
        }
        if namespace == USER:
            filters["user_id"] = scope.user_id
        return filters

    def key_of(self, learning: Learning) -> dict[str, Any]:
        filters: dict[str, Any] = {"namespace": learning.namespace, "entity_id": learning.entity_id}
        if learning.namespace == USER:
            filters["user_id"] = learning.user_id
        return filters

    @property
    def entity_model(self) -> type[BaseModel]:
        return self.schema or Entity

    def recall(self, scope: LearningScope, query: str) -> Turn[list[Learning]]:
        return (yield from _search(self, scope, query))

    def build_context(self, items: Sequence[Any]) -> str:
        if not items:
            return ""
        lines = [f"{self.title}:"]
        for item in items:
            content = item.content
            kind = f" ({content['entity_type']})" if content.get("entity_type") else ""
            lines.append(f"- {content.get('name', item.entity_id)}{kind}")
            for fact in content.get("facts") or []:
                lines.append(f"  - {fact}")
            for event in content.get("events") or []:
                lines.append(f"  - Event: {event}")
            for rel in content.get("relationships") or []:
                if isinstance(rel, dict):
                    lines.append(f"  - {rel.get('relation')} {rel.get('target')}")
            extra = _lines(
                content, skip=("name", "entity_type", "facts", "events", "relationships")
            )
            lines += [f"  {line}" for line in extra]
        return "\n".join(lines)

    def contents(self, update: BaseModel) -> list[dict[str, Any]]:
        entities = getattr(update, "entities", None)
        if entities is None:
            return [_dump(update)]
        return [_dump(entity) for entity in entities]

    def save(self, scope: LearningScope, content: dict[str, Any]) -> Turn[Learning | None]:
        if not str(content.get("name", "")).strip():
            return None
        return (yield from super().save(scope, content))

    def extraction(self) -> Extraction:
        arguments = list_model(
            "SaveEntities", "entities", self.entity_model, "Entities the turn taught you about."
        )
        return Extraction(
            spec=ToolSpec(
                name="save_entities",
                description="Save facts, events or relationships about named things other "
                "than the user (companies, projects, people, products, places).",
                parameters=tool_parameters(arguments),
            ),
            arguments=arguments,
            instructions=self.instructions
            or "save_entities: facts, events and relationships about companies, projects, "
            "people and other named things.",
        )

    def get_tools(self, scope: LearningScope) -> list[Tool]:
        def save(**fields: Any) -> Turn[str]:
            content = {k: _jsonable(v) for k, v in fields.items() if v is not None}
            stored = yield from self.save(scope, content)
            return "Saved." if stored is not None else "An entity needs a name."

        return [
            model_tool(
                "save_entity",
                "Save facts, events or relationships about a named thing other than the user "
                "(a company, project, person, product or place).",
                self.entity_model,
                save,
            )
        ]


# -- collection stores: one row per item, found by ranked search -------------------------


def _search(store: LearningStore, scope: LearningScope, query: str) -> Turn[list[Learning]]:
    """Active items of ``store`` relevant to ``query`` in the scope's namespace: ranked by
    the backend's text search, fused with the nearest by meaning when the store embeds."""
    text = search_query(query, exclude=_field_words(store.schema))
    namespace = store.resolved_namespace(scope)
    filters: dict[str, Any] = {
        "kind": store.kind,
        "namespace": namespace,
        "user_id": scope.user_id if namespace == USER else None,
        "status": LearningStatus.ACTIVE,
    }
    wanted = store.limit * store.hybrid.candidates if store.embeds else store.limit
    lexical: list[tuple[Learning, float]] = []
    if text:
        hits = yield from storage.search_learnings(text, **filters, limit=wanted)
        lexical = [(hit.learning, hit.score) for hit in hits]
    embedding = yield from store.embedding_of(query)
    if embedding is None:
        return [learning for learning, _ in lexical[: store.limit]]
    nearest = yield from storage.search_learnings_by_vector(embedding, **filters, limit=wanted)
    fused = store.hybrid.fuse(
        lexical,
        [(hit.learning, hit.score) for hit in nearest],
        lambda learning: learning.learning_id,
        store.limit,
    )
    return [learning for learning, _ in fused]


class CollectionStore(LearningStore):
    """A store of independent items (insights, decisions), each its own row."""

    namespaced = True
    vectorised = True
    #: The list field of the extraction tool's arguments, and the tool's name.
    items_field: ClassVar[str] = "items"
    extraction_name: ClassVar[str] = ""
    #: Whether an item that repeats a stored one is skipped instead of stored again.
    skip_duplicates: ClassVar[bool] = True

    @property
    def item_model(self) -> type[BaseModel]:
        assert self.schema is not None
        return self.schema

    def recall(self, scope: LearningScope, query: str) -> Turn[list[Learning]]:
        return (yield from _search(self, scope, query))

    def item_text(self, content: dict[str, Any]) -> str:
        raise NotImplementedError

    def save(self, scope: LearningScope, content: dict[str, Any]) -> Turn[Learning]:
        namespace = self.resolved_namespace(scope)
        status = self.status_for_new
        user_id = scope.user_id if namespace == USER else None
        text = self.item_text(content)
        if self.skip_duplicates:
            query = search_query(text, exclude=_field_words(self.schema))
            hits = []
            if query:
                hits = yield from storage.search_learnings(
                    query,
                    kind=self.kind,
                    namespace=namespace,
                    user_id=user_id,
                    status=LearningStatus.ACTIVE if status is LearningStatus.ACTIVE else None,
                    limit=5,
                )
            for hit in hits:
                if _is_duplicate(text, self.item_text(hit.learning.content)):
                    if hit.learning.status is LearningStatus.ACTIVE:
                        # Restated: refresh it, so age-based pruning keeps it.
                        return (yield from self.save_learning(hit.learning))
                    return hit.learning
        row = Learning(
            kind=self.kind,
            namespace=namespace,
            user_id=user_id,
            session_id=scope.session_id,
            content=content,
            status=status,
            source_run_id=scope.run_id,
        )
        return (yield from self.save_learning(row))

    def process(
        self,
        scope: LearningScope,
        run: Run,
        model: Model,
        extracted: Sequence[BaseModel] = (),
    ) -> Turn[None]:
        for update in extracted:
            for item in getattr(update, self.items_field, None) or []:
                yield from self.save(scope, self.content_of(scope, item))

    def content_of(self, scope: LearningScope, item: BaseModel) -> dict[str, Any]:
        return _dump(item)

    def extraction(self) -> Extraction:
        arguments = list_model(
            self.extraction_name.title().replace("_", ""),
            self.items_field,
            self.item_model,
            self.extraction_description,
        )
        return Extraction(
            spec=ToolSpec(
                name=self.extraction_name,
                description=self.extraction_description,
                parameters=tool_parameters(arguments),
            ),
            arguments=arguments,
            instructions=self.instructions or self.extraction_instructions,
        )

    extraction_description: ClassVar[str] = ""
    extraction_instructions: ClassVar[str] = ""
    tool_name: ClassVar[str] = ""
    tool_description: ClassVar[str] = ""

    def get_tools(self, scope: LearningScope) -> list[Tool]:
        def save(**fields: Any) -> Turn[str]:
            item = self.item_model.model_validate({k: _jsonable(v) for k, v in fields.items()})
            yield from self.save(scope, self.content_of(scope, item))
            return "Saved."

        return [model_tool(self.tool_name, self.tool_description, self.item_model, save)]


class LearnedKnowledgeStore(CollectionStore):
    """Insights that transfer across users ("global" namespace by default)."""

    kind = "learned_knowledge"
    title = "Learned knowledge"
    schema_base = Insight
    items_field = "learnings"
    extraction_name = "save_learnings"
    extraction_description = (
        "Save insights from this turn that would help with future tasks for anyone "
        "(what worked, what to avoid). No personal details about the user."
    )
    extraction_instructions = (
        "save_learnings: reusable insights that help with future tasks for any user."
    )
    tool_name = "save_learning"
    tool_description = (
        "Save an insight that will help with future tasks for any user (what worked, what to "
        "avoid). No personal details about the user."
    )

    def item_text(self, content: dict[str, Any]) -> str:
        return str(content.get("learning") or content.get("title") or "")

    def build_context(self, items: Sequence[Any]) -> str:
        if not items:
            return ""
        lines = [f"{self.title}:"]
        for item in items:
            content = item.content
            when = f" (applies: {content['context']})" if content.get("context") else ""
            lines.append(f"- {content.get('title', '')}: {content.get('learning', '')}{when}")
        return "\n".join(lines)


class DecisionLogStore(CollectionStore):
    """Decisions with their reasoning, one log per agent by default (``namespace="agent"``)."""

    kind = "decision_log"
    title = "Earlier decisions"
    schema_base = Decision
    extra_namespaces = frozenset({AGENT})
    items_field = "decisions"
    extraction_name = "log_decisions"
    extraction_description = "Log the decisions made in this turn, with their reasoning."
    extraction_instructions = "log_decisions: decisions made in the turn, with their reasoning."
    tool_name = "log_decision"
    tool_description = "Log a decision you made, with its reasoning, for later review."
    skip_duplicates = False

    def resolved_namespace(self, scope: LearningScope) -> str:
        if (self.namespace or AGENT) == AGENT:
            return f"agent:{scope.agent_id or 'default'}"
        return super().resolved_namespace(scope)

    def content_of(self, scope: LearningScope, item: BaseModel) -> dict[str, Any]:
        return {**_dump(item), "agent_id": scope.agent_id}

    def item_text(self, content: dict[str, Any]) -> str:
        return f"{content.get('decision', '')} {content.get('reasoning', '')}".strip()

    def build_context(self, items: Sequence[Any]) -> str:
        if not items:
            return ""
        lines = [f"{self.title}:"]
        for item in items:
            content = item.content
            decision, why = content.get("decision", ""), content.get("reasoning", "")
            lines.append(f"- {decision} (because {why})")
        return "\n".join(lines)


# -- user memory: rows of kern_memories ---------------------------------------------------


def merge_newest(ranked: Sequence[Memory], newest: Sequence[Memory]) -> list[Memory]:
    """``ranked``, then the memories of ``newest`` it does not hold already."""
    seen = {m.memory_id for m in ranked}
    return [*ranked, *(m for m in newest if m.memory_id not in seen)]


class UserMemoryStore(LearningStore):
    """Unstructured observations about the user, as rows of ``kern_memories``.

    Recall asks the backend's ranked search for the ``limit`` memories most relevant to the
    input, then adds up to ``recent`` of the newest ones (so that a question sharing no
    word with a fresh memory still sees it). ``per_agent=True`` keeps each agent's
    memories of a user apart (by default an agent sees every memory of the user).

    Proposals (PROPOSE mode) wait in ``kern_learnings`` (kind ``user_memory``) and become
    memories when approved, with the same id and ``source_run_id``.
    """

    kind = "user_memory"
    title = "Memories about the user"
    per_user = True
    vectorised = True

    def __init__(
        self,
        *,
        mode: Any = None,
        limit: int = 5,
        recent: int = 3,
        per_agent: bool = False,
        instructions: str | None = None,
    ) -> None:
        super().__init__(mode=mode, limit=limit, instructions=instructions)
        self.recent = max(recent, 0)
        self.per_agent = per_agent
        self.options.update(recent=recent, per_agent=per_agent)
        for unused in ("namespace", "schema"):
            self.options.pop(unused)

    def _agent(self, scope: LearningScope) -> str | None:
        return scope.agent_id if self.per_agent else None

    def recall(self, scope: LearningScope, query: str) -> Turn[list[Memory]]:
        user_id = _user_id(scope)
        return (yield from self.read_memories(user_id, query, self._agent(scope)))

    def read_memories(self, user_id: str, query: str, agent_id: str | None) -> Turn[list[Memory]]:
        """What recall shows: up to ``limit`` memories ranked for ``query``, then up to
        ``recent`` of the newest not among them. The lexical ranking and the newest come
        in one ``recall_memories`` call (one round trip where the backend can); with an
        embedder, the nearest by meaning are read too and fused with the lexical ones."""
        text = search_query(query)
        wanted = self.limit * self.hybrid.candidates if self.embeds else self.limit
        ranked, newest = yield from storage.recall_memories(
            user_id, text, agent_id=agent_id, limit=wanted, recent=self.recent
        )
        if self.embeds:
            ranked = yield from self._fused(user_id, query, agent_id, ranked)
        return merge_newest([hit.memory for hit in ranked], newest)

    def search(
        self, user_id: str, query: str, *, agent_id: str | None = None, limit: int | None = None
    ) -> Turn[list[ScoredMemory]]:
        """``user_id``'s memories most relevant to ``query``, best first: the backend's
        text search, fused with the nearest by meaning when the store embeds. The scores
        are the backend's (lexical only) or the fused ones."""
        limit = self.limit if limit is None else limit
        if limit < 1:
            return []
        text = search_query(query)
        wanted = limit * self.hybrid.candidates if self.embeds else limit
        lexical: list[ScoredMemory] = []
        if text:
            lexical = yield from storage.search_memories(
                user_id, text, agent_id=agent_id, limit=wanted
            )
        if not self.embeds:
            return lexical[:limit]
        return (yield from self._fused(user_id, query, agent_id, lexical, limit))

    def _fused(
        self,
        user_id: str,
        query: str,
        agent_id: str | None,
        lexical: Sequence[ScoredMemory],
        limit: int | None = None,
    ) -> Turn[list[ScoredMemory]]:
        limit = self.limit if limit is None else limit
        embedding = yield from self.embedding_of(query)
        if embedding is None:
            return list(lexical[:limit])
        nearest = yield from storage.search_memories_by_vector(
            user_id, embedding, agent_id=agent_id, limit=limit * self.hybrid.candidates
        )
        fused = self.hybrid.fuse(
            [(hit.memory, hit.score) for hit in lexical],
            [(hit.memory, hit.score) for hit in nearest],
            lambda memory: memory.memory_id,
            limit,
        )
        return [ScoredMemory(memory=memory, score=score) for memory, score in fused]

    def build_context(self, items: Sequence[Any]) -> str:
        if not items:
            return ""
        return "\n".join([f"{self.title}:", *(f"- {m.content}" for m in items)])

    def item_text(self, content: dict[str, Any]) -> str:
        return str(content.get("content", ""))

    def save(
        self, scope: LearningScope, content: str, topics: Sequence[str] = ()
    ) -> Turn[Learning | Memory | None]:
        """Store a memory (or propose it); a restated memory is refreshed, not repeated."""
        content = content.strip()
        if not content:
            return None
        user_id = _user_id(scope)
        query = search_query(content)
        agent_id = self._agent(scope)
        if self.status_for_new is LearningStatus.PROPOSED:
            if query:
                stored = yield from storage.search_memories(
                    user_id, query, agent_id=agent_id, limit=5
                )
                proposed = yield from storage.search_learnings(
                    query, kind=self.kind, user_id=user_id, status=None, limit=5
                )
                texts = [h.memory.content for h in stored]
                texts += [self.item_text(h.learning.content) for h in proposed]
                if any(_is_duplicate(content, t) for t in texts):
                    return None
            proposal = Learning(
                kind=self.kind,
                namespace=USER,
                user_id=user_id,
                session_id=scope.session_id,
                content={"content": content, "topics": list(topics), "agent_id": scope.agent_id},
                status=LearningStatus.PROPOSED,
                source_run_id=scope.run_id,
            )
            return (yield from storage.upsert_learning(proposal))
        return (
            yield from self.remember(
                user_id, content, topics, agent_id=scope.agent_id, source_run_id=scope.run_id
            )
        )

    def remember(
        self,
        user_id: str,
        content: str,
        topics: Sequence[str] = (),
        *,
        agent_id: str | None = None,
        source_run_id: str | None = None,
    ) -> Turn[Memory]:
        """Store ``content`` as a memory of ``user_id`` now (no proposal): a restatement of
        a stored memory refreshes that one (its topics merged) instead of adding another."""
        query = search_query(content)
        if query:
            hits = yield from storage.search_memories(
                user_id, query, agent_id=agent_id if self.per_agent else None, limit=5
            )
            for hit in hits:
                if _is_duplicate(content, hit.memory.content):
                    memory = hit.memory.model_copy(
                        update={"topics": merge_lists(hit.memory.topics, list(topics))}
                    )
                    return (yield from self.save_memory(memory))
        memory = Memory(
            user_id=user_id,
            agent_id=agent_id,
            content=content,
            topics=list(topics),
            source_run_id=source_run_id,
        )
        return (yield from self.save_memory(memory))

    def save_memory(self, memory: Memory) -> Turn[Memory]:
        """Store ``memory`` with the vector of its content (when the store embeds)."""
        embedding = yield from self.embedding_of(memory.content)
        return (yield from storage.upsert_memory(memory, embedding=embedding))

    def process(
        self,
        scope: LearningScope,
        run: Run,
        model: Model,
        extracted: Sequence[BaseModel] = (),
    ) -> Turn[None]:
        for update in extracted:
            for item in getattr(update, "memories", None) or []:
                yield from self.save(scope, item.content, item.topics)

    def approve(self, learning: Learning) -> Turn[Memory]:
        content = learning.content
        agent_id, topics = content.get("agent_id"), content.get("topics")
        memory = Memory(
            memory_id=learning.learning_id,
            user_id=learning.user_id or "",
            agent_id=agent_id if isinstance(agent_id, str) else None,
            content=str(content.get("content", "")),
            topics=[str(t) for t in topics] if isinstance(topics, list) else [],
            source_run_id=learning.source_run_id,
            created_at=learning.created_at,
        )
        stored = yield from self.save_memory(memory)
        yield from storage.delete_learning(learning.learning_id)
        return stored

    def extraction(self) -> Extraction:
        arguments = list_model(
            "SaveUserMemories", "memories", MemoryItem, "New facts about the user."
        )
        return Extraction(
            spec=ToolSpec(
                name="save_user_memories",
                description="Save what this turn revealed about the user that will matter in "
                "later conversations (circumstances, plans, preferences, experiences).",
                parameters=tool_parameters(arguments),
            ),
            arguments=arguments,
            instructions=self.instructions
            or "save_user_memories: observations about the user worth remembering later.",
        )

    def get_tools(self, scope: LearningScope) -> list[Tool]:
        def save(content: str, topics: list[str] | None = None) -> Turn[str]:
            stored = yield from self.save(scope, content, topics or [])
            return "Saved to memory." if stored is not None else "Nothing to save."

        return [
            model_tool(
                "save_memory",
                "Save one fact about the user to long-term memory (their circumstances, plans, "
                "preferences). State it in the third person, self-contained.",
                MemoryItem,
                save,
            )
        ]


#: The name plugins registered for their one-round-trip recall before ``recall_memories``
#: joined the contract; every backend's ``UserMemoryStore`` now makes that one call.
OneCallUserMemoryStore = UserMemoryStore


def _user_id(scope: LearningScope) -> str:
    """The scope's user: a per-user store acts only for a scope that has one (``applies``)."""
    assert scope.user_id is not None, "a per-user store acts only for a scope with a user_id"
    return scope.user_id


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


BUILTIN_STORES: dict[str, type[LearningStore]] = {
    store.kind: store
    for store in (
        UserProfileStore,
        UserMemoryStore,
        SessionContextStore,
        EntityMemoryStore,
        LearnedKnowledgeStore,
        DecisionLogStore,
    )
}

__all__ = [
    "BUILTIN_STORES",
    "CollectionStore",
    "Decision",
    "DecisionLogStore",
    "DocumentStore",
    "Entity",
    "EntityMemoryStore",
    "Insight",
    "LearnedKnowledgeStore",
    "MemoryItem",
    "Relationship",
    "SessionContext",
    "SessionContextStore",
    "UserMemoryStore",
    "UserProfile",
    "UserProfileStore",
]
