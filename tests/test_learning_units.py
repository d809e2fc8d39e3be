"""The learning machine's pure parts: text normalisation, search queries, merging and the
near-duplicate finder (checked against brute force)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from kern.learn.curator import CuratedItem, find_duplicates
from kern.learn.stores import merge_content
from kern.learn.text import jaccard, normalise, search_query, slug, token_set


def test_normalise_ignores_case_punctuation_and_spacing():
    assert normalise("  Likes   TEA!! ") == normalise("likes tea") == "likes tea"
    assert normalise("green-tea, please.") == "green tea please"
    assert normalise("Straße") == normalise("STRASSE")


def test_search_query_keeps_content_words_only():
    assert search_query("What is my favourite colour?") == "favourite colour"
    assert search_query("Hi! How are you?") == ""
    assert search_query('what\'s "Postgres" AND (x OR y') == "postgres"
    assert search_query("name facts about Acme", exclude=["name", "facts"]) == "acme"
    assert len(search_query(" ".join(f"word{n}" for n in range(100))).split()) == 16


def test_slug():
    assert slug("Acme Corp.") == slug("  acme   corp") == "acme-corp"
    assert slug("!!!") == "unnamed"


def test_merge_content():
    old = {"name": "Ada", "preferences": ["tea"], "plan": ["a", "b"]}
    new = {"name": None, "preferences": ["Tea", "coffee"], "plan": ["c"], "role": "dev"}
    assert merge_content(old, new, replace=frozenset({"plan"})) == {
        "name": "Ada",
        "preferences": ["tea", "coffee"],
        "plan": ["c"],
        "role": "dev",
    }
    assert merge_content({"name": "Acme"}, {"name": "ACME"}, keep=frozenset({"name"})) == {
        "name": "Acme"
    }


def test_a_session_update_that_leaves_the_plan_out_keeps_it():
    """Strict tool schemas make a model send every field: an update about progress only
    must not clear the plan (null keeps it; an empty list clears it)."""
    from kern.learn.stores import SessionContext, SessionContextStore

    old = {"goal": "ship", "plan": ["write tests", "release"]}
    progress_only = SessionContext.model_validate({"progress": ["tests written"]})
    dumped = progress_only.model_dump(mode="json", exclude_none=True)
    merged = merge_content(old, dumped, SessionContextStore.replace_lists)
    assert merged["plan"] == ["write tests", "release"]
    assert merged["progress"] == ["tests written"]
    cleared = SessionContext.model_validate({"plan": []}).model_dump(exclude_none=True)
    assert merge_content(old, cleared, SessionContextStore.replace_lists)["plan"] == []


@dataclass(frozen=True)
class Item:
    id: str
    text: str

    def removed(self, reason: str, duplicate_of: str | None = None) -> CuratedItem:
        return CuratedItem(self.id, "k", None, self.text, reason, datetime.now(UTC), duplicate_of)


def brute_force(items: list[Item], threshold: float) -> set[str]:
    kept: list[Item] = []
    removed = set()
    for item in items:
        if any(
            normalise(item.text) == normalise(k.text)
            or jaccard(token_set(item.text), token_set(k.text)) >= threshold
            for k in kept
        ):
            removed.add(item.id)
        else:
            kept.append(item)
    return removed


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.85, 1.0])
def test_prefix_filtering_finds_exactly_what_brute_force_finds(threshold):
    rng = random.Random(7)
    vocabulary = [f"w{n}" for n in range(30)]
    items = []
    for n in range(400):
        size = rng.randint(1, 8)
        items.append(
            Item(str(n), " ".join(rng.choice(vocabulary[: 10 + n % 20]) for _ in range(size)))
        )
    found = {items[i].id for i, _ in find_duplicates(items, threshold)}
    assert found == brute_force(items, threshold)


def test_duplicates_point_at_the_kept_item():
    items = [Item("new", "Likes tea"), Item("old", "likes tea!"), Item("other", "Has a dog")]
    [(index, removed)] = find_duplicates(items, 0.85)
    assert index == 1 and removed.reason == "exact duplicate" and removed.duplicate_of == "new"


def test_embedding_duplicates():
    items = [Item("a", "one two"), Item("b", "three four"), Item("c", "five six")]
    vectors = [[1.0, 0.0], [0.99, 0.1], [0.0, 1.0]]
    found = find_duplicates(items, 0.85, vectors, 0.95)
    assert [(items[i].id, r.reason, r.duplicate_of) for i, r in found] == [
        ("b", "embedding duplicate", "a")
    ]
