"""Learnings: record ``{l:<id>}``, indexed by each field ``query_learnings`` filters on.

For each of kind, namespace, user_id, session_id and entity_id that a learning has, and for
"all learnings", two sorted sets (member learning_id, score updated_at µs): ``ix`` and
``ix:<status>``. A query reads the smallest of the indexes its filters name (status folded
in: ``ix:<status>`` when a status is given; sizes by ``ZCARD``) and checks the other filters
on the records it finds. Search terms of the JSON content are indexed per scope (the user,
the namespace, the kind, and all learnings); a search reads the smallest scope it is given.

A learning's vector is ``{l:<id>}:vec``; the vector state sets of all learnings are in
``{la}``, and of each kind in ``{lk:<kind>}`` (``kern.db.redis.embeddings``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kern.db.redis import codec, docs, embeddings
from kern.db.redis.codec import text
from kern.db.redis.docs import DocSpec
from kern.db.redis.indexes import Ctx, walk
from kern.db.redis.keys import vector_state
from kern.db.redis.plans import Cmd, Plan
from kern.db.redis.text import document_terms, json_strings
from kern.records import Embedding, Learning, LearningStatus, ScoredLearning

FIELDS = ("kind", "namespace", "user_id", "session_id", "entity_id")
#: Fields whose values scope the search-term sets (besides "all").
SEARCH_SCOPES = ("user_id", "namespace", "kind")


def _terms(learning: Learning) -> list[str]:
    return document_terms(json_strings(learning.content))


def spec(ctx: Ctx) -> DocSpec[Learning]:
    keys = ctx.keys

    def entries(learning: Learning) -> list[str]:
        status = LearningStatus(learning.status).value
        names: list[str] = []
        fields: list[tuple[str, str | None]] = [
            (field, getattr(learning, field))
            for field in FIELDS
            if getattr(learning, field) is not None
        ]
        for field, value in [*fields, ("all", None)]:
            names += [
                keys.learning_index(field, value, None),
                keys.learning_index(field, value, status),
            ]
        terms = sorted(set(_terms(learning)))
        for field in (*SEARCH_SCOPES, "all"):
            value = None if field == "all" else getattr(learning, field)
            if field == "all" or value is not None:
                names += [keys.learning_token(field, value, term) for term in terms]
        return names

    return DocSpec(
        record_key=keys.learning,
        id_of=lambda learning: learning.learning_id,
        parse=codec.learning_from,
        entries=entries,
        owner=lambda learning: learning.user_id,
        terms=_terms,
        vector_key=keys.learning_vector,
        state_bases=lambda learning: [
            keys.all_learnings,
            keys.learning_base("kind", learning.kind),
        ],
    )


def _matcher(filters: dict[str, object]) -> Callable[[Learning], bool]:
    given = {k: getattr(v, "value", v) for k, v in filters.items() if v is not None}

    def accept(learning: Learning) -> bool:
        for field, wanted in given.items():
            value = getattr(learning, field)
            if getattr(value, "value", value) != wanted:
                return False
        return True

    return accept


def _smallest(candidates: list[str]) -> Plan[str]:
    if len(candidates) == 1:
        return candidates[0]
    sizes = yield [Cmd("zcard", key) for key in candidates]
    return min(zip(sizes, candidates, strict=True))[1]


def query_learnings(
    ctx: Ctx,
    s: DocSpec[Learning],
    *,
    filters: dict[str, object],
    status: LearningStatus | str | None,
    limit: int,
    offset: int,
) -> Plan[list[Learning]]:
    if limit <= 0:
        return []
    st = None if status is None else LearningStatus(status).value
    given = [(f, v) for f, v in filters.items() if v is not None]
    candidates = [ctx.keys.learning_index(f, str(v), st) for f, v in given] or [
        ctx.keys.learning_index("all", None, st)
    ]
    index = yield from _smallest(candidates)
    accept = _matcher({**filters, "status": st})
    return (yield from walk(index, offset, limit, lambda ids: docs.fetch(ctx, s, ids), accept))


def search_learnings(
    ctx: Ctx,
    s: DocSpec[Learning],
    query: str,
    *,
    kind: str | None,
    namespace: str | None,
    user_id: str | None,
    status: LearningStatus | str | None,
    limit: int,
) -> Plan[list[ScoredLearning]]:
    keys = ctx.keys
    scopes = {"user_id": user_id, "namespace": namespace, "kind": kind}
    scoped: list[tuple[str, str | None]] = [(f, v) for f, v in scopes.items() if v is not None]
    given = scoped or [("all", None)]
    by_index = {keys.learning_index(f, v, None): (f, v) for f, v in given}
    index = yield from _smallest(list(by_index))
    field, value = by_index[index]
    st = None if status is None else LearningStatus(status).value
    hits = yield from docs.search(
        ctx,
        s,
        query,
        scope_index=index,
        token_key=lambda term: keys.learning_token(field, value, term),
        accept=_matcher({**scopes, "status": st}),
        limit=limit,
    )
    return [ScoredLearning(learning=learning, score=score) for learning, score in hits]


def search_by_vector(
    ctx: Ctx,
    s: DocSpec[Learning],
    embedding: Embedding,
    *,
    kind: str | None,
    namespace: str | None,
    user_id: str | None,
    status: LearningStatus | str | None,
    limit: int,
) -> Plan[list[ScoredLearning]]:
    """Learnings passing the filters nearest to ``embedding``: exact, over the ids of the
    smallest of the filters' indexes (status folded in) and the set of rows with vectors by
    ``embedding.model`` (of the kind, if given); four round trips."""
    if limit <= 0:
        return []
    keys = ctx.keys
    st = None if status is None else LearningStatus(status).value
    filters = {"kind": kind, "namespace": namespace, "user_id": user_id}
    given = [(f, v) for f, v in filters.items() if v is not None]
    candidates = [keys.learning_index(f, v, st) for f, v in given] or [
        keys.learning_index("all", None, st)
    ]
    base = keys.all_learnings if kind is None else keys.learning_base("kind", kind)
    candidates.append(vector_state(base, embedding.model))
    index = yield from _smallest(candidates)
    (members,) = yield [Cmd("zrange", index, 0, -1)]
    ids = [str(text(member)) for member in members]
    accept = _matcher({**filters, "status": st})
    hits = yield from embeddings.nearest(ctx, s, ids, embedding, accept, limit)
    return [ScoredLearning(learning=learning, score=score) for learning, score in hits]


def without_embedding(
    ctx: Ctx, s: DocSpec[Learning], model: str, *, kinds: Sequence[str] | None, limit: int
) -> Plan[list[Learning]]:
    """Learnings (of ``kinds``, if given) with no vector by ``model``: from the vector state
    sets of each kind, in the order given, or of all learnings."""
    bases: list[tuple[str, Callable[[Learning], bool]]]
    if kinds is None:
        bases = [(ctx.keys.all_learnings, _any)]
    else:
        bases = [(ctx.keys.learning_base("kind", k), _of_kind(k)) for k in dict.fromkeys(kinds)]
    return (yield from embeddings.without(ctx, s, bases, model, limit=limit))


def _any(learning: Learning) -> bool:
    return True


def _of_kind(kind: str) -> Callable[[Learning], bool]:
    return lambda learning: learning.kind == kind
