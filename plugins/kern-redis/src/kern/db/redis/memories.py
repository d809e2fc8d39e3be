"""Memories: record ``{m:<id>}`` and its vector ``{m:<id>}:vec``; every index in the owner's
slot ``{u:<user_id>}``, and the vector state sets of all memories in ``{ma}``.

Indexes (member memory_id, score updated_at µs): ``m`` (the user's memories), ``m:a:<agent>``
(theirs for one agent), and ``mt:<term>`` per search term of content and topics. Listing
reads ``m`` or ``m:a:<agent>``; search (by words or by vector) reads that user's sets only,
so another user's memories are never even candidates.
"""

from __future__ import annotations

from kern.db.redis import codec, docs, embeddings
from kern.db.redis.codec import text
from kern.db.redis.docs import DocSpec
from kern.db.redis.indexes import Ctx, walk
from kern.db.redis.plans import Cmd, Plan, together
from kern.db.redis.text import document_terms
from kern.records import Embedding, Memory, ScoredMemory


def _terms(memory: Memory) -> list[str]:
    return document_terms([memory.content, *memory.topics])


def spec(ctx: Ctx) -> DocSpec[Memory]:
    keys = ctx.keys

    def entries(memory: Memory) -> list[str]:
        names = [keys.memory_index(memory.user_id)]
        if memory.agent_id is not None:
            names.append(keys.memory_index(memory.user_id, memory.agent_id))
        names += [keys.memory_token(memory.user_id, term) for term in sorted(set(_terms(memory)))]
        return names

    return DocSpec(
        record_key=keys.memory,
        id_of=lambda memory: memory.memory_id,
        parse=codec.memory_from,
        entries=entries,
        owner=lambda memory: memory.user_id,
        terms=_terms,
        vector_key=keys.memory_vector,
        state_bases=lambda memory: [keys.all_memories],
    )


def list_memories(
    ctx: Ctx, s: DocSpec[Memory], user_id: str, *, agent_id: str | None, limit: int, offset: int
) -> Plan[list[Memory]]:
    def accept(memory: Memory) -> bool:
        return memory.user_id == user_id and (agent_id is None or memory.agent_id == agent_id)

    index = ctx.keys.memory_index(user_id, agent_id)
    return (yield from walk(index, offset, limit, lambda ids: docs.fetch(ctx, s, ids), accept))


def search_memories(
    ctx: Ctx, s: DocSpec[Memory], user_id: str, query: str, *, agent_id: str | None, limit: int
) -> Plan[list[ScoredMemory]]:
    keys = ctx.keys

    def accept(memory: Memory) -> bool:
        return memory.user_id == user_id and (agent_id is None or memory.agent_id == agent_id)

    hits = yield from docs.search(
        ctx,
        s,
        query,
        scope_index=keys.memory_index(user_id),
        token_key=lambda term: keys.memory_token(user_id, term),
        accept=accept,
        limit=limit,
    )
    return [ScoredMemory(memory=memory, score=score) for memory, score in hits]


def recall_memories(
    ctx: Ctx,
    s: DocSpec[Memory],
    user_id: str,
    query: str,
    *,
    agent_id: str | None,
    limit: int,
    recent: int,
) -> Plan[tuple[list[ScoredMemory], list[Memory]]]:
    """A turn's recall: the search and the newest memories, their steps pipelined together."""
    ranked, newest = yield from together(
        search_memories(ctx, s, user_id, query, agent_id=agent_id, limit=limit if query else 0),
        list_memories(ctx, s, user_id, agent_id=agent_id, limit=recent, offset=0),
    )
    return ranked, newest


def search_by_vector(
    ctx: Ctx,
    s: DocSpec[Memory],
    user_id: str,
    embedding: Embedding,
    *,
    agent_id: str | None,
    limit: int,
) -> Plan[list[ScoredMemory]]:
    """The user's memories (for one agent, if given) nearest to ``embedding``: exact, over
    the ids of ``m`` (or ``m:a:<agent>``), three round trips."""
    if limit <= 0:
        return []

    def accept(memory: Memory) -> bool:
        return memory.user_id == user_id and (agent_id is None or memory.agent_id == agent_id)

    (members,) = yield [Cmd("zrange", ctx.keys.memory_index(user_id, agent_id), 0, -1)]
    ids = [str(text(member)) for member in members]
    hits = yield from embeddings.nearest(ctx, s, ids, embedding, accept, limit)
    return [ScoredMemory(memory=memory, score=score) for memory, score in hits]


def without_embedding(
    ctx: Ctx, s: DocSpec[Memory], model: str, *, limit: int
) -> Plan[list[Memory]]:
    bases = [(ctx.keys.all_memories, _any)]
    return (yield from embeddings.without(ctx, s, bases, model, limit=limit))


def _any(memory: Memory) -> bool:
    return True
