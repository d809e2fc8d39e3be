"""Words to index terms: the same normalisation for stored text and for queries.

Words are ``kern.text.words`` (as ``kern.db.sql.search.query_terms`` cuts queries, so no
query syntax exists to be misread), case-folded (``Straße`` -> ``strasse``), stripped of accents
(``café`` -> ``cafe``) and lightly stemmed for English: a plural ``-s``/``-es``/``-ies``, then
``-ed``/``-ing`` (when a vowel stays before it, undoubling ``preferred`` -> ``prefer``), then a
final ``-e``. So "prefers", "preferred" and "preferring" meet, and so do "hike" and "hiking".
It is deliberately small: a few wrong merges ("news"/"new") cost a little ranking noise,
never a missed or foreign row.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

from kern.db.sql.search import query_terms
from kern.text import words

_VOWEL = re.compile(r"[aeiouy]")
_UNDOUBLE = frozenset("bdfgkmnprt")


def fold(word: str) -> str:
    """Case-folded, without accents."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def stem(word: str) -> str:
    """A light English stem of a folded word (see the module docstring)."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        base = word[: -len(suffix)]
        if word.endswith("eed"):  # "speed", "agreed": not a past tense to strip
            break
        if word.endswith(suffix) and len(base) >= 3 and _VOWEL.search(base):
            if len(base) > 3 and base[-1] == base[-2] and base[-1] in _UNDOUBLE:
                base = base[:-1]
            word = base
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def normalise(word: str) -> str:
    return stem(fold(word))


def document_terms(texts: Iterable[str]) -> tuple[Counter[str], int]:
    """The term frequencies of a document made of ``texts``, and its length in words."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(normalise(word) for word in words(text))
    counts.pop("", None)
    return counts, sum(counts.values())


def search_terms(query: str) -> list[str]:
    """The distinct normalised terms of a query, in order, at most ``MAX_TERMS``."""
    seen: dict[str, None] = {}
    for word in query_terms(query):
        term = normalise(word)
        if term:
            seen.setdefault(term, None)
    return list(seen)


def json_texts(value: object) -> Iterable[str]:
    """The words a learning's JSON content is searched by: its string and number values."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        yield str(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from json_texts(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from json_texts(item)
