"""Search over encrypted text: rank a bounded, decrypted candidate set in kern.

The backend's text search sees only ciphertext, so with encryption on, ``search_memories``,
``recall_memories``, ``search_learnings`` (memories encrypted) and ``search_sessions``
(summaries are always encrypted) do not reach it: the layer reads the newest
``CANDIDATES`` rows of the scope (one user's memories, the learnings matching the filters,
a user's sessions) through the contract's list reads, which it decrypts, and ranks them here
by the query words they share. Older rows are found by vector recall (vectors are stored in
clear), not by words. Cost: one bounded read per search, whatever the table's size.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from kern.db.session_search import SCAN, query_words, rank_sessions
from kern.records import Learning, Memory, ScoredLearning, ScoredMemory
from kern.text import words

#: At most this many of the newest rows are decrypted and ranked per search.
CANDIDATES = 1000

#: The contract reads this module answers when the text they search is encrypted.
MEMORY_SEARCHES = frozenset({"search_memories", "recall_memories", "search_learnings"})
SESSION_SEARCHES = frozenset({"search_sessions"})

T = TypeVar("T")


def rank(
    items: Sequence[T], text_of: Callable[[T], str], query: str, limit: int
) -> list[tuple[T, float]]:
    """``items`` sharing a word with ``query``, by the share of its words they hold, at most
    ``limit``; among equals the order given (newest first)."""
    wanted = query_words(query)
    if not wanted or limit <= 0:
        return []
    scored: list[tuple[float, int, T]] = []
    for index, item in enumerate(items):
        found = wanted & {word.casefold() for word in words(text_of(item))}
        if found:
            scored.append((len(found) / len(wanted), index, item))
    scored.sort(key=lambda entry: (-entry[0], entry[1]))
    return [(item, score) for score, _, item in scored[:limit]]


def memory_text(memory: Memory) -> str:
    return " ".join([memory.content, *memory.topics])


def learning_text(learning: Learning) -> str:
    return json.dumps(learning.content, ensure_ascii=False)


# Each plan is (the list read to make, how to answer from its rows).
Plan = tuple[str, tuple[Any, ...], dict[str, Any], Callable[[Any], Any]]


def plan(name: str, bound: dict[str, Any]) -> Plan:
    """The bounded read that answers search ``name`` (its arguments ``bound``)."""
    if name == "search_sessions":
        user_id, query, limit = bound["user_id"], bound["query"], bound["limit"]
        return (
            "list_sessions",
            (),
            {"user_id": user_id, "limit": SCAN},
            lambda rows: rank_sessions([s for s in rows if s.user_id == user_id], query, limit),
        )
    if name == "search_learnings":
        query, limit = bound["query"], bound["limit"]
        filters = {key: bound[key] for key in ("kind", "namespace", "user_id", "status")}
        return (
            "query_learnings",
            (),
            {**filters, "limit": CANDIDATES},
            lambda rows: [
                ScoredLearning(learning=item, score=score)
                for item, score in rank(rows, learning_text, query, limit)
            ],
        )
    query, limit = bound["query"], bound["limit"]
    recent = bound.get("recent", 0) if name == "recall_memories" else 0

    def answer(rows: list[Memory]) -> Any:
        ranked = [
            ScoredMemory(memory=item, score=score)
            for item, score in rank(rows, memory_text, query, limit)
        ]
        return (
            (ranked, rows[:recent] if recent > 0 else []) if name == "recall_memories" else ranked
        )

    return (
        "list_memories",
        (bound["user_id"],),
        {"agent_id": bound["agent_id"], "limit": max(CANDIDATES, recent)},
        answer,
    )


__all__ = ["CANDIDATES", "MEMORY_SEARCHES", "SESSION_SEARCHES", "plan", "rank"]
