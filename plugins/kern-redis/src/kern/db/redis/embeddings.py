"""Vectors of memories and learnings: exact search, setting vectors, and what is left to embed.

A row's vector is the hash ``<record key>:vec`` (``model``, ``vector``: float32 bytes) in the
record's own slot, written by the script that writes the record (``docs.upsert``).

Search is exact: a plain ``redis-server`` has no vector index (that is Redis Stack's
RediSearch). The candidates are the ids the index named by the filters holds (a user's
memories; for learnings, the smallest of the filters' indexes and the set of rows with this
model's vectors), their vectors are read in one pipelined step, ``kern.vectors.nearest``
ranks them, and the best rows are read and checked against the filters. The cost is that of
the candidates' vectors: bounded by the filter, never by the size of the table.

What is left to embed is read from the vector state sets (``kern.db.redis.keys``): rows
without a vector, then the rows of each other model. Every entry is checked against the
row's own vector before it counts, and stale entries are dropped as
``kern.db.redis.indexes`` drops them (old enough, score unchanged).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from kern import vectors
from kern.db.redis.codec import text
from kern.db.redis.docs import (
    D,
    DocSpec,
    Written,
    fetch,
    hget_model,
    maybe_text,
    parse_or_none,
    settle,
)
from kern.db.redis.indexes import Ctx, add_to, now_us, prune
from kern.db.redis.keys import vector_models, vector_state
from kern.db.redis.plans import Cmd, Lua, Plan
from kern.records import Embedding
from redis.client import NEVER_DECODE

#: Entries of a vector state set read per step at first (the window doubles up to the cap).
FIRST_WINDOW = 16
MAX_WINDOW = 1024


def read_vector(spec: DocSpec[D], doc_id: str) -> Cmd:
    """``[model, float32 bytes]`` of a row's vector, undecoded: a client made with
    ``decode_responses=True`` would otherwise read the vector's bytes as UTF-8."""
    key = spec.vector_key(doc_id)
    return Cmd("execute_command", "HMGET", key, "model", "vector", **{NEVER_DECODE: True})


def nearest(
    ctx: Ctx,
    spec: DocSpec[D],
    ids: list[str],
    embedding: Embedding,
    accept: Callable[[D], bool],
    limit: int,
) -> Plan[list[tuple[D, float]]]:
    """The rows among ``ids`` nearest to ``embedding`` (cosine) that pass ``accept``, best
    first: one step for the vectors, then the best rows (more only if some fail)."""
    if limit <= 0 or not ids:
        return []
    replies = yield [read_vector(spec, doc_id) for doc_id in ids]
    candidates = [
        (doc_id, vector)
        for doc_id, (model, vector) in zip(ids, replies, strict=True)
        if model is not None and vector and text(model) == embedding.model
    ]
    ranked = vectors.nearest(embedding.vector, candidates, len(candidates))
    found: list[tuple[D, float]] = []
    start, batch = 0, limit
    while start < len(ranked) and len(found) < limit:
        chunk = ranked[start : start + batch]
        docs = yield from fetch(ctx, spec, [doc_id for doc_id, _ in chunk])
        for (_, score), doc in zip(chunk, docs, strict=True):
            if doc is not None and accept(doc):
                found.append((doc, score))
        start, batch = start + batch, batch * 2
    return found[:limit]


def set_vectors(ctx: Ctx, spec: DocSpec[D], embeddings: Mapping[str, Embedding]) -> Plan[int]:
    """Set the vectors of the stored rows among ``embeddings``' ids; the records are left as
    they are. Each step pipelines every row: read the records (their state sets), enter the
    new state sets, set the vectors (a script per row: only if the record is still there),
    then leave the old state sets (``docs.settle``). Returns how many rows were set."""
    ids = list(embeddings)
    if not ids:
        return 0
    docs = yield from fetch(ctx, spec, ids)
    present = [(doc_id, doc) for doc_id, doc in zip(ids, docs, strict=True) if doc is not None]
    if not present:
        return 0
    score = now_us()
    first: list[Cmd] = []
    for doc_id, doc in present:
        model = embeddings[doc_id].model
        first += [*spec.note_model(doc, model), *add_to(spec.states(doc, model), doc_id, score)]
    yield first
    outcomes = yield [
        Lua(
            "set_vector",
            (spec.record_key(doc_id), spec.vector_key(doc_id)),
            (embeddings[doc_id].model, embeddings[doc_id].as_float32()),
        )
        for doc_id, _ in present
    ]
    written: list[Written] = []
    notes: list[Cmd] = []
    for (doc_id, _), outcome in zip(present, outcomes, strict=True):
        if not int(outcome[0]):
            continue  # deleted meanwhile: its new entries are stale, readers drop them
        model = embeddings[doc_id].model
        current = spec.parse(outcome[2])  # the record the vector was set on
        own = spec.states(current, model)
        stale = set(spec.states(current, maybe_text(outcome[1]))) - set(own)
        notes += spec.note_model(current, model)  # its kind may have changed meanwhile
        written.append(Written(doc_id, own, score, stale, str(text(outcome[2])), model))
    if written:
        yield from settle(ctx, spec, written, first=notes)
    return len(written)


def without(
    ctx: Ctx,
    spec: DocSpec[D],
    bases: Sequence[tuple[str, Callable[[D], bool]]],
    model: str,
    *,
    limit: int,
) -> Plan[list[D]]:
    """Up to ``limit`` rows with no vector by ``model`` from the state sets under ``bases``
    (each with the test a row listed there passes): the rows without a vector, then those of
    each other model (sorted), each set oldest entry first."""
    if limit <= 0 or not bases:
        return []
    replies = yield [Cmd("smembers", vector_models(base)) for base, _ in bases]
    sets: list[tuple[str, str | None, Callable[[D], bool]]] = []
    for (base, accept), models in zip(bases, replies, strict=True):
        others = sorted({str(text(name)) for name in models} - {model})
        for label in (None, *others):
            sets.append((vector_state(base, label), label, accept))
    found: dict[str, D] = {}
    for index, label, accept in sets:
        if len(found) >= limit:
            break
        yield from _walk_state(ctx, spec, index, label, model, accept, limit, found)
    return list(found.values())


def _walk_state(
    ctx: Ctx,
    spec: DocSpec[D],
    index: str,
    label: str | None,
    model: str,
    accept: Callable[[D], bool],
    limit: int,
    found: dict[str, D],
) -> Plan[None]:
    """Add to ``found`` the rows of one state set lacking ``model``'s vector, oldest first;
    entries whose row is gone or no longer in this state are skipped (and dropped)."""
    position, window = 0, max(FIRST_WINDOW, limit)
    while len(found) < limit:
        last = position + window - 1
        (entries,) = yield [Cmd("zrange", index, position, last, withscores=True)]
        if not entries:
            return
        ids = [str(text(member)) for member, _ in entries]
        replies = yield [
            *(hget_model(spec, doc_id) for doc_id in ids),
            *(Cmd("get", spec.record_key(doc_id)) for doc_id in ids),
        ]
        dead: list[tuple[str, str, float]] = []
        for n, (doc_id, (_, score)) in enumerate(zip(ids, entries, strict=True)):
            actual = maybe_text(replies[n])
            doc = parse_or_none(spec, replies[len(ids) + n])
            if doc is None or not accept(doc) or actual != label:
                dead.append((index, doc_id, score))  # gone, moved or in another state now
            if doc is not None and accept(doc) and actual != model and len(found) < limit:
                found.setdefault(doc_id, doc)
        removed = 0
        stale = prune(dead)
        if stale:
            results = yield stale
            removed = sum(int(done) for done in results)
        if len(entries) < window:
            return
        position += window - removed
        window = min(window * 2, MAX_WINDOW)
