"""``OpenAIResponses``: OpenAI's Responses API (``/v1/responses``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, ClassVar

from kern.errors import ModelProviderError
from kern.models.base import ModelDelta, ModelResponse, StreamItem, ToolSpec, Usage
from kern.models.openai._base import OpenAIModelBase
from kern.records import Message, ToolCall


def response_input(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """kern messages as Responses ``input`` items.

    System and developer messages stay input items in their place (the API accepts those
    roles), rather than being folded into ``instructions``, so their order is kept. An
    assistant's tool calls become ``function_call`` items and tool results
    ``function_call_output`` items, joined by ``call_id``.
    """
    items: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": message.tool_call_id or "",
                    "output": message.content or "",
                }
            )
        elif message.role == "assistant":
            if message.content:
                items.append({"role": "assistant", "content": message.content})
            for call in message.tool_calls or []:
                items.append(
                    {
                        "type": "function_call",
                        "call_id": call.id,
                        "name": call.name,
                        "arguments": call.arguments,
                    }
                )
        else:
            items.append({"role": message.role, "content": message.content or ""})
    return items


def response_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """Tool specs in the Responses ``tools`` format.

    ``strict`` is always sent: ``True`` for a spec marked strict (its schema is in the
    strict subset, ``kern.models.strict``), else ``False``, since the Responses API
    otherwise defaults to strict and refuses ordinary JSON schemas (optional properties,
    no ``additionalProperties``).
    """
    out = []
    for tool in tools:
        spec: dict[str, Any] = {
            "type": "function",
            "name": tool.name,
            "parameters": tool.parameters,
            "strict": tool.strict,
        }
        if tool.description:
            spec["description"] = tool.description
        out.append(spec)
    return out


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    return Usage(
        input_tokens=getattr(usage, "input_tokens", 0) or 0,
        output_tokens=getattr(usage, "output_tokens", 0) or 0,
    )


def _parse_output(items: Sequence[Any]) -> tuple[str | None, list[ToolCall]]:
    texts: list[str] = []
    calls: list[ToolCall] = []
    for item in items:
        kind = getattr(item, "type", None)
        if kind == "message":
            for part in getattr(item, "content", None) or []:
                if getattr(part, "type", None) == "output_text":
                    texts.append(part.text)
        elif kind == "function_call":
            calls.append(
                ToolCall(id=item.call_id, name=item.name, arguments=item.arguments or "{}")
            )
    return "".join(texts) or None, calls


class _ResponsesStreamState:
    """Follows the stream's events: text deltas, finished output items, the final response."""

    def __init__(self, model: OpenAIResponses) -> None:
        self.model = model
        self.parts: list[str] = []
        self.items: dict[int, Any] = {}
        self.final: Any = None

    def feed(self, event: Any) -> str | None:
        """Take one event; return its text delta, if any."""
        kind = getattr(event, "type", None)
        if kind == "response.output_text.delta":
            self.parts.append(event.delta)
            return event.delta or None
        if kind == "response.output_item.done":
            self.items[event.output_index] = event.item
        elif kind in ("response.completed", "response.incomplete"):
            self.final = event.response
        elif kind == "response.failed":
            error = getattr(event.response, "error", None)
            raise self.model._failed(getattr(error, "message", None))
        elif kind == "error":
            raise self.model._failed(getattr(event, "message", None))
        return None

    def result(self) -> ModelResponse:
        final = self.final
        output = getattr(final, "output", None) if final is not None else None
        if not output:  # a server that sends an empty final output: use the streamed items
            output = [self.items[i] for i in sorted(self.items)]
        content, calls = _parse_output(output)
        if content is None and self.parts:
            content = "".join(self.parts)
        return ModelResponse(
            content=content,
            tool_calls=calls,
            usage=_usage(getattr(final, "usage", None)),
            model=getattr(final, "model", None),
        )


class OpenAIResponses(OpenAIModelBase):
    """A model behind OpenAI's Responses API (``/v1/responses``).

    The conversation is sent whole as ``input`` items each time (kern keeps the history,
    so no ``previous_response_id``); ``max_tokens`` is sent as ``max_output_tokens``.
    """

    provider: ClassVar[str] = "openai-responses"

    def _params(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"model": self.id, "input": response_input(messages)}
        if tools:
            params["tools"] = response_tools(tools)
        if self.max_tokens is not None:
            params["max_output_tokens"] = self.max_tokens
        params.update(self._sampling_params())
        return params

    def _failed(self, message: str | None) -> ModelProviderError:
        return ModelProviderError(
            f"the model server at {self.resolved_base_url()} failed the response for "
            f"model {self.id!r}: {message or 'no reason given'}"
        )

    def _parse(self, response: Any) -> ModelResponse:
        if getattr(response, "status", None) == "failed":
            raise self._failed(getattr(getattr(response, "error", None), "message", None))
        content, calls = _parse_output(getattr(response, "output", None) or [])
        return ModelResponse(
            content=content,
            tool_calls=calls,
            usage=_usage(getattr(response, "usage", None)),
            model=getattr(response, "model", None),
        )

    def response(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None
    ) -> ModelResponse:
        client = self.get_client()
        with self._provider_errors():
            response = client.responses.create(**self._params(messages, tools))
        return self._parse(response)

    async def aresponse(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None
    ) -> ModelResponse:
        client = self.get_async_client()
        with self._provider_errors():
            response = await client.responses.create(**self._params(messages, tools))
        return self._parse(response)

    def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None
    ) -> Iterator[StreamItem]:
        client = self.get_client()
        state = _ResponsesStreamState(self)
        with self._provider_errors():
            events = client.responses.create(**self._params(messages, tools), stream=True)
            with events:
                for event in events:
                    text = state.feed(event)
                    if text:
                        yield ModelDelta(content=text)
        yield state.result()

    async def astream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None
    ) -> AsyncIterator[StreamItem]:
        client = self.get_async_client()
        state = _ResponsesStreamState(self)
        with self._provider_errors():
            events = await client.responses.create(**self._params(messages, tools), stream=True)
            async with events:
                async for event in events:
                    text = state.feed(event)
                    if text:
                        yield ModelDelta(content=text)
        yield state.result()
