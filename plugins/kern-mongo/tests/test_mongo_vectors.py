"""Recall by meaning on MongoDB (issue 14): how vectors are stored, searched and backfilled.

The backend-independent behaviour is the conformance suite's (``VectorScenarios``); here,
what the Mongo backend promises on top: the vector is two fields of the memory's or
learning's own document, written by the upsert's one update; a search is the exact path
(two finds, the first through the index of the scan); ``set_embeddings`` is one round trip;
record reads never fetch a vector; and the schema brings an older database forward. Most
tests run on both ``MongoDb`` and ``AsyncMongoDb`` (the ``store`` fixture).
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from mongo_probes import (  # beside conftest.py, which puts this folder on sys.path
    explain_find,
    plan_uses_index,
    raw_documents,
    shared_counter,
)
from pymongo import AsyncMongoClient, MongoClient, monitoring

from kern.db.mongo import AsyncMongoDb, MongoDb, calls, codec
from kern.records import Embedding, Learning, LearningStatus, Memory, Session

COUNTER = shared_counter()
MODEL, OTHER = "embedder-a", "embedder-b"
#: The vector fields, which no record read may return.
VECTOR_FIELDS = {"embedding", "embedding_model"}


def emb(*head: float, model: str = MODEL) -> Embedding:
    """A 4-dimension vector starting with ``head``; cosines with ``emb(1)`` are easy to see."""
    return Embedding(model=model, vector=[*head, *[0.0] * (4 - len(head))])


class Store:
    """A ``MongoDb`` or ``AsyncMongoDb``, called the same way: ``await store.<method>(...)``."""

    def __init__(self, db: MongoDb | AsyncMongoDb, client: MongoClient[Any]) -> None:
        self.db = db
        self.client = client  # a sync client of the same server, to look at documents

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.db, name)
        if self.db.is_async:
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call

    @property
    def database(self) -> str:
        return self.db.database_name

    def raw(self, table: str) -> Any:
        """The collection behind a logical table, through the sync client."""
        return self.client[self.database][f"{self.db.collection_prefix}{table}"]


async def _close(db: MongoDb | AsyncMongoDb) -> None:
    if isinstance(db, AsyncMongoDb):
        await db.close()
    else:
        db.close()


@pytest.fixture(params=["sync", "async"])
async def store(
    request: pytest.FixtureRequest, mongo: Any, mongo_kwargs: dict[str, str]
) -> AsyncIterator[Store]:
    db: MongoDb | AsyncMongoDb = (MongoDb if request.param == "sync" else AsyncMongoDb)(
        **mongo_kwargs
    )
    await Store(db, mongo.client).create_tables()
    yield Store(db, mongo.client)
    await _close(db)


@pytest.fixture
def db(mongo_kwargs: dict[str, str]) -> Iterator[MongoDb]:
    db = MongoDb(**mongo_kwargs)
    db.create_tables()
    yield db
    db.close()


def memory_ids(hits: list[Any]) -> list[tuple[str, float]]:
    return [(hit.memory.memory_id, round(hit.score, 5)) for hit in hits]


def learning_ids(hits: list[Any]) -> list[tuple[str, float]]:
    return [(hit.learning.learning_id, round(hit.score, 5)) for hit in hits]


# -- stored with the document ---------------------------------------------------------------
async def test_the_vector_is_stored_in_the_document_by_the_upserts_one_write(
    store: Store,
) -> None:
    """Two fields of the record's own document, set by the upsert's one update: the model,
    and the vector as BSON binary (generic subtype: pymongo gives ``bytes``) of little-endian
    float32."""
    embedding = emb(0.25, -1.5, 3.0, 0.125)  # exact in float32
    with COUNTER.counting(store.database) as tally:
        memory = await store.upsert_memory(Memory(user_id="u", content="tea"), embedding=embedding)
    assert tally.commands == ["update"]  # a new memory: one write, vector included
    doc = store.raw("memories").find_one({"_id": memory.memory_id})
    assert doc["embedding_model"] == MODEL
    assert type(doc["embedding"]) is bytes and len(doc["embedding"]) == 4 * 4
    assert doc["embedding"] == struct.pack("<4f", *embedding.vector)
    assert doc["embedding"] == embedding.as_float32()
    assert Embedding.from_float32(MODEL, doc["embedding"]) == embedding

    with COUNTER.counting(store.database) as tally:
        await store.upsert_memory(memory, embedding=emb(0.0, 1.0))  # an update: same write
    assert tally.commands.count("update") == 1 and "bulkWrite" not in tally.commands
    assert store.raw("memories").find_one({"_id": memory.memory_id})["embedding"] == (
        emb(0.0, 1.0).as_float32()
    )

    learning = await store.upsert_learning(Learning(kind="k", content={"a": 1}), embedding=emb(1))
    doc = store.raw("learnings").find_one({"_id": learning.learning_id})
    assert (doc["embedding_model"], doc["embedding"]) == (MODEL, emb(1).as_float32())


async def test_an_upsert_without_a_vector_removes_the_stored_one(store: Store) -> None:
    memory = await store.upsert_memory(Memory(user_id="u", content="Berlin"), embedding=emb(1))
    learning = await store.upsert_learning(Learning(kind="k", content={"c": "x"}), embedding=emb(1))
    assert await store.search_memories_by_vector("u", emb(1)) != []

    await store.upsert_memory(memory.model_copy(update={"content": "Munich"}))
    await store.upsert_learning(learning.model_copy(update={"content": {"c": "y"}}))
    for table, row in (("memories", memory.memory_id), ("learnings", learning.learning_id)):
        doc = store.raw(table).find_one({"_id": row})
        assert VECTOR_FIELDS.isdisjoint(doc), doc
    assert await store.search_memories_by_vector("u", emb(1)) == []
    assert await store.search_learnings_by_vector(emb(1), kind="k") == []
    assert [m.memory_id for m in await store.memories_without_embedding(MODEL)] == [
        memory.memory_id
    ]


# -- search ---------------------------------------------------------------------------------
async def test_search_compares_one_models_vectors_of_one_user(store: Store) -> None:
    same = await store.upsert_memory(Memory(user_id="u", content="a"), embedding=emb(1))
    close = await store.upsert_memory(Memory(user_id="u", content="b"), embedding=emb(0.6, 0.8))
    by_other = await store.upsert_memory(
        Memory(user_id="u", content="c"), embedding=emb(1, model=OTHER)
    )
    await store.upsert_memory(Memory(user_id="u", content="no vector"))
    strangers = [
        await store.upsert_memory(Memory(user_id=user, content="d"), embedding=emb(1))
        for user in ("v", "U", "u ")
    ]

    found = await store.search_memories_by_vector("u", emb(3), limit=10)
    assert memory_ids(found) == [(same.memory_id, 1.0), (close.memory_id, 0.6)]
    assert [hit.memory for hit in found] == [same, close]
    assert memory_ids(await store.search_memories_by_vector("u", emb(1), limit=1)) == [
        (same.memory_id, 1.0)
    ]
    assert memory_ids(await store.search_memories_by_vector("u", emb(1, model=OTHER))) == [
        (by_other.memory_id, 1.0)
    ]
    assert await store.search_memories_by_vector("u", emb(1, model="unused")) == []
    assert await store.search_memories_by_vector("u", emb(1), limit=0) == []
    for stranger in strangers:
        hits = await store.search_memories_by_vector(stranger.user_id, emb(1), limit=10)
        assert memory_ids(hits) == [(stranger.memory_id, 1.0)]


async def test_search_by_agent(store: Store) -> None:
    one = await store.upsert_memory(
        Memory(user_id="u", agent_id="one", content="a"), embedding=emb(0.6, 0.8)
    )
    two = await store.upsert_memory(
        Memory(user_id="u", agent_id="two", content="b"), embedding=emb(1)
    )
    anyone = await store.upsert_memory(Memory(user_id="u", content="c"), embedding=emb(0.8, 0.6))
    await store.upsert_memory(Memory(user_id="v", agent_id="one", content="d"), embedding=emb(1))

    everyone = await store.search_memories_by_vector("u", emb(1))
    assert memory_ids(everyone) == [
        (two.memory_id, 1.0),
        (anyone.memory_id, 0.8),
        (one.memory_id, 0.6),
    ]
    assert memory_ids(await store.search_memories_by_vector("u", emb(1), agent_id="one")) == [
        (one.memory_id, 0.6)
    ]
    assert await store.search_memories_by_vector("u", emb(1), agent_id="three") == []


async def test_search_learnings_by_every_filter(store: Store) -> None:
    """kind, namespace, user_id and status (active unless given; ``None``: any) scope a
    search by vector as they scope ``search_learnings``."""
    proposed = LearningStatus.PROPOSED
    specs: dict[str, tuple[dict[str, Any], Embedding]] = {
        "ada": ({"kind": "k", "namespace": "user", "user_id": "ada"}, emb(1)),
        "bob": ({"kind": "k", "namespace": "user", "user_id": "bob"}, emb(0.96, 0.28)),
        "global": ({"kind": "k"}, emb(0.8, 0.6)),
        "proposed": ({"kind": "k", "user_id": "ada", "status": proposed}, emb(0.6, 0.8)),
        "other kind": ({"kind": "j", "namespace": "user", "user_id": "ada"}, emb(0.28, 0.96)),
        "other model": ({"kind": "k", "user_id": "ada"}, emb(1, model=OTHER)),
    }
    ids = {}
    for name, (fields, embedding) in specs.items():
        learning = Learning(content={"name": name}, **fields)
        ids[name] = (await store.upsert_learning(learning, embedding=embedding)).learning_id
    await store.upsert_learning(Learning(kind="k", user_id="ada", content={"none": 1}))

    async def names(**filters: Any) -> list[str]:
        hits = await store.search_learnings_by_vector(emb(1), limit=10, **filters)
        by_id = {row: name for name, row in ids.items()}
        return [by_id[hit.learning.learning_id] for hit in hits]

    assert await names(kind="k") == ["ada", "bob", "global"]
    assert await names() == ["ada", "bob", "global", "other kind"]
    assert await names(kind="k", namespace="user") == ["ada", "bob"]
    assert await names(kind="k", namespace="global") == ["global"]
    assert await names(user_id="ada") == ["ada", "other kind"]
    assert await names(kind="k", user_id="ada", status=None) == ["ada", "proposed"]
    assert await names(status=proposed) == ["proposed"]
    assert await names(kind="k", namespace="user", user_id="bob") == ["bob"]
    assert await names(kind="nothing") == []
    found = await store.search_learnings_by_vector(emb(1), kind="k", limit=2)
    assert learning_ids(found) == [(ids["ada"], 1.0), (ids["bob"], 0.96)]
    assert [hit.learning for hit in found] == [
        await store.get_learning(ids["ada"]),
        await store.get_learning(ids["bob"]),
    ]


def _candidates_and_rows(db: MongoDb, search: Callable[[], Any]) -> list[dict[str, Any]]:
    with COUNTER.counting(db.database_name) as tally:
        search()
    assert tally.commands == ["find"] * len(tally.finds)
    return tally.finds


def test_search_is_one_find_of_the_candidates_and_one_of_the_best(db: MongoDb) -> None:
    """The exact path (no ``$vectorSearch`` outside Atlas): the candidates' ``_id`` and
    vector in one find, through the index of the scan; then the best rows by ``_id``,
    without their vectors. No candidate: the one find."""
    for i in range(6):
        db.upsert_memory(Memory(user_id="u", agent_id="a", content=f"{i}"), embedding=emb(1, i))
    db.upsert_learning(Learning(kind="k", namespace="n", user_id="u", content={}), embedding=emb(1))

    finds = _candidates_and_rows(db, lambda: db.search_memories_by_vector("u", emb(1), limit=2))
    candidates, rows = finds
    assert candidates["filter"] == {"user_id": {"$eq": "u"}, "embedding_model": {"$eq": MODEL}}
    assert candidates["projection"] == {"embedding": 1}
    assert "limit" not in candidates  # exact: every candidate of the user's scope is ranked
    assert list(rows["filter"]) == ["_id"] and len(rows["filter"]["_id"]["$in"]) == 2
    assert rows["projection"] == codec.RECORD

    lookups = [*finds]
    shapes: list[Callable[[], Any]] = [
        lambda: db.search_memories_by_vector("u", emb(1), agent_id="a"),
        lambda: db.search_learnings_by_vector(emb(1)),
        lambda: db.search_learnings_by_vector(emb(1), kind="k"),
        lambda: db.search_learnings_by_vector(emb(1), kind="k", namespace="n", user_id="u"),
        lambda: db.search_learnings_by_vector(emb(1), user_id="u", status=None),
    ]
    for search in shapes:
        lookups += _candidates_and_rows(db, search)
    for find in lookups:
        plan = explain_find(db.client, db.database_name, find)
        assert plan_uses_index(plan), (find, plan["queryPlanner"])

    nothing = _candidates_and_rows(db, lambda: db.search_memories_by_vector("x", emb(1)))
    assert len(nothing) == 1
    assert (
        _candidates_and_rows(db, lambda: db.search_memories_by_vector("u", emb(1), limit=0)) == []
    )


# -- set_embeddings ------------------------------------------------------------------------
@pytest.mark.parametrize("bulk", [True, False], ids=["bulkWrite", "without bulkWrite"])
async def test_set_embeddings_is_one_round_trip_and_keeps_updated_at(
    store: Store, bulk: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One client-level ``bulkWrite`` (MongoDB 8.0+, nx-27017), else one update per row;
    only the vector fields change. Ids not stored (or of the other table) are not counted."""
    memories = [await store.upsert_memory(Memory(user_id="u", content=f"{i}")) for i in range(3)]
    learning = await store.upsert_learning(Learning(kind="k", content={}))
    before = {doc["_id"]: doc for doc in store.raw("memories").find({})}
    if not bulk:
        monkeypatch.setattr(calls, "client_bulk_write", lambda client: False)

    vectors = {m.memory_id: emb(1, i) for i, m in enumerate(memories)}
    vectors |= {"not-stored": emb(1), learning.learning_id: emb(1)}
    with COUNTER.counting(store.database) as tally, COUNTER.counting("admin") as admin:
        assert await store.set_embeddings("memories", vectors) == 3
    sent = tally.commands + admin.commands
    assert sent == (["bulkWrite"] if bulk else ["update"] * 5)

    for memory in memories:
        doc = store.raw("memories").find_one({"_id": memory.memory_id})
        vector = vectors[memory.memory_id]
        assert (doc["embedding_model"], doc["embedding"]) == (MODEL, vector.as_float32())
        assert {k: v for k, v in doc.items() if k not in VECTOR_FIELDS} == before[doc["_id"]]
        assert await store.get_memory(memory.memory_id) == memory
    assert await store.list_memories("u") == list(reversed(memories))
    assert VECTOR_FIELDS.isdisjoint(store.raw("learnings").find_one({}))
    assert store.raw("memories").count_documents({}) == 3  # nothing upserted

    assert await store.set_embeddings("learnings", {learning.learning_id: emb(1)}) == 1
    with COUNTER.counting(store.database) as tally, COUNTER.counting("admin") as admin:
        assert await store.set_embeddings("learnings", {}) == 0
    assert tally.commands + admin.commands == []  # nothing to set: nothing sent
    assert await store.get_learning(learning.learning_id) == learning
    assert learning_ids(await store.search_learnings_by_vector(emb(1), kind="k")) == [
        (learning.learning_id, 1.0)
    ]


# -- backfill -------------------------------------------------------------------------------
async def test_without_embedding_lists_pages_in_id_order(store: Store) -> None:
    for row in ("m3", "m1", "m2"):
        await store.upsert_memory(Memory(memory_id=row, user_id=f"user-{row}", content=row))
    await store.upsert_memory(Memory(memory_id="m4", user_id="u", content="x"), embedding=emb(1))
    await store.upsert_memory(
        Memory(memory_id="m0", user_id="u", content="y"), embedding=emb(1, model=OTHER)
    )

    async def listed(limit: int = 100) -> list[str]:
        return [m.memory_id for m in await store.memories_without_embedding(MODEL, limit=limit)]

    assert await listed() == ["m0", "m1", "m2", "m3"]  # any user; another model's too
    assert await listed(2) == ["m0", "m1"]
    assert await listed(0) == []
    assert [m.memory_id for m in await store.memories_without_embedding(OTHER)] == [
        "m1",
        "m2",
        "m3",
        "m4",
    ]
    assert await store.memories_without_embedding(MODEL, limit=1) == [await store.get_memory("m0")]
    assert await store.set_embeddings("memories", {"m0": emb(1), "m1": emb(1)}) == 2
    assert await listed(2) == ["m2", "m3"]

    for row, kind in (("l3", "k"), ("l1", "j"), ("l2", "k"), ("l0", "i")):
        await store.upsert_learning(Learning(learning_id=row, kind=kind, content={}))
    await store.upsert_learning(Learning(learning_id="l4", kind="k", content={}), embedding=emb(1))

    async def learnings(**kwargs: Any) -> list[str]:
        found = await store.learnings_without_embedding(MODEL, **kwargs)
        return [learning.learning_id for learning in found]

    assert await learnings() == ["l0", "l1", "l2", "l3"]
    assert await learnings(kinds=["k"]) == ["l2", "l3"]
    assert await learnings(kinds=["k", "j", "k"], limit=2) == ["l1", "l2"]
    assert await learnings(kinds=[]) == []
    assert await learnings(limit=0) == []


# -- forget_user ----------------------------------------------------------------------------
async def test_forget_user_leaves_no_vector_of_hers(store: Store) -> None:
    await store.upsert_session(Session(session_id="s", user_id="gone"), expected_version=None)
    her_vector = emb(0.123, 0.456, 0.789)
    await store.upsert_memory(Memory(user_id="gone", content="a"), embedding=her_vector)
    await store.upsert_learning(
        Learning(kind="k", user_id="gone", content={}), embedding=her_vector
    )
    await store.upsert_learning(
        Learning(kind="k", session_id="s", content={}), embedding=her_vector
    )
    kept = await store.upsert_memory(Memory(user_id="stays", content="b"), embedding=emb(1))

    assert await store.forget_user("gone") == {
        "sessions": 1,
        "runs": 0,
        "memories": 1,
        "learnings": 2,
    }
    left = raw_documents(store.client, store.database, store.db.collection_prefix)
    assert not [entry for entry in left if "gone" in entry]
    assert not [entry for entry in left if repr(her_vector.as_float32()) in entry]
    assert store.raw("memories").count_documents({"embedding_model": MODEL}) == 1
    assert store.raw("learnings").count_documents({"embedding_model": MODEL}) == 0
    assert await store.search_memories_by_vector("gone", her_vector) == []
    assert memory_ids(await store.search_memories_by_vector("stays", emb(1))) == [
        (kept.memory_id, 1.0)
    ]


# -- record reads ---------------------------------------------------------------------------
class Replies(monitoring.CommandListener):
    """The documents each ``find`` got back, with the command (projection) that asked."""

    def __init__(self) -> None:
        self.pending: dict[int, dict[str, Any]] = {}
        self.finds: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("find", "getMore"):
            self.pending[event.request_id] = dict(event.command)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        command = self.pending.pop(event.request_id, None)
        if command is not None:
            cursor = event.reply["cursor"]
            self.finds.append((command, list(cursor.get("firstBatch", cursor.get("nextBatch")))))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.pending.pop(event.request_id, None)


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_record_reads_do_not_fetch_the_vector(
    mongo: Any, mongo_url: str, flavour: str
) -> None:
    """No read of memories or learnings gets a vector back from the server, but the
    candidates' read of a vector search (``_id`` and ``embedding``, nothing else)."""
    replies = Replies()
    client: Any
    if flavour == "sync":
        client = MongoClient(mongo_url, event_listeners=[replies])
        db: Any = MongoDb(client=client, collection_prefix=mongo.prefix)
    else:
        client = AsyncMongoClient(mongo_url, event_listeners=[replies])
        db = AsyncMongoDb(client=client, collection_prefix=mongo.prefix)
    store = Store(db, mongo.client)
    try:
        memory = await store.upsert_memory(
            Memory(memory_id="m", user_id="u", agent_id="a", content="green tea"),
            embedding=emb(1),
        )
        await store.upsert_memory(Memory(user_id="u", content="black tea"), embedding=emb(0, 1))
        await store.upsert_memory(
            Memory(user_id="u", content="tea"), embedding=emb(0, 1, model=OTHER)
        )
        learning = await store.upsert_learning(
            Learning(learning_id="l", kind="k", user_id="u", content={"t": "tea"}), embedding=emb(1)
        )
        replies.finds.clear()

        assert await store.get_memory("m") == memory
        assert memory in await store.list_memories("u")
        assert memory in await store.list_memories("u", agent_id="a")
        assert [h.memory for h in await store.search_memories("u", "green tea", limit=1)] == [
            memory
        ]
        await store.recall_memories("u", "tea")
        assert await store.get_learning("l") == learning
        assert await store.query_learnings(kind="k") == [learning]
        assert [h.learning for h in await store.search_learnings("tea")] == [learning]
        by_vector = await store.search_memories_by_vector("u", emb(1), limit=1)
        assert [hit.memory for hit in by_vector] == [memory]
        assert [h.learning for h in await store.search_learnings_by_vector(emb(1))] == [learning]
        assert len(await store.memories_without_embedding(MODEL)) == 1
        assert await store.learnings_without_embedding(OTHER) == [learning]

        returned = [(command, doc) for command, docs in replies.finds for doc in docs]
        assert len(returned) > 10
        with_vectors = [doc for command, doc in returned if not VECTOR_FIELDS.isdisjoint(doc)]
        candidates = [
            doc for command, doc in returned if command.get("projection") == {"embedding": 1}
        ]
        assert with_vectors == candidates and len(candidates) == 3
        assert all(set(doc) == {"_id", "embedding"} for doc in candidates)
    finally:
        await _close(db)
        if flavour == "sync":
            client.close()
        else:
            await client.close()


def test_the_codec_ignores_the_vector_fields(db: MongoDb) -> None:
    """Were a vector ever read with a record, the record would come back the same."""
    memory = db.upsert_memory(Memory(user_id="u", content="tea"), embedding=emb(1))
    learning = db.upsert_learning(Learning(kind="k", content={"a": 1}), embedding=emb(1))
    memory_doc = db.collections["memories"].find_one({"_id": memory.memory_id})
    learning_doc = db.collections["learnings"].find_one({"_id": learning.learning_id})
    assert "embedding" in memory_doc and "embedding" in learning_doc
    assert codec.memory_from(memory_doc) == memory
    assert codec.learning_from(learning_doc) == learning


# -- schema ---------------------------------------------------------------------------------
VECTOR_INDEXES = {
    "memories": ("user_id", "embedding_model"),
    "learnings": ("embedding_model", "kind", "namespace", "user_id"),
}


def _indexes(collection: Any) -> dict[tuple[str, ...], str]:
    """Each index's fields (directions aside: nx-27017 does not keep them) -> its name."""
    return {
        tuple(field for field, _ in info["key"]): name
        for name, info in collection.index_information().items()
    }


def test_vector_indexes_and_schema_version_2(db: MongoDb) -> None:
    versions = {doc["_id"]: doc["version"] for doc in db.collections["schema_versions"].find()}
    for table, fields in VECTOR_INDEXES.items():
        assert fields in _indexes(db.collections[table]), table
        assert versions[table] == 2


def test_a_database_from_before_vectors_is_brought_forward(mongo_kwargs: dict[str, str]) -> None:
    """Memories and learnings at version 1 (no vector index, documents without vectors):
    the next open makes the indexes and records version 2; the old documents are what a
    backfill lists, and once given a vector they are found by it."""
    db = MongoDb(**mongo_kwargs)
    memory = db.upsert_memory(Memory(user_id="u", content="written before vectors"))
    learning = db.upsert_learning(Learning(kind="k", content={"old": True}))
    for table, fields in VECTOR_INDEXES.items():
        collection = db.collections[table]
        collection.drop_index(_indexes(collection)[fields])
        db.collections["schema_versions"].update_one({"_id": table}, {"$set": {"version": 1}})
    db.close()

    reopened = MongoDb(**mongo_kwargs)
    try:
        assert reopened.memories_without_embedding(MODEL) == [memory]
        assert reopened.learnings_without_embedding(MODEL) == [learning]
        for table, fields in VECTOR_INDEXES.items():
            assert fields in _indexes(reopened.collections[table])
            version = reopened.collections["schema_versions"].find_one({"_id": table})
            assert version["version"] == 2
        assert reopened.set_embeddings("memories", {memory.memory_id: emb(1)}) == 1
        hits = reopened.search_memories_by_vector("u", emb(1))
        assert [hit.memory for hit in hits] == [memory]
    finally:
        reopened.close()
