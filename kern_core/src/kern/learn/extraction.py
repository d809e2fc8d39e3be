"""One turn's extraction: a model call, arguments validated part by part, one bounded retry.

The learning machine offers the finished turn to the model with one tool per store in
ALWAYS or PROPOSE mode. Each call's arguments are validated with ``repair_arguments``:
what is valid is kept, whatever happens next. When some call was not valid (arguments
that are not JSON, parts that failed validation, a tool that does not exist), the model
gets its answer back with a tool result per call (``Saved.`` or what was wrong) and is
asked once more. What the retry sends is validated the same way and added, without the
items already kept; it is never retried. So a turn costs at most two extraction calls,
and a model that never produces valid arguments costs exactly one more than a good one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, JsonValue

from kern.effects import ModelCall, Turn
from kern.learn.base import Extraction
from kern.learn.repair import Repaired, dedupe_items, repair_arguments
from kern.models.base import Model, ModelResponse
from kern.records import Message, ToolCall

log = logging.getLogger("kern.learn")

#: The tool result of a valid call, in the retry request.
SAVED = "Saved."

#: How much of arguments that are not JSON the retry request quotes back.
QUOTED_CHARS = 300


@dataclass
class ExtractionStats:
    """What one turn's extraction cost and lost; stored as ``run.metrics["extraction"]``."""

    #: Model calls made for the extraction (1, or 2 with the retry).
    calls: int = 0
    #: 1 when the model was asked again because some call was not valid.
    retries: int = 0
    #: Extraction model calls that failed (a provider error): nothing came of them.
    failed_calls: int = 0
    #: Tool calls whose arguments were not valid as sent (over both model calls).
    invalid_calls: int = 0
    #: Parts left out by validation (list items, fields, whole calls), over both calls;
    #: a part the retry sent again correctly is counted here and kept from the retry.
    dropped_items: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    duration_s: float = 0.0

    def as_metrics(self) -> dict[str, JsonValue]:
        return {
            "calls": self.calls,
            "retries": self.retries,
            "failed_calls": self.failed_calls,
            "invalid_calls": self.invalid_calls,
            "dropped_items": self.dropped_items,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "duration_s": round(self.duration_s, 6),
        }


@dataclass
class _Attempt:
    """One model answer, validated: the tool result for each of its calls."""

    results: list[tuple[ToolCall, str]] = field(default_factory=list)
    needs_retry: bool = False


def extract(
    model: Model, messages: list[Message], extractions: Sequence[Extraction], run_id: str
) -> Turn[tuple[dict[str, list[BaseModel]], ExtractionStats]]:
    """Ask ``model`` what to keep; return the validated arguments per tool name, and stats."""
    started = time.perf_counter()
    by_name = {e.spec.name: e for e in extractions}
    specs = [e.spec for e in extractions]
    kept: dict[str, list[BaseModel]] = {name: [] for name in by_name}
    stats = ExtractionStats()
    response = yield from _ask(model, messages, specs, stats, run_id)
    if response is not None:
        attempt = _take(response, by_name, kept, stats, last=False)
        if attempt.needs_retry:
            stats.retries = 1
            retry = [*messages, _echo(response), *_results(attempt)]
            again = yield from _ask(model, retry, specs, stats, run_id)
            if again is not None:
                _take(again, by_name, kept, stats, last=True)
    stats.duration_s = time.perf_counter() - started
    return kept, stats


def _ask(
    model: Model, messages: list[Message], specs: list[Any], stats: ExtractionStats, run_id: str
) -> Turn[ModelResponse | None]:
    stats.calls += 1
    try:
        response = yield from ModelCall(model, messages, specs, quiet=True)
    except Exception as exc:  # the answer is stored; learning is skipped, not fatal
        stats.failed_calls += 1
        log.warning("learning extraction failed for run %s: %s", run_id, exc)
        return None
    stats.input_tokens += response.usage.input_tokens
    stats.output_tokens += response.usage.output_tokens
    return response


def _take(
    response: ModelResponse,
    by_name: Mapping[str, Extraction],
    kept: dict[str, list[BaseModel]],
    stats: ExtractionStats,
    *,
    last: bool,
) -> _Attempt:
    """Validate each call of ``response``, keep what is valid, say what to tell the model."""
    attempt = _Attempt()
    earlier = {name: list(values) for name, values in kept.items()}
    for call in response.tool_calls:
        extraction = by_name.get(call.name)
        if extraction is None:
            stats.invalid_calls += 1
            stats.dropped_items += 1
            names = ", ".join(by_name)
            attempt.results.append(
                (call, f"Error: there is no tool named {call.name!r}; the tools are: {names}.")
            )
            attempt.needs_retry = True
            continue
        repaired = repair_arguments(extraction.arguments, call.arguments)
        if repaired.value is not None:
            value = repaired.value
            if last:
                value = dedupe_items(earlier[call.name], value)
            kept[call.name].append(value)
        if repaired.ok:
            attempt.results.append((call, SAVED))
            continue
        stats.invalid_calls += 1
        stats.dropped_items += len(repaired.dropped)
        attempt.needs_retry = True
        attempt.results.append((call, _error_text(call, repaired)))
        log.warning(
            "%s invalid %s arguments: %s",
            "dropped parts of" if repaired.value is not None else "ignored",
            call.name,
            "; ".join(str(d) for d in repaired.dropped)[:300],
        )
    return attempt


def _error_text(call: ToolCall, repaired: Repaired) -> str:
    text = repaired.error_text(call.name)
    if repaired.not_json is not None:
        text += f"\nWhat you sent began: {call.arguments[:QUOTED_CHARS]}"
    return text


def _echo(response: ModelResponse) -> Message:
    """The model's answer as it goes back in the retry request. Arguments that are not a
    JSON object are sent as ``{}`` (some servers refuse a history they cannot parse); the
    tool result quotes them instead."""
    calls = [
        call if _is_object(call.arguments) else call.model_copy(update={"arguments": "{}"})
        for call in response.tool_calls
    ]
    return Message(role="assistant", content=response.content, tool_calls=calls or None)


def _results(attempt: _Attempt) -> list[Message]:
    return [Message(role="tool", tool_call_id=c.id, content=text) for c, text in attempt.results]


def _is_object(arguments: str) -> bool:
    try:
        return isinstance(json.loads(arguments or "{}"), dict)
    except ValueError:
        return False


__all__ = ["SAVED", "ExtractionStats", "extract"]
