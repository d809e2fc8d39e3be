"""The learning machine's memory API for people and stores: add_memory, search_memories."""

from __future__ import annotations

import pytest

from kern.db.sqlite import AsyncSqliteDb, SqliteDb
from kern.errors import InvalidIdError, SyncAsyncMismatchError
from kern.learn import LearningMachine, LearningMode, UserMemoryStore


@pytest.fixture
def lm(db_file) -> LearningMachine:
    return LearningMachine(db=SqliteDb(db_file=db_file))


def test_added_memories_are_found_ranked_for_their_user_only(lm):
    lm.add_memory("ada", "Ada adopted a beagle named Rufus.", topics=["pets"])
    lm.add_memory("ada", "Ada works as a structural engineer in Oslo.")
    lm.add_memory("bob", "Bob adopted a beagle too.")

    hits = lm.search_memories("ada", "What is the name of my beagle?")

    assert hits[0].memory.content == "Ada adopted a beagle named Rufus."
    assert all(hit.memory.user_id == "ada" for hit in hits)
    assert hits[0].memory.topics == ["pets"]
    assert lm.search_memories("carol", "beagle") == []


def test_a_restated_memory_is_refreshed_not_repeated(lm, db_file):
    first = lm.add_memory("ada", "Ada is allergic to penicillin.", ["health"])
    again = lm.add_memory("ada", "Ada is allergic to penicillin", ["medication"])

    assert again is not None and first is not None
    assert again.memory_id == first.memory_id
    assert again.topics == ["health", "medication"]
    assert len(SqliteDb(db_file=db_file).list_memories("ada")) == 1


def test_limit_and_blank_input(lm):
    for n in range(8):
        lm.add_memory("ada", f"Ada visited museum number {n} in Vienna.")
    assert len(lm.search_memories("ada", "museum Vienna", limit=3)) == 3
    assert lm.add_memory("ada", "   ") is None
    assert lm.search_memories("ada", "the and of") == []  # no content word to search by


def test_a_person_adding_a_memory_needs_no_approval(db_file):
    lm = LearningMachine(
        user_memory=UserMemoryStore(mode=LearningMode.PROPOSE), db=SqliteDb(db_file=db_file)
    )
    stored = lm.add_memory("ada", "Ada prefers tea to coffee.")
    assert stored is not None
    assert [h.memory.memory_id for h in lm.search_memories("ada", "tea")] == [stored.memory_id]
    assert lm.pending(user_id="ada") == []


def test_bad_ids_are_refused_before_anything_is_stored(lm, db_file):
    with pytest.raises(InvalidIdError):
        lm.add_memory("", "Ada likes tea.")
    with pytest.raises(InvalidIdError):
        lm.search_memories("a" * 300, "tea")
    assert SqliteDb(db_file=db_file).list_memories("ada") == []


async def test_async_twins(db_file):
    lm = LearningMachine(db=AsyncSqliteDb(db_file=db_file))
    await lm.aadd_memory("ada", "Ada runs the Berlin marathon every September.")
    hits = await lm.asearch_memories("ada", "Which marathon do I run?")
    assert hits and "Berlin marathon" in hits[0].memory.content
    with pytest.raises(SyncAsyncMismatchError, match="aadd_memory"):
        lm.add_memory("ada", "Ada likes tea.")
