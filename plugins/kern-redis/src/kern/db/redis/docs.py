"""Memories and learnings: one JSON string per record, indexed by sorted sets elsewhere.

Both are "documents": a record key of their own (``{m:<id>}``, ``{l:<id>}``), and entries in
indexes and search-token sets that a ``DocSpec`` derives from the record. Writes follow the
order of ``kern.db.redis.indexes`` (new entries, record, stale entries), reads check every
record found through an index against the filters before returning it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from kern.db.redis import codec
from kern.db.redis.codec import text
from kern.db.redis.indexes import Ctx, add_to, prune, register, remove_from
from kern.db.redis.plans import Cmd, Lua, Plan
from kern.db.redis.text import CANDIDATES_PER_TERM, bm25, idf, query_terms
from kern.records import utcnow

D = TypeVar("D", bound=BaseModel)


@dataclass(frozen=True)
class DocSpec(Generic[D]):
    """How one kind of document is keyed, parsed and indexed."""

    record_key: Callable[[str], str]
    id_of: Callable[[D], str]
    parse: Callable[[Any], D]
    #: Every index and token set the document belongs to.
    entries: Callable[[D], list[str]]
    #: The user whose registry records the document's user-slot keys.
    owner: Callable[[D], str | None]
    #: The document's searchable words (terms, with repeats).
    terms: Callable[[D], list[str]]


def fetch_raw(ctx: Ctx, spec: DocSpec[D], ids: list[str]) -> Plan[list[tuple[D, Any] | None]]:
    """``(document, stored JSON)`` for each of ``ids`` (None where gone), in one multi-get."""
    if not ids:
        return []
    (raws,) = yield [ctx.mget([spec.record_key(i) for i in ids])]
    out: list[tuple[D, Any] | None] = []
    for raw in raws:
        try:
            out.append(None if raw is None else (spec.parse(raw), raw))
        except ValidationError:
            out.append(None)  # not a kern record: treated as gone
    return out


def fetch(ctx: Ctx, spec: DocSpec[D], ids: list[str]) -> Plan[list[D | None]]:
    """The documents of ``ids`` (None where gone)."""
    found = yield from fetch_raw(ctx, spec, ids)
    return [None if pair is None else pair[0] for pair in found]


def get(ctx: Ctx, spec: DocSpec[D], doc_id: str) -> Plan[D | None]:
    (raw,) = yield [Cmd("get", spec.record_key(doc_id))]
    return None if raw is None else spec.parse(raw)


def upsert(ctx: Ctx, spec: DocSpec[D], record: D) -> Plan[D]:
    now = utcnow()
    score = codec.micros(now)
    record = record.model_copy(update={"updated_at": now})
    doc_id = spec.id_of(record)
    entries = spec.entries(record)
    yield [*add_to(entries, doc_id, score), *register(ctx.keys, spec.owner(record), entries)]
    created, rest = codec.doc_parts(record)
    key = spec.record_key(doc_id)
    (outcome,) = yield [Lua("put_doc", (key,), (created, rest))]
    stored_created, old = text(outcome[0]), outcome[1] if len(outcome) > 1 else None
    stale = set() if old is None else set(spec.entries(spec.parse(old))) - set(entries)
    # 3. Leave the indexes of the replaced version; enter ours again, in case a slower
    # writer of the version before just removed entries we share with it.
    yield [*remove_from(sorted(stale), doc_id), *add_to(entries, doc_id, score, gt=True)]
    if stale:
        # 4. If a newer version landed meanwhile, our removals may have hit its entries.
        (current,) = yield [Cmd("get", key)]
        if current is not None and text(current) != codec.doc_json(stored_created, rest):
            newer = spec.parse(current)
            at = codec.micros(newer.updated_at)  # type: ignore[attr-defined]
            yield add_to(spec.entries(newer), doc_id, at)
    if stored_created != created:
        record = record.model_copy(update={"created_at": codec.parse_time(stored_created)})
    return record


def delete(ctx: Ctx, spec: DocSpec[D], doc_id: str) -> Plan[bool]:
    (old,) = yield [Cmd("getdel", spec.record_key(doc_id))]
    if old is None:
        return False
    entries = spec.entries(spec.parse(old))
    if entries:
        yield remove_from(entries, doc_id)
    return True


def delete_exact(ctx: Ctx, spec: DocSpec[D], found: list[tuple[D, Any]]) -> Plan[list[D]]:
    """Delete records still holding the JSON they were read with; return those deleted."""
    if not found:
        return []
    results = yield [
        Lua("delete_if_equal", (spec.record_key(spec.id_of(doc)),), (raw,)) for doc, raw in found
    ]
    return [doc for (doc, _), done in zip(found, results, strict=True) if int(done)]


def search(
    ctx: Ctx,
    spec: DocSpec[D],
    query: str,
    *,
    scope_index: str,
    token_key: Callable[[str], str],
    accept: Callable[[D], bool],
    limit: int,
) -> Plan[list[tuple[D, float]]]:
    """Documents of one scope ranked for ``query``; bounded work (see ``kern.db.redis.text``)."""
    terms = query_terms(query)
    if not terms or limit <= 0:
        return []
    step: list[Cmd] = [Cmd("zcard", scope_index)]
    for term in terms:
        key = token_key(term)
        newest = Cmd("zrevrange", key, 0, CANDIDATES_PER_TERM - 1, withscores=True)
        step += [Cmd("zcard", key), newest]
    results = yield step
    total = int(results[0])
    weights: dict[str, float] = {}
    matched: dict[str, float] = {}
    seen: dict[str, tuple[str, str, float]] = {}
    for i, term in enumerate(terms):
        frequency, members = int(results[1 + 2 * i]), results[2 + 2 * i]
        weights[term] = idf(total, frequency)
        for member, score in members:
            doc_id = text(member)
            matched[doc_id] = matched.get(doc_id, 0.0) + weights[term]
            seen.setdefault(doc_id, (token_key(term), doc_id, score))
    ranked = sorted(matched, key=lambda doc_id: -matched[doc_id])
    batch = max(4 * limit, 32)
    hits: list[tuple[D, list[str]]] = []
    for start in range(0, len(ranked), batch):
        ids = ranked[start : start + batch]
        docs = yield from fetch(ctx, spec, ids)
        dead = [seen[i] for i, doc in zip(ids, docs, strict=True) if doc is None]
        hits += [(doc, spec.terms(doc)) for doc in docs if doc is not None and accept(doc)]
        stale = prune(dead)
        if stale:
            yield stale
        if len(hits) >= limit:
            break
    if not hits:
        return []
    average = sum(len(words) for _, words in hits) / len(hits)
    scored = [(doc, bm25(terms, weights, words, average)) for doc, words in hits]
    scored = [(doc, score) for doc, score in scored if score > 0]
    scored.sort(key=lambda pair: -pair[1])
    return scored[:limit]
