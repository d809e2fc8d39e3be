"""Past sessions by their words: the ranking the contract's default ``search_sessions`` uses.

A backend with a text search of its own ranks sessions there (``search_sessions``
overridden); this is what a third-party backend gets without writing anything: the user's
newest sessions, read through ``list_sessions`` and ranked here by how many of the query's
words their name and summary hold (``kern.text.words``, case folded), newest first among
equals. Bounded: only the newest ``SCAN`` sessions are looked at.
"""

from __future__ import annotations

from collections.abc import Sequence

from kern.records import Session
from kern.text import words

#: How many of a user's newest sessions the default search looks at.
SCAN = 500


def session_text(session: Session) -> str:
    """What a session is searched by: its name and its summary."""
    return " ".join(part for part in (session.name, session.summary) if part)


def query_words(query: str) -> set[str]:
    """The query's distinct words, case folded (what every backend matches on)."""
    return {word.casefold() for word in words(query)}


def rank_sessions(sessions: Sequence[Session], query: str, limit: int) -> list[Session]:
    """``sessions`` holding any word of ``query``, most words first, at most ``limit``;
    among equals the order given (newest first, as ``list_sessions`` returns them)."""
    wanted = query_words(query)
    if not wanted or limit <= 0:
        return []
    scored: list[tuple[int, int, Session]] = []
    for index, session in enumerate(sessions):
        found = wanted & {word.casefold() for word in words(session_text(session))}
        if found:
            scored.append((-len(found), index, session))
    scored.sort(key=lambda item: (item[0], item[1]))
    return [session for _, _, session in scored[:limit]]


__all__ = ["SCAN", "query_words", "rank_sessions", "session_text"]
