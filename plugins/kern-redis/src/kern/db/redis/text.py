"""Words for the search index, and ranking, without RediSearch (plain redis-server has none).

Text is cut into word tokens, accents folded (``café`` -> ``cafe``), lowercased and lightly
stemmed (``prefers``/``preferred`` -> ``prefer``). The index is a sorted set per token and
scope (member: record id, score: updated_at), written with the record. A search reads the
newest ``CANDIDATES_PER_TERM`` members of each query term's set and the set sizes (document
frequencies), ranks the candidates by the summed IDF of the terms they contain, and scores
the best of them with BM25 on their actual text. Query text is only ever a list of words:
no operator in it means anything.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator

from kern.text import words

#: At most this many distinct terms of a query are searched.
MAX_TERMS = 32
#: Newest members read from each term's set: bounds the work of one search.
CANDIDATES_PER_TERM = 256

_VOWELS = frozenset("aeiouy")
_K1, _B = 1.2, 0.75


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def stem(word: str) -> str:
    """A light English suffix stripper: enough to match plurals and -ed/-ing forms."""
    if len(word) <= 3 or not word.isalpha():
        return word
    for suffix in ("ingly", "edly", "ing", "ed"):
        root = word[: -len(suffix)]
        if word.endswith(suffix) and len(root) >= 3 and _VOWELS & set(root):
            word = root
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]  # preferred -> preferr -> prefer
            break
    else:
        if word.endswith("ies") and len(word) > 4:
            word = word[:-3] + "y"
        elif word.endswith("sses"):
            word = word[:-2]
        elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
            word = word[:-1]
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def tokens(text: str) -> list[str]:
    """Every word of ``text`` as an index term, repeats kept (for term frequency).

    The text is folded before ``kern.text.words`` cuts it, not word by word after: a
    decomposed accent (``e`` + U+0301, not a word character) then does not split its word.
    Stored indexes hold terms made this way, so queries must keep the order.
    """
    return [stem(word) for word in words(_fold(text or ""))]


def query_terms(text: str) -> list[str]:
    """The distinct terms of a query, in order, at most ``MAX_TERMS``."""
    seen: dict[str, None] = {}
    for term in tokens(text):
        seen.setdefault(term, None)
        if len(seen) >= MAX_TERMS:
            break
    return list(seen)


def json_strings(value: object) -> Iterator[str]:
    """The text inside a JSON value (strings and numbers, nested ones included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        yield str(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from json_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from json_strings(item)


def document_terms(parts: Iterable[str]) -> list[str]:
    return [term for part in parts for term in tokens(part)]


def idf(total: int, frequency: int) -> float:
    total = max(total, frequency, 1)
    return math.log(1.0 + (total - frequency + 0.5) / (frequency + 0.5))


def bm25(
    terms: list[str], weights: dict[str, float], document: list[str], average_length: float
) -> float:
    """BM25 of one document (its term list) for the query ``terms``."""
    counts = Counter(document)
    length_ratio = len(document) / average_length if average_length > 0 else 1.0
    score = 0.0
    for term in terms:
        tf = counts.get(term, 0)
        if tf:
            norm = tf + _K1 * (1 - _B + _B * length_ratio)
            score += weights.get(term, 0.0) * tf * (_K1 + 1) / norm
    return score
