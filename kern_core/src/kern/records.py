"""The records kern stores: sessions, runs, messages, memories and learnings.

Every backend stores the same logical records (docs/architecture.md, "Stored records"). They
are pydantic models so that a value that cannot be stored as JSON is refused before anything
is written.
"""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, JsonValue


def new_id() -> str:
    """A fresh string id. Strings everywhere: every backend can index and shard on them."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ToolCall(Record):
    """A function call the model asked for. ``arguments`` is the JSON text the model sent."""

    id: str
    name: str
    arguments: str = "{}"


class Message(Record):
    """One chat message, in the shape of the OpenAI Chat Completions API."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class SessionType(StrEnum):
    AGENT = "agent"
    TEAM = "team"
    WORKFLOW = "workflow"


class Session(Record):
    """One conversation thread of an agent, team or workflow.

    ``version`` is the compare-and-set counter: a backend stores a new state only when the
    writer names the version it read. It holds no runs: those are rows of their own.
    """

    session_id: str = Field(default_factory=new_id)
    session_type: SessionType = SessionType.AGENT
    component_id: str | None = None
    user_id: str | None = None
    name: str | None = None
    state: dict[str, JsonValue] = Field(default_factory=dict)
    summary: str | None = None
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    version: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"


class Run(Record):
    """One turn of an agent, team member or workflow step, written once as its own row.

    ``seq`` is assigned by the backend on append: 1, 2, 3... per session, never lost or
    duplicated under concurrent writers. ``messages`` holds only this run's messages (the
    user's input, tool traffic and the answer), never the history it was given.
    """

    run_id: str = Field(default_factory=new_id)
    session_id: str
    seq: int | None = None
    parent_run_id: str | None = None
    component_id: str | None = None
    user_id: str | None = None
    status: RunStatus = RunStatus.COMPLETED
    input: JsonValue = None
    messages: list[Message] = Field(default_factory=list)
    output: JsonValue = None
    metrics: dict[str, JsonValue] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)


class Memory(Record):
    """A long-term memory about a user (a row of ``kern_memories``)."""

    memory_id: str = Field(default_factory=new_id)
    user_id: str
    agent_id: str | None = None
    content: str
    topics: list[str] = Field(default_factory=list)
    source_run_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class LearningStatus(StrEnum):
    ACTIVE = "active"
    PROPOSED = "proposed"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"


class Learning(Record):
    """An item of a learning store (profile, entity fact, insight, decision...)."""

    learning_id: str = Field(default_factory=new_id)
    kind: str
    namespace: str = "global"
    user_id: str | None = None
    session_id: str | None = None
    entity_id: str | None = None
    content: dict[str, JsonValue] = Field(default_factory=dict)
    status: LearningStatus = LearningStatus.ACTIVE
    source_run_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Embedding(Record):
    """A vector of a memory's or a learning's text, and the embedder that made it.

    Vectors are compared only with vectors of the same ``model`` (an embedder's ``id``):
    two models' vectors live in different spaces. Stored beside their row, never inside
    the record: reads of memories and learnings do not carry them.
    """

    model: str = Field(min_length=1, max_length=255)
    vector: list[FiniteFloat] = Field(min_length=1)

    def as_float32(self) -> bytes:
        """The vector as little-endian float32 bytes (how the byte-storing backends keep it)."""
        return struct.pack(f"<{len(self.vector)}f", *self.vector)

    @classmethod
    def from_float32(cls, model: str, data: bytes) -> Embedding:
        return cls(model=model, vector=list(struct.unpack(f"<{len(data) // 4}f", data)))


class ScoredMemory(Record):
    memory: Memory
    score: float


class ScoredLearning(Record):
    learning: Learning
    score: float


def dump(record: BaseModel) -> dict[str, Any]:
    """A JSON-ready dict of a record (datetimes as ISO text)."""
    return record.model_dump(mode="json")
