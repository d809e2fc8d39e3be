"""Memories and learnings: one JSON string per record, indexed by sorted sets elsewhere.

Both are "documents": a record key of their own (``{m:<id>}``, ``{l:<id>}``), its vector
beside it (``<record key>:vec``, written by the same script), and entries in indexes and
search-token sets that a ``DocSpec`` derives from the record, plus the vector state sets its
vector's model puts it in (``kern.db.redis.keys.vector_state``). Writes follow the order of
``kern.db.redis.indexes`` (new entries, record, stale entries), reads check every record
found through an index against the filters before returning it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from kern.db.redis import codec
from kern.db.redis.codec import text
from kern.db.redis.indexes import Ctx, add_to, now_us, prune, register, remove_from
from kern.db.redis.keys import vector_models, vector_state
from kern.db.redis.plans import Cmd, Lua, Plan
from kern.db.redis.text import CANDIDATES_PER_TERM, bm25, idf, query_terms
from kern.records import Embedding, utcnow

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
    #: The key of the document's vector hash, by id (in the record's slot).
    vector_key: Callable[[str], str]
    #: The bases of the vector state sets the document is in (``{ma}:``; ``{la}:`` and its
    #: kind's ``{lk:<kind>}:``).
    state_bases: Callable[[D], list[str]]

    def states(self, doc: D, model: str | None) -> list[str]:
        """The vector state sets of ``doc`` with a vector by ``model`` (``None``: none)."""
        return [vector_state(base, model) for base in self.state_bases(doc)]

    def every_entry(self, doc: D, model: str | None) -> list[str]:
        return [*self.entries(doc), *self.states(doc, model)]

    def note_model(self, doc: D, model: str | None) -> list[Cmd]:
        """Record ``model`` among the models of ``doc``'s state bases (before its set gets
        an entry, so a reader listing the models finds every set)."""
        if model is None:
            return []
        return [Cmd("sadd", vector_models(base), model) for base in self.state_bases(doc)]


def maybe_text(value: Any) -> str | None:
    return None if value is None else str(text(value))


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


def parse_or_none(spec: DocSpec[D], raw: Any) -> D | None:
    """The document stored as ``raw``; None if there is none, or it is not a kern record."""
    if raw is None:
        return None
    try:
        return spec.parse(raw)
    except ValidationError:
        return None


def fetch(ctx: Ctx, spec: DocSpec[D], ids: list[str]) -> Plan[list[D | None]]:
    """The documents of ``ids`` (None where gone)."""
    found = yield from fetch_raw(ctx, spec, ids)
    return [None if pair is None else pair[0] for pair in found]


def get(ctx: Ctx, spec: DocSpec[D], doc_id: str) -> Plan[D | None]:
    (raw,) = yield [Cmd("get", spec.record_key(doc_id))]
    return None if raw is None else spec.parse(raw)


def upsert(ctx: Ctx, spec: DocSpec[D], record: D, embedding: Embedding | None = None) -> Plan[D]:
    now = utcnow()
    score = codec.micros(now)
    record = record.model_copy(update={"updated_at": now})
    doc_id = spec.id_of(record)
    model = None if embedding is None else embedding.model
    entries = spec.entries(record)
    own = [*entries, *spec.states(record, model)]
    yield [
        *spec.note_model(record, model),
        *add_to(own, doc_id, score),
        *register(ctx.keys, spec.owner(record), entries),
    ]
    created, rest = codec.doc_parts(record)
    keys = (spec.record_key(doc_id), spec.vector_key(doc_id))
    vector = () if embedding is None else (embedding.model, embedding.as_float32())
    (outcome,) = yield [Lua("put_doc", keys, (created, rest, *vector))]
    stored_created, old, old_model = text(outcome[0]), outcome[1], maybe_text(outcome[2])
    stale = set() if old is None else set(spec.every_entry(spec.parse(old), old_model)) - set(own)
    json = codec.doc_json(stored_created, rest)
    yield from settle(ctx, spec, [Written(doc_id, own, score, stale, json, model)])
    if stored_created != created:
        record = record.model_copy(update={"created_at": codec.parse_time(stored_created)})
    return record


@dataclass(frozen=True)
class Written:
    """A document as one writer left it: its entries (``own``, at ``score``), the entries of
    the version it replaced that are no longer its own (``stale``), and what it wrote (the
    record's JSON and its vector's model)."""

    doc_id: str
    own: list[str]
    score: int
    stale: set[str]
    json: str
    model: str | None


def settle(
    ctx: Ctx, spec: DocSpec[D], rows: list[Written], *, first: Sequence[Cmd] = ()
) -> Plan[None]:
    """Steps 3 and 4 of ``kern.db.redis.indexes`` after writing ``rows`` (each step for all
    of them, after the commands ``first``): leave the stale entries, enter their own again
    (a slower writer of the version before may just have removed entries they share), and
    where a newer version landed meanwhile, add its entries again."""
    yield [
        *first,
        *(
            cmd
            for row in rows
            for cmd in (
                *remove_from(sorted(row.stale), row.doc_id),
                *add_to(row.own, row.doc_id, row.score, gt=True),
            )
        ),
    ]
    moved = [row for row in rows if row.stale]
    if not moved:
        return
    replies = yield [
        cmd
        for row in moved
        for cmd in (Cmd("get", spec.record_key(row.doc_id)), hget_model(spec, row.doc_id))
    ]
    again: list[Cmd] = []
    for n, row in enumerate(moved):
        current, model = replies[2 * n], maybe_text(replies[2 * n + 1])
        if current is None or (text(current), model) == (row.json, row.model):
            continue
        newer = spec.parse(current)
        at = codec.micros(newer.updated_at)  # type: ignore[attr-defined]
        again += [
            *add_to(spec.entries(newer), row.doc_id, at),
            *add_to(spec.states(newer, model), row.doc_id, now_us()),
        ]
    if again:
        yield again


def hget_model(spec: DocSpec[D], doc_id: str) -> Cmd:
    """The model of the document's vector (None: no vector)."""
    return Cmd("hget", spec.vector_key(doc_id), "model")


def delete(ctx: Ctx, spec: DocSpec[D], doc_id: str) -> Plan[bool]:
    keys = (spec.record_key(doc_id), spec.vector_key(doc_id))
    (outcome,) = yield [Lua("delete_doc", keys, ())]
    if outcome[0] is None:
        return False
    entries = spec.every_entry(spec.parse(outcome[0]), maybe_text(outcome[1]))
    if entries:
        yield remove_from(entries, doc_id)
    return True


def delete_exact(
    ctx: Ctx, spec: DocSpec[D], found: list[tuple[D, Any]]
) -> Plan[list[tuple[D, str | None]]]:
    """Delete records (with their vectors) still holding the JSON they were read with;
    return those deleted, each with its vector's model."""
    if not found:
        return []
    results = yield [
        Lua("delete_doc_if_equal", (spec.record_key(i), spec.vector_key(i)), (raw,))
        for i, raw in ((spec.id_of(doc), raw) for doc, raw in found)
    ]
    return [
        (doc, maybe_text(done[1]))
        for (doc, _), done in zip(found, results, strict=True)
        if int(done[0])
    ]


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
