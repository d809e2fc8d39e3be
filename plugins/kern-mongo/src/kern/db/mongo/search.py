"""Text search on an inverted term field: each memory and learning stores its ``terms``.

Why not ``$text``: MongoDB's text index works only on MongoDB itself (not on Cosmos DB's
Mongo API, and nx-27017 joins terms with AND where MongoDB joins them with OR), allows one
text index per collection, and reads query text as syntax (quotes make phrases, ``-``
negates). A multikey index on a plain array of words works on every server that speaks the
protocol: the query ``{terms: {$in: [...]}}`` reads only documents that share a word with
the question (plus the scope: the user, the kind...), at most ``CANDIDATES`` of them, and
those few are ranked here (BM25 over the candidates).

Words are runs of letters and digits, lowercased, with accents folded (``Zürich`` matches
``zurich``); common English stop words are left out of both sides. There is no stemming:
``hiking`` does not match ``hike``.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Sequence
from typing import TypeVar

from kern.text import words as word_runs

#: At most this many distinct words of a question are searched for.
MAX_QUERY_TERMS = 32
#: At most this many documents are read and ranked per search.
CANDIDATES = 500
#: At most this many distinct words are indexed per document.
MAX_DOCUMENT_TERMS = 512

_STOP_WORDS_TEXT = """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers herself him himself his how i if
    in into is it its itself just me more most my myself no nor not now of off on once
    only or other our ours ourselves out over own same she should so some such than that
    the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves s t d ll m re ve
"""
#: Common English words, left out of indexes and questions alike.
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())


def _fold(word: str) -> str:
    """Lowercase, accents removed (NFKD, combining marks dropped)."""
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def words(text: str) -> Iterable[str]:
    """The folded words of ``text`` that are not stop words, in order (repeats kept)."""
    for run in word_runs(text):
        word = _fold(run)
        if word and word not in STOP_WORDS:
            yield word


def query_terms(text: str) -> list[str]:
    """The distinct searchable words of a question, in order, at most ``MAX_QUERY_TERMS``.

    Query text is only ever split into words: no character of it is syntax.
    """
    seen: dict[str, None] = {}
    for word in words(text):
        seen.setdefault(word, None)
        if len(seen) >= MAX_QUERY_TERMS:
            break
    return list(seen)


def document_terms(texts: Iterable[str]) -> list[str]:
    """The distinct words a document is found by (what its ``terms`` field holds)."""
    seen: dict[str, None] = {}
    for text in texts:
        for word in words(text):
            seen.setdefault(word, None)
            if len(seen) >= MAX_DOCUMENT_TERMS:
                return list(seen)
    return list(seen)


T = TypeVar("T")

_K1 = 1.2
_B = 0.75


def rank(
    candidates: Sequence[tuple[T, Sequence[str], int]], terms: Sequence[str], limit: int
) -> list[tuple[T, float]]:
    """The best ``limit`` candidates for ``terms``, best first, with their scores.

    Each candidate is ``(item, its terms, a tie-breaker)``: equal scores go to the larger
    tie-breaker (the newer document). Scores are BM25 with the candidates as the corpus:
    a word few candidates share counts for more; shorter documents win ties of words.
    """
    if not candidates or not terms or limit <= 0:
        return []
    wanted = set(terms)
    present = [wanted.intersection(doc_terms) for _, doc_terms, _ in candidates]
    count = len(candidates)
    frequency = {term: sum(term in found for found in present) for term in wanted}
    idf = {term: math.log(1 + (count - df + 0.5) / (df + 0.5)) for term, df in frequency.items()}
    average = sum(len(doc_terms) for _, doc_terms, _ in candidates) / count or 1.0
    scored = []
    for (item, doc_terms, tie), found in zip(candidates, present, strict=True):
        if not found:
            continue
        norm = _K1 * (1 - _B + _B * len(doc_terms) / average)
        score = sum(idf[term] * (_K1 + 1) / (1 + norm) for term in found)
        scored.append((score, tie, item))
    scored.sort(key=lambda entry: (entry[0], entry[1]), reverse=True)
    return [(item, float(score)) for score, _, item in scored[:limit]]
