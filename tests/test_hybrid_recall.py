"""Recall by meaning: vectors stored with memories, hybrid ranking, re-embedding, on SQLite.

Uses the offline ``LocalEmbedder`` (wordllama's bundled model), a real model: the
paraphrases below share no content word with their memory, so words alone cannot find them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from kern.db.sqlite import AsyncSqliteDb, SqliteDb
from kern.learn import Hybrid, LearningMachine, LocalEmbedder
from kern.learn.machine import EMBEDDER_RECORD

pytest.importorskip("wordllama")

FACTS = {
    "pet": "Ada adopted a beagle puppy last spring.",
    "job": "Ada works as a structural engineer at a bridge firm.",
    "diet": "Ada stopped eating meat and fish two years ago.",
    "travel": "Ada flies to Lisbon every summer to see her grandmother.",
    "music": "Ada plays the cello in a community orchestra.",
}


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


def machine(db: object, embedder: object = None, **options: object) -> LearningMachine:
    return LearningMachine(db=db, embedder=embedder, **options)  # type: ignore[arg-type]


def contents(hits: Sequence[object]) -> list[str]:
    return [hit.memory.content for hit in hits]  # type: ignore[attr-defined]


def test_a_paraphrase_is_found_by_meaning_not_by_words(db_file, embedder):
    words_only = machine(SqliteDb(db_file=db_file))
    for fact in FACTS.values():
        words_only.add_memory("ada", fact)
    question = "Does she have a dog?"
    assert words_only.search_memories("ada", question) == []  # no shared word

    lm = machine(SqliteDb(db_file=db_file), embedder)
    lm.reembed()
    assert contents(lm.search_memories("ada", question, limit=2))[0] == FACTS["pet"]


def test_memories_are_stored_with_their_vector(db_file, embedder):
    db = SqliteDb(db_file=db_file)
    lm = machine(db, embedder)
    lm.add_memory("ada", FACTS["job"])
    assert db.memories_without_embedding(embedder.id) == []
    assert len(db.memories_without_embedding("another-model")) == 1


def test_hybrid_keeps_exact_word_matches_and_adds_meaning(db_file, embedder):
    lm = machine(SqliteDb(db_file=db_file), embedder)
    for fact in FACTS.values():
        lm.add_memory("ada", fact)
    # "cello" is a word of one memory; "vegetarian" matches another by meaning only.
    found = contents(lm.search_memories("ada", "cello or vegetarian food?", limit=3))
    assert FACTS["music"] in found and FACTS["diet"] in found


def test_weights_choose_the_ranking(db_file, embedder):
    db = SqliteDb(db_file=db_file)
    for fact in FACTS.values():
        machine(db, embedder).add_memory("ada", fact)
    lexical_only = machine(db, embedder, hybrid=Hybrid(vector=0.0))
    assert lexical_only.search_memories("ada", "Does she have a dog?") == []
    vector_only = machine(db, embedder, hybrid=Hybrid(lexical=0.0))
    assert contents(vector_only.search_memories("ada", "Does she have a dog?"))[0] == FACTS["pet"]


def test_other_users_memories_are_never_recalled(db_file, embedder):
    lm = machine(SqliteDb(db_file=db_file), embedder)
    lm.add_memory("bob", "Bob adopted a beagle puppy last spring.")
    lm.add_memory("ada", FACTS["job"])
    hits = lm.search_memories("ada", "Does she have a dog?", limit=5)
    assert all(hit.memory.user_id == "ada" for hit in hits)


def test_reembed_backfills_resumably(db_file, embedder):
    db = SqliteDb(db_file=db_file)
    words_only = machine(db)
    for n in range(7):
        words_only.add_memory("ada", f"Ada visited museum number {n}.")

    class Failing:
        id, dimensions = embedder.id, embedder.dimensions
        calls = 0

        def embed(self, texts: Sequence[str]) -> list[list[float]]:
            Failing.calls += 1
            if Failing.calls > 2:
                raise RuntimeError("the embedding server went away")
            return embedder.embed(texts)

    with pytest.raises(RuntimeError):
        machine(db, Failing()).reembed(batch_size=2)
    assert len(db.memories_without_embedding(embedder.id)) == 3  # 2 batches of 2 kept

    assert machine(db, embedder).reembed(batch_size=2) == {"memories": 3, "learnings": 0}
    assert db.memories_without_embedding(embedder.id) == []
    assert machine(db, embedder).reembed() == {"memories": 0, "learnings": 0}


def test_a_changed_embedder_is_detected(db_file, embedder, caplog, scripted, model):
    from kern.agent import Agent

    db = SqliteDb(db_file=db_file)
    first = Agent(model=model, db=db, learning=machine(None, embedder), user_id="ada")
    first.run("hello", session_id="s1")
    [record] = db.query_learnings(kind=EMBEDDER_RECORD.kind)
    assert record.content == {"id": embedder.id, "dimensions": embedder.dimensions}

    class Other:
        id, dimensions = "other-model-3", 3

        def embed(self, texts: Sequence[str]) -> list[list[float]]:
            return [[1.0, 0.0, 0.0] for _ in texts]

    caplog.set_level(logging.WARNING, logger="kern.learn")
    second = Agent(model=model, db=db, learning=machine(None, Other()), user_id="ada")
    second.run("hello again", session_id="s1")
    assert any("lm.reembed()" in r.getMessage() for r in caplog.records)
    [record] = db.query_learnings(kind=EMBEDDER_RECORD.kind)
    assert record.content == {"id": "other-model-3", "dimensions": 3}


async def test_async_twins(db_file, embedder):
    lm = machine(AsyncSqliteDb(db_file=db_file), embedder)
    await lm.aadd_memory("ada", FACTS["travel"])
    hits = await lm.asearch_memories("ada", "Which country does her grandma live in?")
    assert contents(hits)[0] == FACTS["travel"]
    assert await lm.areembed() == {"memories": 0, "learnings": 0}
