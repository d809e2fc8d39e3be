"""``kern.text.words``, the one word tokenizer, and the backends' normalisations after it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kern.db.duckdb import terms as duckdb_terms
from kern.db.mongo import search as mongo_search
from kern.db.redis import text as redis_text
from kern.db.sql import search as sql_search
from kern.learn import text as learn_text
from kern.text import words

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        (None, []),
        ("   \n\t", []),
        ("Hello, World!", ["Hello", "World"]),
        ("snake_case stays whole", ["snake_case", "stays", "whole"]),
        ("Zürich 2024, café", ["Zürich", "2024", "café"]),
        ("日本語 と русский", ["日本語", "と", "русский"]),
        ("user's x-y", ["user", "s", "x", "y"]),
        ("a a a", ["a", "a", "a"]),
    ],
)
def test_words_are_word_character_runs_in_order(text, expected):
    assert words(text) == expected


def test_no_search_syntax_survives():
    query = 'what\'s "up" AND (x OR -y*) ~z^2 {a:b} [c] | d & e; f--'
    tokens = words(query)
    assert " ".join(tokens) == "what s up AND x OR y z 2 a b c d e f"
    assert all(re.fullmatch(r"\w+", token) for token in tokens)


def test_case_is_kept_for_the_caller_to_normalise():
    assert words("Straße ΣΊΣΥΦΟΣ") == ["Straße", "ΣΊΣΥΦΟΣ"]


def test_each_backend_keeps_its_own_normalisation():
    # Recall (kern.learn) casefolds: ß becomes ss.
    assert learn_text.words("Straße Tea") == ["strasse", "tea"]
    # The SQL backends' queries lowercase: ß stays.
    assert sql_search.query_terms("Straße TEA tea") == ["straße", "tea"]
    # Mongo lowercases, folds accents and drops stop words.
    assert list(mongo_search.words("The Café in Zürich")) == ["cafe", "zurich"]
    # DuckDB folds and stems each word.
    assert duckdb_terms.search_terms("Preferred Zürich") == ["prefer", "zurich"]
    # Redis folds the whole text first, so a decomposed accent does not split its word.
    assert redis_text.tokens("Zu\u0308rich") == ["zurich"]
    # The others fold word by word, after cutting.
    assert mongo_search.query_terms("Zu\u0308rich") == ["zu", "rich"]


def test_the_tokenizer_regex_is_written_once():
    """Storage tokenizers use ``kern.text.words`` (the scripted model server is not one)."""
    pattern = re.compile(r"""re\.compile\(\s*r?["']\\w\+["']""")
    sources = [
        *(REPO / "kern_core" / "src").rglob("*.py"),
        *(REPO / "plugins").rglob("src/**/*.py"),
    ]
    defining = sorted(
        str(path.relative_to(REPO))
        for path in sources
        if pattern.search(path.read_text()) and path.name != "scripted_server.py"
    )
    assert defining == ["kern_core/src/kern/text.py"]
