"""The context budget: history trimmed to a token count, oldest first, tool calls kept whole.

``Agent(max_history_tokens=...)`` caps what the replayed history may cost. The count is an
estimate made here, without a tokenizer download or a network call: about four characters
a token (the rule of thumb for English with OpenAI's tokenizers) plus a few tokens per
message for its role and framing. It errs a little high, so a budget is rarely overrun.

Trimming drops whole *units*, oldest first: a message, with an assistant message's tool
results kept in its unit. An assistant message that asked for tools and the ``tool``
messages answering it go together or not at all: a request holding a tool result whose
call was trimmed away (or a call with no result) is refused by the model APIs. What is
left starts at a user message, so the model never sees an answer to a question it lost.
"""

from __future__ import annotations

from collections.abc import Sequence

from kern.records import Message

#: Characters counted as one token.
CHARS_PER_TOKEN = 4
#: Tokens counted for each message's role and framing.
MESSAGE_OVERHEAD = 4


def estimate_tokens(message: Message) -> int:
    """About how many tokens ``message`` costs in a request (no network, no tokenizer)."""
    chars = len(message.content or "")
    for call in message.tool_calls or ():
        chars += len(call.name) + len(call.arguments) + len(call.id)
    return MESSAGE_OVERHEAD + -(-chars // CHARS_PER_TOKEN)


def count_tokens(messages: Sequence[Message]) -> int:
    """The estimate for a list of messages."""
    return sum(estimate_tokens(message) for message in messages)


def units(messages: Sequence[Message]) -> list[list[Message]]:
    """``messages`` cut into the pieces trimming may drop: each message with the tool
    results that follow it (a tool result never starts a piece of its own, unless its
    call is not there at all: such an orphan is a piece that is always dropped)."""
    pieces: list[list[Message]] = []
    for message in messages:
        if message.role == "tool" and pieces and _answers(pieces[-1], message):
            pieces[-1].append(message)
        else:
            pieces.append([message])
    return pieces


def _answers(piece: list[Message], result: Message) -> bool:
    calls = piece[0].tool_calls or ()
    return any(call.id == result.tool_call_id for call in calls)


def _whole(piece: list[Message]) -> bool:
    """A piece that may be sent: not an orphan tool result, and every call answered."""
    head = piece[0]
    if head.role == "tool":
        return False
    asked = {call.id for call in head.tool_calls or ()}
    answered = {m.tool_call_id for m in piece[1:]}
    return asked <= answered


def fit_history(messages: Sequence[Message], max_tokens: int | None) -> tuple[list[Message], bool]:
    """The newest of ``messages`` that fit in ``max_tokens`` and whether any were left out.

    ``None`` is no budget (every message kept). Pieces are dropped oldest first (see
    ``units``), then any leading pieces until the history starts at a user message."""
    if max_tokens is None:
        return list(messages), False
    pieces = [piece for piece in units(messages) if _whole(piece)]
    dropped = len(pieces) < len(units(messages))
    total = sum(count_tokens(piece) for piece in pieces)
    start = 0
    while start < len(pieces) and total > max_tokens:
        total -= count_tokens(pieces[start])
        start += 1
    while start < len(pieces) and pieces[start][0].role != "user":
        start += 1
    kept = [message for piece in pieces[start:] for message in piece]
    return kept, dropped or start > 0


__all__ = [
    "CHARS_PER_TOKEN",
    "MESSAGE_OVERHEAD",
    "count_tokens",
    "estimate_tokens",
    "fit_history",
    "units",
]
