"""The learning-store protocol: recall, build_context, process, get_tools.

A store is written once, as generators of effects (``kern.effects``): ``recall`` and
``process`` ask for storage calls (``kern.storage``) and model calls (``ModelCall``) with
``yield from`` and receive the typed results, so the same code runs under the sync and the
async driver, on every backend. The Agent runs them inside its
turn; the learning machine's API (approve, reject, the curator) drives them on its own.

Writing a store::

    class TodoStore(LearningStore):
        kind = "todo"
        title = "Open to-dos"

        def recall(self, scope: LearningScope, query: str) -> Turn[list[Learning]]:
            rows = yield from storage.query_learnings(
                kind=self.kind,
                user_id=scope.user_id,
                status=LearningStatus.ACTIVE,
                limit=self.limit,
            )
            return rows

        def build_context(self, items):
            return "\\n".join(f"- {item.content['text']}" for item in items)

and register it from a plugin (``register_learning_stores``) or pass it to
``LearningMachine(stores=[...])``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import GenericAlias
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from kern import storage
from kern.effects import Call, Turn
from kern.errors import ConfigurationError, KernError
from kern.learn.ranking import Hybrid
from kern.learn.scope import LearningScope
from kern.models.base import Model, ToolSpec
from kern.models.strict import is_strict, strict_schema
from kern.records import Embedding, Learning, LearningStatus, Memory, Run
from kern.tools import Tool

if TYPE_CHECKING:
    from kern.learn.embedder import Embedder


class LearningMode(StrEnum):
    """How and when a store learns."""

    #: After each response, the model extracts what is worth keeping from the finished turn.
    ALWAYS = "always"
    #: The store's tools are given to the model; it decides what to save during the turn.
    AGENTIC = "agentic"
    #: Extraction as in ALWAYS, but items wait as ``proposed`` until a person approves them.
    PROPOSE = "propose"


#: The namespace every store shares unless told otherwise.
GLOBAL = "global"
#: The namespace whose items only the user they came from ever sees.
USER = "user"
#: Decision log only: one log per agent (stored as ``agent:<agent_id>``).
AGENT = "agent"


class LearningNotFoundError(KernError, LookupError):
    """An operation named a learning that is not stored."""


class NotProposedError(KernError, ValueError):
    """Only a ``proposed`` learning can be approved or rejected."""


@dataclass(frozen=True)
class Extraction:
    """What a store asks the model for after a turn (ALWAYS and PROPOSE modes).

    The model is offered ``spec`` as a tool; the JSON arguments of each call to it are
    validated with ``arguments`` (invalid parts dropped, the rest kept: ``kern.learn.repair``)
    and handed to the store's ``process``. A ``spec`` whose parameters are in the strict
    subset (``kern.models.strict``) is marked strict, so providers that can hold the model
    to the schema do.
    """

    spec: ToolSpec
    arguments: type[BaseModel]
    #: One line telling the model what to record with this tool.
    instructions: str

    def __post_init__(self) -> None:
        if not self.spec.strict and _is_strict(self.spec.parameters):
            object.__setattr__(self, "spec", self.spec.model_copy(update={"strict": True}))


#: ``is_strict`` of parameters dicts already checked, by identity (stores build their
#: ``Extraction`` each turn from the same cached ``tool_parameters``). Bounded.
_checked: dict[int, tuple[dict[str, Any], bool]] = {}


def _is_strict(parameters: dict[str, Any]) -> bool:
    hit = _checked.get(id(parameters))
    if hit is not None and hit[0] is parameters:
        return hit[1]
    if len(_checked) >= 256:
        _checked.clear()
    result = is_strict(parameters)
    _checked[id(parameters)] = (parameters, result)  # the reference keeps the id unique
    return result


def mode_of(value: LearningMode | str | None) -> LearningMode | None:
    if value is None or isinstance(value, LearningMode):
        return value
    try:
        return LearningMode(str(value).lower())
    except ValueError:
        modes = ", ".join(repr(m.value) for m in LearningMode)
        raise ConfigurationError(f"unknown learning mode {value!r}: use one of {modes}") from None


class LearningStore:
    """Base class of learning stores. Subclasses set ``kind`` and implement the protocol.

    ``mode`` and ``namespace`` left as ``None`` take the learning machine's defaults.
    ``limit`` bounds what recall returns (the backend's ranked search, never a full scan).
    ``schema`` replaces the store's item model with a subclass carrying custom fields.
    """

    #: The store's name: the ``kind`` of its rows in ``kern_learnings``, and its registry key.
    kind: ClassVar[str] = ""
    #: The heading of the store's section in the model's context.
    title: ClassVar[str] = ""
    #: Whether ``namespace`` applies (entity memory, learned knowledge, decision log).
    namespaced: ClassVar[bool] = False
    #: Namespaces this store accepts besides "global", "user" and custom names.
    extra_namespaces: ClassVar[frozenset[str]] = frozenset()
    #: Whether the store keeps items per user (and so does nothing without a ``user_id``).
    per_user: ClassVar[bool] = False
    #: The pydantic model a custom ``schema`` must subclass (None: no custom schemas).
    schema_base: ClassVar[type[BaseModel] | None] = None
    #: Whether the store's rows get vectors when the machine has an embedder, and its
    #: recall ranks by meaning too (the stores searched by text: memories, collections,
    #: entities; not the one-document profile and session context).
    vectorised: ClassVar[bool] = False

    #: Set by the learning machine: the embedder (None: lexical recall only, as without
    #: vectors) and how recall fuses its lexical and vector rankings.
    embedder: Embedder | None = None
    hybrid: Hybrid = Hybrid()

    def __init__(
        self,
        *,
        mode: LearningMode | str | None = None,
        namespace: str | None = None,
        limit: int = 5,
        schema: type[BaseModel] | None = None,
        instructions: str | None = None,
    ) -> None:
        self.mode = mode_of(mode)
        if namespace is not None:
            if not self.namespaced:
                raise ConfigurationError(
                    f"the {self.kind or type(self).__name__} store has no namespaces "
                    "(they apply to entity memory, learned knowledge and the decision log)"
                )
            check_namespace(namespace, self.extra_namespaces)
        self.namespace = namespace
        if limit < 1:
            raise ConfigurationError("limit must be at least 1")
        self.limit = limit
        if schema is not None:
            base = self.schema_base
            if base is None:
                raise ConfigurationError(f"the {self.kind} store takes no custom schema")
            if not (isinstance(schema, type) and issubclass(schema, base)):
                raise ConfigurationError(
                    f"schema for the {self.kind} store must subclass {base.__module__}."
                    f"{base.__name__}, not {schema!r}"
                )
        self.schema: type[BaseModel] | None = schema or self.schema_base
        self.instructions = instructions
        #: The constructor arguments, so the machine can rebuild the store as a backend's
        #: own implementation of the same kind (which must accept the same arguments).
        self.options: dict[str, Any] = {
            "mode": mode,
            "namespace": namespace,
            "limit": limit,
            "schema": schema,
            "instructions": instructions,
        }

    # -- the protocol --------------------------------------------------------------
    def recall(self, scope: LearningScope, query: str) -> Turn[Sequence[Any]]:
        """Yield effects; return the items relevant to ``query`` (bounded by ``limit``)."""
        return []
        yield  # a generator

    def build_context(self, items: Sequence[Any]) -> str:
        """The text recall adds to the system prompt for ``items`` ("" for nothing)."""
        return ""

    def process(
        self,
        scope: LearningScope,
        run: Run,
        model: Model,
        extracted: Sequence[BaseModel] = (),
    ) -> Turn[None]:
        """After the run is stored: learn from it. ``extracted`` holds the validated
        arguments of the model's calls to this store's ``extraction()`` tool."""
        return None
        yield  # a generator

    def get_tools(self, scope: LearningScope) -> list[Tool]:
        """Tools the model gets in AGENTIC mode (bound to ``scope``)."""
        return []

    # -- optional hooks ------------------------------------------------------------
    def extraction(self) -> Extraction | None:
        """The tool the model is offered after a turn in ALWAYS / PROPOSE mode, or None."""
        return None

    def applies(self, scope: LearningScope) -> bool:
        """Whether the store can act for ``scope`` (per-user stores need a user_id)."""
        if self.per_user and scope.user_id is None:
            return False
        return not (self.namespace == USER and scope.user_id is None)

    def approve(self, learning: Learning) -> Turn[Learning | Memory]:
        """Make a proposed item active; return what is stored now."""
        return (yield from self.save_learning(_with_status(learning, LearningStatus.ACTIVE)))

    def reject(self, learning: Learning) -> Turn[Learning]:
        """Mark a proposed item rejected (kept for the record, never recalled)."""
        return (yield from self.save_learning(_with_status(learning, LearningStatus.REJECTED)))

    def item_text(self, content: dict[str, Any]) -> str:
        """The text the curator compares for duplicates."""
        return " ".join(str(v) for v in _flatten(content))

    # -- helpers for subclasses -----------------------------------------------------
    @property
    def embeds(self) -> bool:
        """Whether rows get vectors and recall ranks by meaning (an embedder is set)."""
        return self.vectorised and self.embedder is not None

    def embedding_of(self, text: str) -> Turn[Embedding | None]:
        """``text``'s vector by the machine's embedder (None without one: no vectors)."""
        if not self.embeds or not text.strip():
            return None
        embedder = self.embedder
        assert embedder is not None
        vectors = yield from Call(embedder.embed, {"texts": [text]})
        return Embedding(model=embedder.id, vector=vectors[0])

    def save_learning(self, learning: Learning) -> Turn[Learning]:
        """Store ``learning`` with the vector of its text (when this store embeds)."""
        embedding = yield from self.embedding_of(self.item_text(learning.content))
        return (yield from storage.upsert_learning(learning, embedding=embedding))

    @property
    def status_for_new(self) -> LearningStatus:
        """What process stores items as: proposals in PROPOSE mode, else active."""
        if self.mode is LearningMode.PROPOSE:
            return LearningStatus.PROPOSED
        return LearningStatus.ACTIVE

    def resolved_namespace(self, scope: LearningScope) -> str:
        """The namespace stored and filtered on for ``scope``."""
        namespace = self.namespace or GLOBAL
        if namespace == AGENT:
            return f"agent:{scope.agent_id or 'default'}"
        return namespace

    def __repr__(self) -> str:
        ns = f", namespace={self.namespace!r}" if self.namespaced else ""
        mode = self.mode.value if self.mode else None
        return f"{type(self).__name__}(mode={mode!r}{ns})"


def check_namespace(namespace: str, extra: frozenset[str] = frozenset()) -> None:
    if not isinstance(namespace, str) or not namespace.strip():
        raise ConfigurationError("a namespace must be a non-empty string")
    if namespace.startswith("agent:"):
        raise ConfigurationError(
            "namespaces starting with 'agent:' are reserved for the decision log's "
            "per-agent logs: use namespace='agent'"
        )
    if namespace == AGENT and AGENT not in extra:
        raise ConfigurationError("namespace='agent' applies to the decision log only")


def _with_status(learning: Learning, status: LearningStatus) -> Learning:
    return learning.model_copy(update={"status": status})


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [item for v in value.values() for item in _flatten(v)]
    if isinstance(value, list):
        return [item for v in value for item in _flatten(v)]
    return [] if value is None else [value]


# -- building tools and extraction specs from pydantic models -------------------------


@functools.cache
def tool_parameters(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema in strict form (``kern.models.strict``), as a function's
    ``parameters`` (cached: do not modify it). Every value it allows validates against
    ``model``, so a provider may hold the model's arguments to it."""
    schema = strict_schema(model.model_json_schema())
    schema.pop("description", None)  # the tool's own description says it
    return schema


@functools.cache
def partial_model(model: type[BaseModel], name: str | None = None) -> type[BaseModel]:
    """``model`` with every field optional (default None): an update that sets only some."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        annotation = info.annotation
        assert annotation is not None  # pydantic sets it on every field of a model class
        fields[field_name] = (annotation | None, _optional_field(info))
    return create_model(
        name or f"{model.__name__}Update",
        __config__=ConfigDict(extra="ignore"),
        __doc__=model.__doc__,
        **fields,
    )


def _optional_field(info: Any) -> Any:
    from pydantic import Field

    return Field(default=None, description=info.description)


@functools.cache
def list_model(name: str, field: str, item: type[BaseModel], description: str) -> type[BaseModel]:
    """Arguments ``{field: [item, ...]}`` of an extraction tool that saves several items."""
    from pydantic import Field

    items = GenericAlias(list, (item,))  # list[item], with ``item`` known only at run time
    fields: dict[str, Any] = {field: (items, Field(default_factory=list, description=description))}
    return create_model(name, __config__=ConfigDict(extra="ignore"), **fields)


def model_tool(
    name: str,
    description: str,
    arguments: type[BaseModel],
    subturn: Callable[..., Turn[str]],
) -> Tool:
    """A tool whose arguments are ``arguments``' fields and whose call runs ``subturn``
    (a generator of effects: a db write inside the agent's turn)."""

    def function(**kwargs: Any) -> Any:
        raise AssertionError("learning tools run as sub-turns, never as plain calls")

    function.__name__ = name
    parameters = tool_parameters(arguments)
    spec = ToolSpec(
        name=name, description=description, parameters=parameters, strict=is_strict(parameters)
    )
    return Tool(
        function=function,
        spec=spec,
        arguments_model=arguments,
        injected=frozenset(),
        subturn=subturn,
    )


def parse_arguments(model: type[BaseModel], arguments: str) -> BaseModel | None:
    """The model's JSON arguments validated as they are, or None when they do not fit
    (``kern.learn.repair.repair_arguments`` keeps the valid parts instead)."""
    try:
        raw = json.loads(arguments or "{}")
        return model.model_validate(raw)
    except (ValueError, ValidationError):
        return None


__all__ = [
    "AGENT",
    "GLOBAL",
    "USER",
    "Extraction",
    "LearningMode",
    "LearningNotFoundError",
    "LearningStore",
    "NotProposedError",
    "list_model",
    "model_tool",
    "parse_arguments",
    "partial_model",
    "tool_parameters",
]
