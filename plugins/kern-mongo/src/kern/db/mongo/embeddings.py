"""Recall by meaning on MongoDB: the plans that search, set and list memories' and learnings'
vectors (stored in their documents: ``kern.db.mongo.codec.vector_fields``).

Why an exact scan and not ``$vectorSearch``: that stage exists only on MongoDB Atlas (and its
local Atlas deployments), behind a search index managed apart from the collection's own
indexes. A plain MongoDB server and nx-27017 (the test server) have nothing like it. So a
search here is exact, on every server, and bounded by its filter:

1. one ``find`` of the candidates, ``_id`` and ``embedding`` only: the documents of the
   filter whose vector was made by the query's embedder, read through the index of the scan
   (``{user_id, embedding_model}``: one user's memories; ``{embedding_model, kind,
   namespace, user_id}``: the learnings of a store);
2. ``kern.vectors.nearest`` ranks them by cosine similarity with numpy;
3. one ``find`` of the best ``limit`` by ``_id``, without their vectors.

The cost grows with the candidates, which is why the filter is never wider than one user's
memories or one store's learnings. A document changed between the two reads (they are not
one snapshot) comes back as it is at the second; one deleted in between is left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import ASCENDING

from kern.db.base import VectorTable
from kern.db.mongo import codec
from kern.db.mongo.calls import Bulk, Call, Op
from kern.db.mongo.ops import _eq
from kern.db.mongo.schema import LEARNINGS, MEMORIES
from kern.records import (
    Embedding,
    Learning,
    LearningStatus,
    Memory,
    ScoredLearning,
    ScoredMemory,
)
from kern.vectors import nearest

#: The collection of each table with vectors (``VectorTable``).
COLLECTIONS: dict[VectorTable, str] = {"memories": MEMORIES, "learnings": LEARNINGS}


def _nearest(
    collection: str, scope: dict[str, Any], embedding: Embedding, limit: int
) -> Op[list[tuple[dict[str, Any], float]]]:
    """The documents of ``scope`` nearest to ``embedding``, best first, with their cosine:
    the candidates' vectors in one find, the winners' records in another."""
    if limit <= 0:
        return []
    query = {**scope, codec.EMBEDDING_MODEL: {"$eq": embedding.model}}
    candidates = yield Call(collection, "find", (query,), {"projection": {codec.EMBEDDING: 1}})
    ranked = nearest(
        embedding.vector,
        ((doc["_id"], doc[codec.EMBEDDING]) for doc in candidates if codec.EMBEDDING in doc),
        limit,
    )
    if not ranked:
        return []
    ids = [key for key, _ in ranked]
    docs = yield Call(collection, "find", ({"_id": {"$in": ids}},), {"projection": codec.RECORD})
    found = {doc["_id"]: doc for doc in docs}
    return [(found[key], score) for key, score in ranked if key in found]


def search_memories_by_vector(
    user_id: str, embedding: Embedding, *, agent_id: str | None, limit: int
) -> Op[list[ScoredMemory]]:
    scope = _eq(user_id=user_id, agent_id=agent_id)
    ranked = yield from _nearest(MEMORIES, scope, embedding, limit)
    return [ScoredMemory(memory=codec.memory_from(doc), score=score) for doc, score in ranked]


def search_learnings_by_vector(
    embedding: Embedding,
    *,
    kind: str | None,
    namespace: str | None,
    user_id: str | None,
    status: LearningStatus | None,
    limit: int,
) -> Op[list[ScoredLearning]]:
    scope = _eq(kind=kind, namespace=namespace, user_id=user_id, status=status)
    ranked = yield from _nearest(LEARNINGS, scope, embedding, limit)
    return [ScoredLearning(learning=codec.learning_from(doc), score=score) for doc, score in ranked]


def set_embeddings(table: VectorTable, embeddings: Mapping[str, Embedding]) -> Op[int]:
    """One ``$set`` of the two vector fields per id, nothing else (``updated_at`` kept), all
    in one ``Bulk`` step: one ``bulkWrite`` round trip where the server has it. An id not
    stored matches nothing and is not counted."""
    if not embeddings:
        return 0
    collection = COLLECTIONS[table]
    updates = tuple(
        Call(collection, "update_one", ({"_id": key}, {"$set": codec.vector_fields(embedding)}))
        for key, embedding in embeddings.items()
    )
    matched: int = yield Bulk(updates)
    return matched


def _without(limit: int) -> dict[str, Any]:
    """The find options of a ``*_without_embedding`` page: ``_id`` order, records only."""
    return {"sort": [("_id", ASCENDING)], "limit": limit, "projection": codec.RECORD}


def memories_without_embedding(model: str, *, limit: int) -> Op[list[Memory]]:
    """Memories of any user with no vector by ``model`` (none, or another embedder's), in
    ``_id`` order. A maintenance read (``LearningMachine.reembed``), not a turn's: MongoDB
    walks the ``_id`` index and skips the documents that have one, so a page also costs
    those before it (no index orders "lacking a vector" by ``_id``: ``$ne`` is two ranges,
    and nx-27017 cannot index ``_id`` beside another field)."""
    if limit <= 0:
        return []
    query = {codec.EMBEDDING_MODEL: {"$ne": model}}
    docs = yield Call(MEMORIES, "find", (query,), _without(limit))
    return [codec.memory_from(doc) for doc in docs]


def learnings_without_embedding(
    model: str, *, kinds: Sequence[str] | None, limit: int
) -> Op[list[Learning]]:
    """As ``memories_without_embedding``, for learnings of ``kinds`` (``None``: any)."""
    wanted = None if kinds is None else list(dict.fromkeys(kinds))
    if limit <= 0 or wanted == []:
        return []
    query: dict[str, Any] = {codec.EMBEDDING_MODEL: {"$ne": model}}
    if wanted is not None:
        query["kind"] = {"$in": wanted}
    docs = yield Call(LEARNINGS, "find", (query,), _without(limit))
    return [codec.learning_from(doc) for doc in docs]


__all__ = [
    "learnings_without_embedding",
    "memories_without_embedding",
    "search_learnings_by_vector",
    "search_memories_by_vector",
    "set_embeddings",
]
