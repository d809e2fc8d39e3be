"""Turning a user's free text into search terms that no query syntax can misread.

Search input comes from people and models (``what's "up" AND (x``). Each backend's text
search has operators of its own; rather than escaping them, we keep only word tokens and
let the backend combine them. Terms are deduplicated and capped so a pasted essay cannot
make one search arbitrarily expensive.
"""

from __future__ import annotations

from kern.text import words

#: At most this many distinct terms go into one search.
MAX_TERMS = 32


def query_terms(text: str, *, max_terms: int = MAX_TERMS) -> list[str]:
    """The distinct word tokens of ``text``, lowercased, in order of first appearance."""
    seen: dict[str, None] = {}
    for word in words(text):
        seen.setdefault(word.lower(), None)
        if len(seen) >= max_terms:
            break
    return list(seen)
