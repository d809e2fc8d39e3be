"""Text helpers for recall and curation: search queries, normalisation and similarity.

Recall hands the backend's own text search a query made of the input's content words (no
"what", "is", "my"...): fewer, rarer terms rank better and cost less on every backend.
The curator compares items by their normalised text (casefolded, punctuation and extra
whitespace removed), by token Jaccard similarity, and by embedding cosine when configured.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Sequence

from kern.text import words as word_runs

#: Words too common to help a search find the relevant item. "user" is one here: memories
#: are written in the third person ("The user prefers..."), so nearly all of them hold it.
_STOPWORDS = """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just let me more most my myself no nor not now of off on once
    only or other our ours ourselves out over own please same she should so some such than
    that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves s t d ll m re ve don doesn didn isn aren wasn
    weren won wouldn shouldn couldn hi hello hey thanks thank ok okay yes yeah also tell
    know want like get got make go going really much many us one
    user users
"""
STOPWORDS = frozenset(_STOPWORDS.split())

#: At most this many terms go into a recall search.
MAX_QUERY_TERMS = 16


def words(text: str) -> list[str]:
    """The casefolded words of ``text``, in order (``kern.text.words``, then casefolded, so
    that recall and entity names match whatever case the user wrote)."""
    return [w.casefold() for w in word_runs(text)]


def search_query(
    text: str, *, exclude: Iterable[str] = (), max_terms: int = MAX_QUERY_TERMS
) -> str:
    """The content words of ``text`` (no stopwords, no duplicates, no words in ``exclude``)
    as a space-separated query for the backend's search; ``""`` when none is left."""
    skip = STOPWORDS | {e.casefold() for e in exclude}
    seen: dict[str, None] = {}
    for word in words(text):
        if word not in skip and (len(word) > 1 or word.isdigit()):
            seen.setdefault(word, None)
            if len(seen) >= max_terms:
                break
    return " ".join(seen)


def normalise(text: str) -> str:
    """Casefolded, punctuation and symbols removed, whitespace collapsed: what counts as
    "the same text" for exact duplicates (``"Likes tea!"`` == ``"likes  tea"``)."""
    folded = unicodedata.normalize("NFKC", text or "").casefold()
    kept = "".join(" " if unicodedata.category(ch)[0] in "PSZC" else ch for ch in folded)
    return " ".join(kept.split())


def token_set(text: str) -> frozenset[str]:
    return frozenset(normalise(text).split())


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def slug(name: str) -> str:
    """A stable id for a named thing: ``"Acme Corp."`` and ``"acme corp"`` → ``"acme-corp"``."""
    return "-".join(normalise(name).split()) or "unnamed"


def prefix_length(size: int, threshold: float) -> int:
    """How many of a set's (globally ordered) tokens must be indexed so that any set with
    Jaccard similarity >= ``threshold`` to it shares at least one of them (prefix filtering)."""
    return size - math.ceil(threshold * size - 1e-9) + 1
