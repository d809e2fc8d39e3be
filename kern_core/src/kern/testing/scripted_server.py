"""A scripted OpenAI-compatible HTTP server on loopback, for tests, demos and benchmarks.

The real ``openai`` SDK talks to it over HTTP, so what kern sends and parses is exercised
exactly as against a hosted model, with no network and no key. Replies come from a queue
(``server.script(...)``), then from an optional ``responder``, and otherwise from a
deterministic default that echoes the conversation back (so a demo shows memory working)::

    with ScriptedServer() as server:
        server.script(Reply.tool_calls(ToolCallReply(name="add", arguments={"a": 1, "b": 2})))
        model = OpenAIChat(id="scripted", base_url=server.base_url)
        ...
        assert server.chat_requests()[-1]["messages"][-1]["role"] == "tool"

Endpoints: ``POST /v1/chat/completions`` and ``POST /v1/responses`` (plain and SSE
streaming), ``POST /v1/embeddings`` (hashed bag-of-words vectors), ``GET /v1/models``.

Misbehaving on purpose, to test what kern does with a real, imperfect model::

    call = ToolCallReply("save_user_memories", {"memories": [{"content": "Ada likes tea"}]})
    server.script(
        Reply.tool_calls(call.with_value("memories.0.topics", "tea")),  # a wrong type
        Reply.tool_calls(call.without("memories.0.content")),  # a missing field
        Reply.tool_calls(call.broken()),  # arguments that are not JSON
        Reply.text("nothing"),  # no tool call at all
        Reply.tool_calls(call).after(0.2),  # a slow answer: sent 200 ms late
    )

Paths are dotted (``memories.0.content``: key, list index, key). A ``responder`` may return
such replies too, to misbehave on every request.

Run it for other processes with ``python -m kern.testing.scripted_server [--host H]
[--port P]``: the first line on stdout is the base URL.

Stdlib only. It is built to be fast (a benchmark measures agent turns against it): HTTP/1.1
keep-alive, every response sent with ``Content-Length`` in one write, ``TCP_NODELAY``, no
sleeps (but a reply's own ``after(seconds)``), no request logging.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import hashlib
import json
import math
import re
import signal
import socket
import struct
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "DEFAULT_EMBEDDING_DIMENSIONS",
    "LISTED_MODELS",
    "SUMMARY_MARKER",
    "RecordedRequest",
    "Reply",
    "Responder",
    "ScriptedServer",
    "ToolCallReply",
    "count_tokens",
    "default_reply_text",
    "embed_text",
    "main",
    "request_messages",
    "scripted_summary",
]

#: Length of the vectors ``/v1/embeddings`` returns when the request names no ``dimensions``.
DEFAULT_EMBEDDING_DIMENSIONS = 64

#: Model ids ``GET /v1/models`` lists. Any id is accepted by the other endpoints.
LISTED_MODELS = ("gpt-4.1-mini", "text-embedding-3-small", "scripted")

_PREFIX = "[scripted model]"


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class ToolCallReply:
    """One function call the scripted model makes. ``arguments`` may be a dict (sent as
    JSON) or JSON text; ``id`` is generated (``call_...``) when not given."""

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments))

    # -- misbehaving: each returns a new call, this one is left as it is

    def with_value(self, path: str, value: Any) -> ToolCallReply:
        """The call with ``value`` at the dotted ``path`` (``memories.0.topics``), e.g. a
        value of the wrong type; the key is added when it is not there."""
        arguments = self._arguments_copy("with_value")
        *parents, last = _path_parts(path)
        _set(_walk(arguments, parents, path), last, value, path)
        return replace(self, arguments=arguments)

    def without(self, *paths: str) -> ToolCallReply:
        """The call without the fields (or list items) at the dotted ``paths``: missing
        fields. Paths name the arguments as given, so remove list items last first."""
        arguments = self._arguments_copy("without")
        for path in paths:
            *parents, last = _path_parts(path)
            _delete(_walk(arguments, parents, path), last, path)
        return replace(self, arguments=arguments)

    def broken(self) -> ToolCallReply:
        """The call with its arguments cut off halfway: text that is not valid JSON, as
        sent by a model that stopped mid-call."""
        text = self.arguments_json()
        return replace(self, arguments=text[: len(text) // 2] or "{")

    def _arguments_copy(self, method: str) -> Any:
        if isinstance(self.arguments, str):
            raise ValueError(f"ToolCallReply.{method} needs arguments given as a dict")
        return copy.deepcopy(dict(self.arguments))


def _path_parts(path: str) -> list[str | int]:
    if not path:
        raise ValueError("a path names at least one field, e.g. 'memories.0.content'")
    return [int(part) if part.isdigit() else part for part in path.split(".")]


def _walk(node: Any, parts: Sequence[str | int], path: str) -> Any:
    for part in parts:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"the arguments have nothing at {path!r} ({part!r})") from None
    return node


def _set(node: Any, key: str | int, value: Any, path: str) -> None:
    try:
        node[key] = value
    except (IndexError, TypeError):
        raise ValueError(f"cannot set {path!r} in the arguments") from None


def _delete(node: Any, key: str | int, path: str) -> None:
    try:
        del node[key]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"the arguments have nothing at {path!r}") from None


@dataclass(frozen=True)
class Reply:
    """What the scripted model answers to one model request (chat completion or response).

    Build one with ``Reply.text(...)``, ``Reply.tool_calls(...)`` or ``Reply.error(...)``;
    ``.after(seconds)`` makes it a slow one. A model that calls no tool is ``Reply.text``.
    """

    content: str | None = None
    calls: tuple[ToolCallReply, ...] = ()
    status: int = 200
    error_message: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    retry: bool = False
    #: Seconds the server waits before sending this reply (its request is recorded first).
    delay: float = 0.0

    def after(self, seconds: float) -> Reply:
        """This reply, sent ``seconds`` late: a slow model (other requests are not held)."""
        if seconds < 0:
            raise ValueError(f"a delay cannot be negative: {seconds}")
        return replace(self, delay=seconds)

    @classmethod
    def text(cls, content: str) -> Reply:
        """A plain text answer."""
        return cls(content=content)

    @classmethod
    def tool_calls(cls, *calls: ToolCallReply, content: str | None = None) -> Reply:
        """The model asks for one or more function calls (optionally with some text)."""
        if not calls:
            raise ValueError("Reply.tool_calls needs at least one ToolCallReply")
        return cls(content=content, calls=tuple(calls))

    @classmethod
    def error(
        cls,
        status: int = 500,
        message: str = "scripted error",
        *,
        type: str | None = None,
        code: str | None = None,
        retry: bool = False,
    ) -> Reply:
        """An HTTP error in OpenAI's error shape.

        The response carries ``x-should-retry: false`` unless ``retry=True``, so the SDK
        surfaces it at once instead of retrying (one scripted error = one failed request).
        """
        if status < 400:
            raise ValueError(f"an error reply needs a 4xx or 5xx status, not {status}")
        return cls(
            status=status,
            error_message=message,
            error_type=type or _default_error_type(status),
            error_code=code,
            retry=retry,
        )

    @property
    def is_error(self) -> bool:
        return self.status >= 400


#: Dynamic behaviour: called with the JSON body of a model request (chat completions or
#: responses; see ``request_messages`` for a format-independent view of its conversation).
#: Return a ``Reply`` or a string, or ``None`` to fall back to the default reply.
Responder = Callable[[dict[str, Any]], "Reply | str | None"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received: method, path (no query string), parsed JSON body."""

    method: str
    path: str
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- conversation


def _text_of(content: Any) -> str:
    """The text of a message content: a string, or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return "".join(texts)
    return str(content)


def request_messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The conversation of a model request as chat-format messages (``role``, ``content``
    text, ``tool_calls``, ``tool_call_id``), whether it is a Chat Completions body
    (``messages``) or a Responses body (``instructions`` + ``input`` items)."""
    if "messages" in body:
        out: list[dict[str, Any]] = []
        for message in body.get("messages") or []:
            converted = dict(message)
            converted["content"] = _text_of(message.get("content"))
            out.append(converted)
        return out

    out = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        out.append({"role": "system", "content": instructions})
    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for item in items or []:
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type", "message")
        if kind == "message" and "role" in item:
            out.append({"role": item["role"], "content": _text_of(item.get("content"))})
        elif kind == "function_call":
            call = {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments", "")},
            }
            out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": item.get("call_id"),
                    "content": _text_of(item.get("output")),
                }
            )
    return out


def default_reply_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The default scripted answer: it repeats the last user message and lists every
    earlier user message it was given, so a demo shows whether history reached the model.

    ``messages`` are chat-format dicts (``role``, ``content``).
    """
    if messages and SUMMARY_MARKER in _text_of(messages[0].get("content")):
        return scripted_summary(messages)
    said = [_text_of(m.get("content")) for m in messages if m.get("role") == "user"]
    if not said:
        return f"{_PREFIX} I did not receive a message from you."
    *earlier, last = said
    if earlier:
        listed = "; ".join(f'"{text}"' for text in earlier)
        return f'{_PREFIX} You said: "{last}". Earlier in this conversation you said: {listed}.'
    return f'{_PREFIX} You said: "{last}". This is the first message of our conversation I can see.'


#: How kern's session summary prompt begins (``kern.summaries.SUMMARY_MARKER``).
SUMMARY_MARKER = "[kern session summary]"


def scripted_summary(messages: Sequence[Mapping[str, Any]]) -> str:
    """The default answer to kern's session summary prompt: the previous summary and what
    the user said in the new turns, so a test sees a fact carried from summary to summary."""
    body = _text_of(messages[-1].get("content")) if messages else ""
    previous, _, turns = body.partition("\n\nNew turns:\n")
    previous = previous.removeprefix("Previous summary:\n").strip()
    said = [line[len("User: ") :] for line in turns.splitlines() if line.startswith("User: ")]
    parts = [] if previous in ("", "(none yet)") else [previous]
    if said:
        parts.append("The user said: " + "; ".join(f'"{text}"' for text in said) + ".")
    return " ".join(parts) or "Nothing was said yet."


# --------------------------------------------------------------------------- tokens, vectors

_WORD = re.compile(r"\S+")
_EMBED_WORD = re.compile(r"[a-z0-9]+")


def count_tokens(text: str) -> int:
    """Approximate token count: whitespace-separated words. Consistent, not exact."""
    return len(_WORD.findall(text))


def _input_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    total = 0
    for message in messages:
        total += count_tokens(_text_of(message.get("content")))
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            total += count_tokens(str(function.get("arguments") or ""))
    return total


def _output_tokens(content: str | None, calls: Sequence[tuple[str, str, str]]) -> int:
    return count_tokens(content or "") + sum(count_tokens(args) for _, _, args in calls)


def embed_text(text: str, dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic embedding: a hashed bag of lowercase words, L2-normalised.

    Texts sharing words get similar vectors; unrelated texts are near orthogonal. A text
    with no words gets the vector of a fixed placeholder word (never a zero vector).
    """
    if dimensions < 1:
        raise ValueError("dimensions must be at least 1")
    vector = [0.0] * dimensions
    words = _EMBED_WORD.findall(text.lower()) or ["<empty>"]
    for word in words:
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        vector[int.from_bytes(digest, "little") % dimensions] += 1.0
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


# --------------------------------------------------------------------------- wire formats


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def _default_error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_exceeded"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def _error_body(
    message: str, type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _pieces(text: str) -> list[str]:
    """Split text into streamed deltas (a word and its trailing space each)."""
    return re.findall(r"\S+\s*|\s+", text)


def _halves(text: str) -> list[str]:
    """Arguments are streamed in two deltas, so clients must concatenate them."""
    if len(text) < 2:
        return [text]
    middle = len(text) // 2
    return [text[:middle], text[middle:]]


def _sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    if event:
        return f"event: {event}\ndata: {payload}\n\n".encode()
    return f"data: {payload}\n\n".encode()


@dataclass(frozen=True)
class _Answer:
    """A resolved, successful reply with ids assigned: what both API shapes are built from."""

    content: str | None
    calls: tuple[tuple[str, str, str], ...]  # (call id, name, arguments JSON)
    input_tokens: int
    output_tokens: int

    @property
    def usage_total(self) -> int:
        return self.input_tokens + self.output_tokens


def _chat_completion(body: Mapping[str, Any], answer: _Answer) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": answer.content,
        "refusal": None,
        "annotations": [],
    }
    if answer.calls:
        message["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
            for cid, name, args in answer.calls
        ]
    return {
        "id": _new_id("chatcmpl").replace("_", "-", 1),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model") or "scripted"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if answer.calls else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": answer.input_tokens,
            "completion_tokens": answer.output_tokens,
            "total_tokens": answer.usage_total,
        },
        "system_fingerprint": "kern-scripted",
    }


def _chat_stream(body: Mapping[str, Any], answer: _Answer) -> Iterator[bytes]:
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base = {
        "id": _new_id("chatcmpl").replace("_", "-", 1),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": str(body.get("model") or "scripted"),
        "system_fingerprint": "kern-scripted",
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        data: dict[str, Any] = {
            **base,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if include_usage:
            data["usage"] = None
        return _sse(data)

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    for piece in _pieces(answer.content or ""):
        yield chunk({"content": piece})
    for index, (cid, name, args) in enumerate(answer.calls):
        first = {"index": index, "id": cid, "type": "function"}
        yield chunk({"tool_calls": [{**first, "function": {"name": name, "arguments": ""}}]})
        for part in _halves(args):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
    yield chunk({}, "tool_calls" if answer.calls else "stop")
    if include_usage:
        usage = {
            "prompt_tokens": answer.input_tokens,
            "completion_tokens": answer.output_tokens,
            "total_tokens": answer.usage_total,
        }
        yield _sse({**base, "choices": [], "usage": usage})
    yield _sse("[DONE]")


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [_output_text(text)] if status == "completed" else [],
    }


def _call_item(item_id: str, cid: str, name: str, args: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": cid,
        "name": name,
        "arguments": args,
        "status": status,
    }


class _ResponseBuilder:
    """Builds a Responses API object and its stream events from one answer."""

    def __init__(self, body: Mapping[str, Any], answer: _Answer) -> None:
        self.body = body
        self.answer = answer
        self.id = _new_id("resp")
        self.created_at = int(time.time())
        self.message_id = _new_id("msg") if answer.content is not None else None
        self.call_ids = [_new_id("fc") for _ in answer.calls]

    def output(self) -> list[dict[str, Any]]:
        items = []
        if self.message_id is not None:
            items.append(_message_item(self.message_id, self.answer.content or ""))
        for item_id, (cid, name, args) in zip(self.call_ids, self.answer.calls, strict=True):
            items.append(_call_item(item_id, cid, name, args, "completed"))
        return items

    def response(self, status: str = "completed") -> dict[str, Any]:
        body = self.body
        tools = [t for t in body.get("tools") or [] if isinstance(t, Mapping)]
        completed = status == "completed"
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "completed_at": int(time.time()) if completed else None,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": str(body.get("model") or "scripted"),
            "output": self.output() if completed else [],
            "parallel_tool_calls": bool(body.get("parallel_tool_calls", True)),
            "previous_response_id": body.get("previous_response_id"),
            "temperature": body.get("temperature"),
            "top_p": body.get("top_p"),
            "tool_choice": body.get("tool_choice") or "auto",
            "tools": tools,
            "text": {"format": {"type": "text"}},
            "truncation": "disabled",
            "store": False,
            "metadata": {},
            "usage": (
                {
                    "input_tokens": self.answer.input_tokens,
                    "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                    "output_tokens": self.answer.output_tokens,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": self.answer.usage_total,
                }
                if completed
                else None
            ),
        }

    def events(self) -> Iterator[bytes]:
        seq = 0

        def event(kind: str, **fields: Any) -> bytes:
            nonlocal seq
            data = {"type": kind, "sequence_number": seq, **fields}
            seq += 1
            return _sse(data, event=kind)

        yield event("response.created", response=self.response("in_progress"))
        yield event("response.in_progress", response=self.response("in_progress"))
        index = 0
        if self.message_id is not None:
            mid, text = self.message_id, self.answer.content or ""
            where = {"item_id": mid, "output_index": index, "content_index": 0}
            yield event(
                "response.output_item.added",
                output_index=index,
                item=_message_item(mid, "", "in_progress"),
            )
            yield event("response.content_part.added", **where, part=_output_text(""))
            for piece in _pieces(text):
                yield event("response.output_text.delta", **where, delta=piece, logprobs=[])
            yield event("response.output_text.done", **where, text=text, logprobs=[])
            yield event("response.content_part.done", **where, part=_output_text(text))
            yield event(
                "response.output_item.done", output_index=index, item=_message_item(mid, text)
            )
            index += 1
        for item_id, (cid, name, args) in zip(self.call_ids, self.answer.calls, strict=True):
            yield event(
                "response.output_item.added",
                output_index=index,
                item=_call_item(item_id, cid, name, "", "in_progress"),
            )
            for part in _halves(args):
                yield event(
                    "response.function_call_arguments.delta",
                    item_id=item_id,
                    output_index=index,
                    delta=part,
                )
            yield event(
                "response.function_call_arguments.done",
                item_id=item_id,
                output_index=index,
                name=name,
                arguments=args,
            )
            yield event(
                "response.output_item.done",
                output_index=index,
                item=_call_item(item_id, cid, name, args, "completed"),
            )
            index += 1
        yield event("response.completed", response=self.response("completed"))


def _embeddings(body: Mapping[str, Any]) -> dict[str, Any]:
    raw = body.get("input")
    if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)):
        raw = [raw]
    texts = [
        " ".join(str(t) for t in item) if isinstance(item, list) else str(item)
        for item in raw or []
    ]
    dimensions = int(body.get("dimensions") or DEFAULT_EMBEDDING_DIMENSIONS)
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector: Any = embed_text(text, dimensions)
        if as_base64:
            # The SDK asks for base64 by default and decodes little-endian float32.
            vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(count_tokens(t) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": str(body.get("model") or "scripted-embedding"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _models_list() -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "kern-scripted"}
            for m in LISTED_MODELS
        ],
    }


# --------------------------------------------------------------------------- HTTP plumbing


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: httpx reuses the connection
    server_version = "kern-scripted"
    sys_version = ""
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # One write per response already; NODELAY also avoids the Nagle/delayed-ACK stall.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Status line, headers and body in a single write."""
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        lines = [
            f"HTTP/1.1 {status} {phrase}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            f"x-request-id: req_{uuid.uuid4().hex[:16]}",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + body)

    def send_json(self, status: int, data: Any, headers: Mapping[str, str] | None = None) -> None:
        self.send(status, json.dumps(data, separators=(",", ":")).encode(), headers=headers)

    def _dispatch(self) -> None:
        raw = self._read_body()
        try:
            self.server.scripted._handle(self, raw)
        except Exception as exc:  # answer with an error rather than drop the connection
            message = f"scripted server failed: {type(exc).__name__}: {exc}"
            self.send_json(500, _error_body(message, "server_error"), {"x-should-retry": "false"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    scripted: ScriptedServer

    def __init__(self, address: tuple[str, int], scripted: ScriptedServer) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.scripted = scripted
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, conn: socket.socket) -> None:
        with self._open_lock:
            self._open.add(conn)

    def untrack(self, conn: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(conn)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that vanished mid-request (a killed process) is not an error to print."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Drop idle keep-alive connections so their threads end with the server."""
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


# --------------------------------------------------------------------------- the server


class ScriptedServer:
    """An OpenAI-compatible server on loopback that answers from a script.

    Use it as a context manager or call ``start()`` / ``stop()``. It serves in a daemon
    thread; ``base_url`` is what to give the SDK (``http://127.0.0.1:PORT/v1``).
    """

    def __init__(
        self, responder: Responder | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.responder = responder
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._queue: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> ScriptedServer:
        """Bind and start serving (idempotent). With ``port=0`` a free port is chosen."""
        if self._httpd is not None:
            return self
        httpd = _HTTPServer((self.host, self.port), self)
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"kern-scripted-server:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and drop open connections."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def url(self) -> str:
        """The server root, ``http://HOST:PORT`` (no ``/v1``)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to pass as the SDK's ``base_url``."""
        return f"{self.url}/v1"

    # -- script and recording

    def script(self, *replies: Reply | str) -> ScriptedServer:
        """Queue replies, consumed in order by the next model requests (strings are text)."""
        with self._lock:
            self._queue.extend(Reply.text(r) if isinstance(r, str) else r for r in replies)
        return self

    @property
    def pending(self) -> int:
        """How many scripted replies have not been consumed yet."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received, in arrival order."""
        with self._lock:
            return list(self._requests)

    def model_requests(self) -> list[dict[str, Any]]:
        """JSON bodies of the model calls (chat completions and responses), in order."""
        return [r.body for r in self.requests if _endpoint(r.path) in _MODEL_ENDPOINTS]

    def chat_requests(self) -> list[dict[str, Any]]:
        """JSON bodies of the ``/chat/completions`` calls, in order."""
        return [r.body for r in self.requests if _endpoint(r.path) == "/chat/completions"]

    def responses_requests(self) -> list[dict[str, Any]]:
        """JSON bodies of the ``/responses`` calls, in order."""
        return [r.body for r in self.requests if _endpoint(r.path) == "/responses"]

    def clear(self) -> None:
        """Forget recorded requests and drop any unconsumed scripted replies."""
        with self._lock:
            self._requests.clear()
            self._queue.clear()

    # -- request handling (runs in the server's handler threads)

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            scripted = self._queue.popleft() if self._queue else None
        if scripted is not None:
            return scripted
        if self.responder is not None:
            produced = self.responder(body)
            if isinstance(produced, str):
                return Reply.text(produced)
            if produced is not None:
                return produced
        return Reply.text(default_reply_text(request_messages(body)))

    def _handle(self, handler: _Handler, raw: bytes) -> None:
        path = handler.path.split("?", 1)[0]
        method = handler.command
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                self._record(method, path, raw.decode("utf-8", "replace"), handler)
                handler.send_json(
                    400, _error_body("request body is not valid JSON", "invalid_request_error")
                )
                return
        self._record(method, path, body, handler)
        endpoint = _endpoint(path)

        if method == "GET" and endpoint == "/models":
            handler.send_json(200, _models_list())
        elif method == "GET" and endpoint.startswith("/models/"):
            model_id = endpoint[len("/models/") :]
            handler.send_json(
                200, {"id": model_id, "object": "model", "created": 0, "owned_by": "kern-scripted"}
            )
        elif method == "POST" and endpoint == "/embeddings" and isinstance(body, dict):
            handler.send_json(200, _embeddings(body))
        elif method == "POST" and endpoint in _MODEL_ENDPOINTS and isinstance(body, dict):
            self._answer_model(handler, endpoint, body)
        elif method == "POST" and endpoint in (*_MODEL_ENDPOINTS, "/embeddings"):
            handler.send_json(
                400, _error_body("request body must be a JSON object", "invalid_request_error")
            )
        else:
            message = f"Unknown request URL: {method} {path}. The scripted server serves " + (
                "/v1/chat/completions, /v1/responses, /v1/embeddings and /v1/models."
            )
            handler.send_json(404, _error_body(message, "invalid_request_error", "unknown_url"))

    def _record(self, method: str, path: str, body: Any, handler: _Handler) -> None:
        request = RecordedRequest(method, path, body, dict(handler.headers.items()))
        with self._lock:
            self._requests.append(request)

    def _answer_model(self, handler: _Handler, endpoint: str, body: dict[str, Any]) -> None:
        try:
            reply = self._next_reply(body)
        except Exception as exc:  # a failing responder is reported, not a hung client
            message = f"scripted responder failed: {type(exc).__name__}: {exc}"
            handler.send_json(
                500, _error_body(message, "server_error"), {"x-should-retry": "false"}
            )
            return
        if reply.delay > 0:
            time.sleep(reply.delay)  # this connection's thread only
        if reply.is_error:
            handler.send_json(
                reply.status,
                _error_body(
                    reply.error_message or "scripted error",
                    reply.error_type or _default_error_type(reply.status),
                    reply.error_code,
                ),
                {"x-should-retry": "true" if reply.retry else "false"},
            )
            return

        calls = tuple((c.id or _new_id("call"), c.name, c.arguments_json()) for c in reply.calls)
        content = reply.content
        if content is None and not calls:
            content = ""
        answer = _Answer(
            content=content,
            calls=calls,
            input_tokens=_input_tokens(request_messages(body)),
            output_tokens=_output_tokens(content, calls),
        )
        stream = bool(body.get("stream"))
        if endpoint == "/chat/completions":
            if stream:
                handler.send(200, b"".join(_chat_stream(body, answer)), "text/event-stream")
            else:
                handler.send_json(200, _chat_completion(body, answer))
        else:
            builder = _ResponseBuilder(body, answer)
            if stream:
                handler.send(200, b"".join(builder.events()), "text/event-stream")
            else:
                handler.send_json(200, builder.response())


_MODEL_ENDPOINTS = ("/chat/completions", "/responses")


def _endpoint(path: str) -> str:
    """The API path without the ``/v1`` prefix (both forms are served)."""
    path = path.rstrip("/") or "/"
    return path[3:] if path.startswith("/v1/") else path


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until killed; print the base URL as the first stdout line."""
    parser = argparse.ArgumentParser(
        prog="python -m kern.testing.scripted_server",
        description="A scripted OpenAI-compatible server: answers deterministically from "
        "the conversation it receives (no model, no network).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: a free one)")
    args = parser.parse_args(argv)

    def _terminate(signum: int, frame: object) -> None:
        raise SystemExit(0)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    server = ScriptedServer(host=args.host, port=args.port).start()
    try:
        print(server.base_url, flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
