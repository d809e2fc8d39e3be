"""What a model provider implements: one call, sync and async, plain and streamed."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from kern.records import Message, ToolCall


class ToolSpec(BaseModel):
    """A function the model may call: its name, what it does, and a JSON schema of its arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    #: Ask the provider to hold the model's arguments to ``parameters`` (OpenAI's
    #: ``strict: true``). Set it only for a schema ``kern.models.strict`` accepts.
    strict: bool = False


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0


class ModelResponse(BaseModel):
    """The model's whole answer to one request: text, tool calls, or both."""

    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    model: str | None = None

    def as_message(self) -> Message:
        return Message(role="assistant", content=self.content, tool_calls=self.tool_calls or None)


class ModelDelta(BaseModel):
    """A piece of streamed text. A stream ends with the complete ``ModelResponse``."""

    content: str


StreamItem = ModelDelta | ModelResponse


class Model(abc.ABC):
    """A chat model. ``id`` names the model at its provider (``gpt-4.1-mini``, ``llama3.2:3b``)."""

    #: The provider prefix under which the class is registered (``"openai"``).
    provider: ClassVar[str] = ""

    id: str

    @abc.abstractmethod
    def response(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None
    ) -> ModelResponse: ...

    @abc.abstractmethod
    async def aresponse(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None
    ) -> ModelResponse: ...

    @abc.abstractmethod
    def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None
    ) -> Iterator[StreamItem]:
        """Yield ``ModelDelta`` pieces of text, then the complete ``ModelResponse`` last."""

    @abc.abstractmethod
    def astream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None
    ) -> AsyncIterator[StreamItem]:
        """The async form of ``stream`` (an async generator)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r})"
