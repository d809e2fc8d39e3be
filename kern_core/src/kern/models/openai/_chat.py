"""``OpenAIChat``: the Chat Completions API, which OpenAI and most compatible servers
(Ollama, vLLM, llama.cpp, LM Studio) speak."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, ClassVar

from kern.models.base import ModelDelta, ModelResponse, StreamItem, ToolSpec, Usage
from kern.models.openai._base import OpenAIModelBase, new_call_id
from kern.records import Message, ToolCall


def chat_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """kern messages in the Chat Completions ``messages`` format."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": message.tool_call_id or "",
                    "content": message.content or "",
                }
            )
            continue
        converted: dict[str, Any] = {"role": message.role}
        if message.role == "assistant":
            converted["content"] = message.content
            if message.tool_calls:
                converted["tool_calls"] = [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }
                    for call in message.tool_calls
                ]
        else:
            converted["content"] = message.content or ""
        if message.name:
            converted["name"] = message.name
        out.append(converted)
    return out


def chat_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """Tool specs in the Chat Completions ``tools`` format (``strict`` for strict specs)."""
    out = []
    for tool in tools:
        function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
        if tool.description:
            function["description"] = tool.description
        if tool.strict:  # sent only when asked: some compatible servers know no ``strict``
            function["strict"] = True
        out.append({"type": "function", "function": function})
    return out


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    return Usage(
        input_tokens=getattr(usage, "prompt_tokens", 0) or 0,
        output_tokens=getattr(usage, "completion_tokens", 0) or 0,
    )


def _parse_completion(completion: Any) -> ModelResponse:
    choices = getattr(completion, "choices", None) or []
    message = choices[0].message if choices else None
    tool_calls = []
    for call in (getattr(message, "tool_calls", None) or []) if message else []:
        function = getattr(call, "function", None)
        if function is None:  # a custom (non-function) tool call: kern has none
            continue
        tool_calls.append(
            ToolCall(
                id=call.id or new_call_id(),
                name=function.name,
                arguments=function.arguments or "{}",
            )
        )
    return ModelResponse(
        content=(getattr(message, "content", None) or None) if message else None,
        tool_calls=tool_calls,
        usage=_usage(getattr(completion, "usage", None)),
        model=getattr(completion, "model", None),
    )


class _ChatStreamState:
    """Accumulates streamed chunks: text deltas, tool-call deltas (by index), usage."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.usage = Usage()
        self.model: str | None = None

    def feed(self, chunk: Any) -> str | None:
        """Take one chunk; return its text delta, if any."""
        self.model = getattr(chunk, "model", None) or self.model
        if getattr(chunk, "usage", None) is not None:
            self.usage = _usage(chunk.usage)
        text: list[str] = []
        for choice in getattr(chunk, "choices", None) or []:
            if getattr(choice, "index", 0) not in (0, None):
                continue
            delta = choice.delta
            if delta is None:
                continue
            if delta.content:
                text.append(delta.content)
            for call in delta.tool_calls or []:
                self._feed_call(call)
        if not text:
            return None
        joined = "".join(text)
        self.parts.append(joined)
        return joined

    def _feed_call(self, call: Any) -> None:
        index = call.index
        if index is None:  # servers that omit the index send each call whole
            index = len(self.calls) if call.id or not self.calls else max(self.calls)
        entry = self.calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
        if call.id:
            entry["id"] = call.id
        function = call.function
        if function is not None:
            if function.name:
                entry["name"] = function.name
            if function.arguments:
                entry["arguments"] += function.arguments

    def result(self) -> ModelResponse:
        tool_calls = [
            ToolCall(
                id=entry["id"] or new_call_id(),
                name=entry["name"],
                arguments=entry["arguments"] or "{}",
            )
            for _, entry in sorted(self.calls.items())
        ]
        return ModelResponse(
            content="".join(self.parts) or None,
            tool_calls=tool_calls,
            usage=self.usage,
            model=self.model,
        )


class OpenAIChat(OpenAIModelBase):
    """A model behind the Chat Completions API (``/v1/chat/completions``).

    ``OpenAIChat(id="llama3.2:3b", base_url="http://localhost:11434/v1")`` reaches a local
    Ollama; with no ``base_url`` the SDK's ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` apply.
    ``max_tokens`` is sent as ``max_tokens``, which OpenAI and every compatible server accept.
    """

    provider: ClassVar[str] = "openai"

    def _params(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"model": self.id, "messages": chat_messages(messages)}
        if tools:
            params["tools"] = chat_tools(tools)
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        params.update(self._sampling_params())
        return params

    def _stream_params(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None
    ) -> dict[str, Any]:
        return {
            **self._params(messages, tools),
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    def response(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None
    ) -> ModelResponse:
        client = self.get_client()
        with self._provider_errors():
            completion = client.chat.completions.create(**self._params(messages, tools))
        return _parse_completion(completion)

    async def aresponse(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None
    ) -> ModelResponse:
        client = self.get_async_client()
        with self._provider_errors():
            completion = await client.chat.completions.create(**self._params(messages, tools))
        return _parse_completion(completion)

    def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None
    ) -> Iterator[StreamItem]:
        client = self.get_client()
        state = _ChatStreamState()
        with self._provider_errors():
            chunks = client.chat.completions.create(**self._stream_params(messages, tools))
            with chunks:
                for chunk in chunks:
                    text = state.feed(chunk)
                    if text:
                        yield ModelDelta(content=text)
        yield state.result()

    async def astream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None
    ) -> AsyncIterator[StreamItem]:
        client = self.get_async_client()
        state = _ChatStreamState()
        with self._provider_errors():
            chunks = await client.chat.completions.create(**self._stream_params(messages, tools))
            async with chunks:
                async for chunk in chunks:
                    text = state.feed(chunk)
                    if text:
                        yield ModelDelta(content=text)
        yield state.result()
