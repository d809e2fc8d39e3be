"""Vectors: recall by meaning (``upsert_*(embedding=...)``, ``search_*_by_vector``,
``set_embeddings``, ``*_without_embedding``).

Why hand-made vectors: each scenario builds small 8-dimension vectors whose cosine with the
query is known (``_vec(0.8, 0.6)`` is 0.8 from the first axis), or seeded random ones that
the scenario ranks itself by brute force. So the expected order and scores are exact,
whatever a backend searches with: an exact scan or a vector index.

The scenarios also hold in a database shared by every test: each uses a fresh embedder
``model``, so no other scenario's vector is ever compared with its own, and the backfill
loops (``_backfill``) give other scenarios' rows a vector of that fresh model only.
"""

from __future__ import annotations

import functools
import math
import random
import struct
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from kern.db.base import VectorTable
from kern.errors import InvalidIdError, InvalidTextError
from kern.records import Embedding, Learning, LearningStatus, Memory, Session
from kern.testing.capabilities import requires
from kern.testing.conformance.base import ScenarioBase, Store
from kern.testing.conformance.common import _tick, _uid
from kern.testing.conformance.recipes import Recipe
from kern.testing.isolation import _holding, _raw_scan, _refusal_problem, _shown

__all__ = ["VectorScenarios"]

#: The dimension of every vector here.
DIM = 8
#: How close a returned score must be to the exact cosine (vectors may be kept as float32).
TOLERANCE = 1e-5
#: The vector ``_backfill`` gives rows of other scenarios (of a shared database).
FILLER = [1.0] * DIM

#: ``(row id, score)`` of a search, best first.
Hits = list[tuple[str, float]]


def _vec(*head: float) -> list[float]:
    """An 8-dimension vector starting with ``head``, zeros after it."""
    return [*head, *[0.0] * (DIM - len(head))]


def _axis(i: int) -> list[float]:
    """The unit vector of axis ``i``."""
    vector = _vec()
    vector[i] = 1.0
    return vector


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _emb(model: str, vector: Sequence[float]) -> Embedding:
    return Embedding(model=model, vector=list(vector))


async def _memory_hits(store: Store, user_id: str, embedding: Embedding, **kw: Any) -> Hits:
    found = await store.search_memories_by_vector(user_id, embedding, **kw)
    assert all(isinstance(hit.score, float) for hit in found), found
    return [(hit.memory.memory_id, hit.score) for hit in found]


async def _learning_hits(store: Store, embedding: Embedding, **kw: Any) -> Hits:
    found = await store.search_learnings_by_vector(embedding, **kw)
    assert all(isinstance(hit.score, float) for hit in found), found
    return [(hit.learning.learning_id, hit.score) for hit in found]


def _assert_hits(found: Hits, expected: Hits, where: str = "") -> None:
    """``found`` is ``expected``: the same rows in the same order, scores to ``TOLERANCE``."""
    assert [row for row, _ in found] == [row for row, _ in expected], (where, found, expected)
    for (row, score), (_, want) in zip(found, expected, strict=True):
        assert abs(score - want) <= TOLERANCE, f"{where}: {row} scored {score}, not {want}"


def _assert_like_brute_force(
    found: Hits,
    candidates: Mapping[str, Sequence[float]],
    query: Sequence[float],
    limit: int,
    where: str,
) -> None:
    """``found`` is the top ``limit`` of ``candidates`` by exact cosine with ``query``: each
    rank's score is the brute-force one, and each row's score is its own cosine (rows whose
    scores tie within ``TOLERANCE`` may come in either order)."""
    ranking = sorted((_cosine(query, vector) for vector in candidates.values()), reverse=True)
    expected = ranking[:limit]
    assert len(found) == len(expected), f"{where}: {len(found)} hits, not {len(expected)}"
    assert len({row for row, _ in found}) == len(found), f"{where}: a row twice in {found}"
    for rank, ((row, score), want) in enumerate(zip(found, expected, strict=True)):
        assert row in candidates, f"{where}: {row} is not among the rows searched"
        own = _cosine(query, candidates[row])
        assert abs(score - own) <= TOLERANCE, f"{where}: {row} scored {score}, its cosine {own}"
        assert abs(score - want) <= TOLERANCE, (
            f"{where}: rank {rank} scored {score}; brute force ranks a row of {want} there"
        )


async def _backfill(
    store: Store,
    table: VectorTable,
    model: str,
    vectors: Mapping[str, Sequence[float]],
    *,
    limit: int,
    kinds: Sequence[str] | None = None,
) -> dict[str, Memory | Learning]:
    """What ``LearningMachine.reembed`` does: list the rows with no vector by ``model``, set
    one on each, and again, until nothing is listed. Returns the rows listed, in order.

    Rows not in ``vectors`` (other scenarios', in a shared database) get ``FILLER``. Fails
    as soon as a page is longer than ``limit`` (a batch bigger than the embedder was promised)
    or lists a row already set (the user's backfill would never end).
    """
    listed: dict[str, Memory | Learning] = {}
    while True:
        page: dict[str, Memory | Learning]
        if table == "memories":
            memories = await store.memories_without_embedding(model, limit=limit)
            page = {memory.memory_id: memory for memory in memories}
            count = len(memories)
        else:
            learnings = await store.learnings_without_embedding(model, kinds=kinds, limit=limit)
            page = {learning.learning_id: learning for learning in learnings}
            count = len(learnings)
        if not page:
            return listed
        assert count <= limit, f"{table}_without_embedding(limit={limit}) gave {count} rows"
        assert len(page) == count, f"{table}_without_embedding listed a row twice"
        again = sorted(set(page) & set(listed))
        assert not again, f"listed again after set_embeddings gave them a vector: {again}"
        embeddings = {row: _emb(model, vectors.get(row, FILLER)) for row in page}
        assert await store.set_embeddings(table, embeddings) == count
        listed.update(page)


class VectorScenarios(ScenarioBase):
    """Vectors stored with memories and learnings, searched by cosine, backfilled, forgotten."""

    # -- memories ------------------------------------------------------------------------
    async def test_vector_nearest_memory_first(self, store: Store) -> None:
        """A memory's vector is stored with it, and search ranks by cosine similarity (not
        by dot product: the vectors' lengths do not matter); memories without a vector are
        not candidates, and the records come back as stored."""
        user, model = _uid("u"), _uid("embedder")
        vectors = {  # cosine with the first axis
            "orthogonal": _vec(0.0, 0.5),  # 0.0
            "close": _vec(2.4, 1.8),  # 0.8, three times as long
            "opposed": _vec(-0.6, 0.0, 0.0, 0.8),  # -0.6
            "same": _axis(0),  # 1.0
            "further": _vec(0.6, 0.0, 0.8),  # 0.6
        }
        stored: dict[str, Memory] = {}
        for name, vector in vectors.items():
            memory = Memory(user_id=user, content=f"the {name} fact")
            stored[name] = await store.upsert_memory(memory, embedding=_emb(model, vector))
            assert await store.get_memory(memory.memory_id) == stored[name]
        await store.upsert_memory(Memory(user_id=user, content="a fact without a vector"))

        found = await store.search_memories_by_vector(user, _emb(model, _vec(2.0)), limit=10)
        order = ["same", "close", "further", "orthogonal", "opposed"]
        _assert_hits(
            [(hit.memory.memory_id, hit.score) for hit in found],
            [(stored[name].memory_id, _cosine(_axis(0), vectors[name])) for name in order],
        )
        assert [hit.memory for hit in found] == [stored[name] for name in order]

    async def test_vector_search_bounded_by_limit_best_first(self, store: Store) -> None:
        """At most ``limit`` memories, 5 by default, best first with descending scores."""
        user, model = _uid("u"), _uid("embedder")
        angles = [0.2 * i for i in range(7)]  # cosines with the first axis: descending
        expected: Hits = []
        for angle in reversed(angles):  # stored worst first
            memory = Memory(user_id=user, content=f"angle {angle:.1f}")
            vector = _vec(math.cos(angle), math.sin(angle))
            await store.upsert_memory(memory, embedding=_emb(model, vector))
            expected.insert(0, (memory.memory_id, math.cos(angle)))
        query = _emb(model, _axis(0))

        _assert_hits(await _memory_hits(store, user, query), expected[:5], "default limit")
        for limit in (1, 3, 7, 50):
            found = await _memory_hits(store, user, query, limit=limit)
            _assert_hits(found, expected[:limit], f"limit={limit}")
            scores = [score for _, score in found]
            assert scores == sorted(scores, reverse=True), scores

    async def test_vector_search_compares_only_the_same_model(self, store: Store) -> None:
        """Two embedders' vectors live in different spaces: a search with model A never
        returns a memory embedded by model B (nor by a model whose name merely starts like
        A's), and a backfill by A lists those memories, replacing their vectors."""
        user, model, other = _uid("u"), _uid("embedder"), _uid("other-embedder")
        near_miss = model + "-v2"
        by_other = await store.upsert_memory(
            Memory(user_id=user, content="embedded by another model"),
            embedding=_emb(other, _axis(0)),
        )
        by_near_miss = await store.upsert_memory(
            Memory(user_id=user, content="embedded by a model of a similar name"),
            embedding=_emb(near_miss, _axis(0)),
        )
        by_model = await store.upsert_memory(
            Memory(user_id=user, content="embedded by this model"),
            embedding=_emb(model, _vec(0.6, 0.8)),
        )

        def hits_of(model_id: str) -> Awaitable[Hits]:
            return _memory_hits(store, user, _emb(model_id, _axis(0)))

        _assert_hits(await hits_of(model), [(by_model.memory_id, 0.6)], "this model")
        _assert_hits(await hits_of(other), [(by_other.memory_id, 1.0)], "the other model")
        _assert_hits(await hits_of(near_miss), [(by_near_miss.memory_id, 1.0)], "near miss")
        assert await hits_of(_uid("unused-embedder")) == []

        backfill = {by_other.memory_id: _vec(0.8, 0.6), by_near_miss.memory_id: _vec(0.0, 1.0)}
        listed = await _backfill(store, "memories", model, backfill, limit=50)
        mine = {by_other.memory_id, by_near_miss.memory_id, by_model.memory_id}
        assert mine & set(listed) == set(backfill), "backfill listed the wrong memories"
        _assert_hits(
            await hits_of(model),
            [(by_other.memory_id, 0.8), (by_model.memory_id, 0.6), (by_near_miss.memory_id, 0.0)],
            "after the backfill",
        )
        # set_embeddings replaced the other models' vectors: a row has one vector
        assert await hits_of(other) == []
        assert await hits_of(near_miss) == []

    async def test_vector_search_never_returns_another_users(self, store: Store) -> None:
        """Another user's nearer memory is never returned, also through ``agent_id``; nor
        are a user's memories of another agent when one is given."""
        alice, bob, model = _uid("alice"), _uid("bob"), _uid("embedder")
        mine = await store.upsert_memory(
            Memory(user_id=alice, agent_id="one", content="likes tea"),
            embedding=_emb(model, _vec(0.6, 0.8)),
        )
        other_agent = await store.upsert_memory(
            Memory(user_id=alice, agent_id="two", content="likes green tea"),
            embedding=_emb(model, _vec(0.8, 0.6)),
        )
        for agent in ("one", "two", None):
            await store.upsert_memory(  # bob's are the nearest of all
                Memory(user_id=bob, agent_id=agent, content="likes tea"),
                embedding=_emb(model, _axis(0)),
            )
        query = _emb(model, _axis(0))

        _assert_hits(
            await _memory_hits(store, alice, query, limit=10),
            [(other_agent.memory_id, 0.8), (mine.memory_id, 0.6)],
        )
        _assert_hits(
            await _memory_hits(store, alice, query, agent_id="one"), [(mine.memory_id, 0.6)]
        )
        assert await _memory_hits(store, alice, query, agent_id="three") == []
        for stranger in (_uid("nobody"), alice.upper(), alice[:-1], alice + " "):
            assert await _memory_hits(store, stranger, query, limit=50) == [], stranger
        for hit in await store.search_memories_by_vector(bob, query, limit=50):
            assert hit.memory.user_id == bob

    async def test_vector_cleared_or_replaced_by_upsert(self, store: Store) -> None:
        """An upsert stores the new vector in place of the old one; an upsert without one
        clears it (it described the old content): the memory is no longer found by vector
        and is listed as lacking one. A vector of another model replaces it too."""
        user, model, other = _uid("u"), _uid("embedder"), _uid("other-embedder")
        memory = await store.upsert_memory(
            Memory(user_id=user, content="lives in Berlin"), embedding=_emb(model, _axis(0))
        )
        query = _emb(model, _axis(0))
        _assert_hits(await _memory_hits(store, user, query), [(memory.memory_id, 1.0)])

        moved = await store.upsert_memory(
            memory.model_copy(update={"content": "lives in Munich"}),
            embedding=_emb(model, _vec(0.6, 0.8)),
        )
        found = await _memory_hits(store, user, query)
        _assert_hits(found, [(memory.memory_id, 0.6)], "replaced, not added")

        cleared = await store.upsert_memory(moved.model_copy(update={"content": "moved away"}))
        assert await _memory_hits(store, user, query) == []
        assert await store.get_memory(memory.memory_id) == cleared
        listed = await _backfill(store, "memories", model, {memory.memory_id: _axis(1)}, limit=50)
        assert listed.get(memory.memory_id) == cleared, "the memory is not listed as unembedded"
        found = await _memory_hits(store, user, query)
        _assert_hits(found, [(memory.memory_id, 0.0)], "backfilled")

        await store.upsert_memory(cleared, embedding=_emb(other, _axis(0)))
        assert await _memory_hits(store, user, query) == []
        _assert_hits(
            await _memory_hits(store, user, _emb(other, _axis(0))), [(memory.memory_id, 1.0)]
        )

    async def test_vector_set_embeddings_changes_only_the_vector(self, store: Store) -> None:
        """``set_embeddings`` (how a backfill stores vectors) changes neither the content nor
        ``updated_at`` (list order stays), replaces a row's vector, skips ids not stored in
        that table and returns how many rows it set."""
        user, kind, model = _uid("u"), _uid("kind"), _uid("embedder")
        older = await store.upsert_memory(Memory(user_id=user, content="older fact"))
        _tick()
        newer = await store.upsert_memory(Memory(user_id=user, content="newer fact"))
        learning = await store.upsert_learning(Learning(kind=kind, content={"fact": "x"}))
        _tick()
        query = _emb(model, _axis(0))

        set_one = {older.memory_id: _emb(model, _axis(0)), _uid("missing"): query}
        assert await store.set_embeddings("memories", set_one) == 1
        assert await store.get_memory(older.memory_id) == older
        assert await store.list_memories(user) == [newer, older]
        _assert_hits(await _memory_hits(store, user, query), [(older.memory_id, 1.0)])

        both = {older.memory_id: _emb(model, _vec(0.6, 0.8)), newer.memory_id: query}
        assert await store.set_embeddings("memories", both) == 2
        _assert_hits(
            await _memory_hits(store, user, query),
            [(newer.memory_id, 1.0), (older.memory_id, 0.6)],
            "replaced",
        )
        assert await store.list_memories(user) == [newer, older]
        assert await store.set_embeddings("memories", {}) == 0

        # a learning's id is no memory's, a memory's no learning's
        assert await store.set_embeddings("memories", {learning.learning_id: query}) == 0
        assert await _learning_hits(store, query, kind=kind) == []
        wrong_table = {learning.learning_id: query, older.memory_id: _emb(model, _axis(1))}
        assert await store.set_embeddings("learnings", wrong_table) == 1
        assert await store.get_learning(learning.learning_id) == learning
        assert await store.query_learnings(kind=kind) == [learning]
        _assert_hits(await _learning_hits(store, query, kind=kind), [(learning.learning_id, 1.0)])
        _assert_hits(
            await _memory_hits(store, user, query),
            [(newer.memory_id, 1.0), (older.memory_id, 0.6)],
            "after set_embeddings of learnings",
        )

    async def test_vector_backfill_of_memories_pages_and_ends(self, store: Store) -> None:
        """``memories_without_embedding`` lists, ``limit`` at a time and in a stable order,
        the memories with no vector by a model (none, or another model's), as stored; a
        backfill that embeds each page ends, having listed each of them once."""
        user, model, other = _uid("u"), _uid("embedder"), _uid("other-embedder")
        plain = [
            await store.upsert_memory(Memory(user_id=user, content=f"plain fact {i}"))
            for i in range(3)
        ]
        by_other = await store.upsert_memory(
            Memory(user_id=user, content="another model's fact"), embedding=_emb(other, _axis(0))
        )
        by_model = await store.upsert_memory(
            Memory(user_id=user, content="this model's fact"), embedding=_emb(model, _axis(0))
        )

        first = await store.memories_without_embedding(model, limit=2)
        assert await store.memories_without_embedding(model, limit=2) == first, "order unstable"
        longer = await store.memories_without_embedding(model, limit=4)
        assert len(first) == 2 and len(longer) == 4, (first, longer)
        assert longer[:2] == first, "limit=2 is not the start of limit=4: the order is unstable"

        lacking = [*plain, by_other]
        vectors = {m.memory_id: _vec(1.0, 0.1 * (i + 1)) for i, m in enumerate(lacking)}
        listed = await _backfill(store, "memories", model, vectors, limit=2)
        mine = {m.memory_id for m in [*lacking, by_model]}
        assert mine & set(listed) == set(vectors), "the backfill listed the wrong memories"
        for memory in lacking:
            assert listed[memory.memory_id] == memory, "listed not as stored"
        assert await store.memories_without_embedding(model, limit=2) == []

        expected = [(by_model.memory_id, 1.0)] + [
            (m.memory_id, _cosine(_axis(0), vectors[m.memory_id])) for m in lacking
        ]
        found = await _memory_hits(store, user, _emb(model, _axis(0)), limit=10)
        _assert_hits(found, expected, "after the backfill")

    # -- learnings -----------------------------------------------------------------------
    async def test_vector_search_learnings_by_every_filter(self, store: Store) -> None:
        """kind, namespace, user_id and status (active by default) scope a learning search
        by vector as they scope ``search_learnings``; another model's vectors, learnings
        without one, and a vector cleared by an upsert are never returned."""
        k1, k2, ns, model = _uid("k1"), _uid("k2"), _uid("ns"), _uid("embedder")
        alice, bob, other = _uid("alice"), _uid("bob"), _uid("other-embedder")
        proposed = LearningStatus.PROPOSED
        specs: dict[str, tuple[dict[str, Any], list[float] | None]] = {
            "alice": ({"kind": k1, "namespace": "user", "user_id": alice}, _axis(0)),
            "bob": ({"kind": k1, "namespace": "user", "user_id": bob}, _vec(0.96, 0.28)),
            "shared": ({"kind": k1, "namespace": ns}, _vec(0.8, 0.6)),
            "proposed": (
                {"kind": k1, "namespace": "user", "user_id": alice, "status": proposed},
                _vec(0.6, 0.8),
            ),
            "k2": ({"kind": k2, "namespace": "user", "user_id": alice}, _vec(0.28, 0.96)),
            "unembedded": ({"kind": k1, "namespace": "user", "user_id": alice}, None),
        }
        stored: dict[str, Learning] = {}
        for name, (fields, vector) in specs.items():
            learning = Learning(content={"fact": name}, **fields)
            embedding = None if vector is None else _emb(model, vector)
            stored[name] = await store.upsert_learning(learning, embedding=embedding)
            assert await store.get_learning(learning.learning_id) == stored[name]
        other_model = await store.upsert_learning(
            Learning(kind=k1, namespace="user", user_id=alice, content={"fact": "other"}),
            embedding=_emb(other, _axis(0)),
        )
        query = _emb(model, _axis(0))
        score = {name: _cosine(_axis(0), v) for name, (_, v) in specs.items() if v is not None}

        async def check(expected: list[str], **filters: Any) -> None:
            found = await store.search_learnings_by_vector(query, **filters)
            _assert_hits(
                [(hit.learning.learning_id, hit.score) for hit in found],
                [(stored[name].learning_id, score[name]) for name in expected],
                f"filters {filters}",
            )
            assert [hit.learning for hit in found] == [stored[name] for name in expected]

        await check(["alice", "bob", "shared"], kind=k1)
        await check(["alice", "bob"], kind=k1, limit=2)
        await check(["alice"], kind=k1, user_id=alice)
        await check(["alice", "k2"], user_id=alice)
        await check(["shared"], kind=k1, namespace=ns)
        await check(["shared"], namespace=ns)
        await check(["alice", "bob"], kind=k1, namespace="user")
        await check(["k2"], kind=k2)
        await check(["proposed"], kind=k1, user_id=alice, status=LearningStatus.PROPOSED)
        await check(["alice", "proposed"], kind=k1, user_id=alice, status=None)
        await check([], kind=k1, status=LearningStatus.REJECTED)
        await check([], kind=k1, user_id=_uid("nobody"))
        await check([], kind=_uid("empty"))
        by_other = await _learning_hits(store, _emb(other, _axis(0)), kind=k1)
        _assert_hits(by_other, [(other_model.learning_id, 1.0)], "the other model")

        # an upsert replaces the vector, or clears it when it comes without one
        stored["bob"] = await store.upsert_learning(
            stored["bob"], embedding=_emb(model, _vec(0.28, 0.96))
        )
        score["bob"] = 0.28
        stored["alice"] = await store.upsert_learning(
            stored["alice"].model_copy(update={"content": {"fact": "changed"}})
        )
        await check(["shared", "bob"], kind=k1)
        listed = await _backfill(store, "learnings", model, {}, limit=50, kinds=[k1])
        assert set(listed) == {
            stored["alice"].learning_id,
            stored["unembedded"].learning_id,
            other_model.learning_id,
        }

    async def test_vector_backfill_of_learnings_by_kinds(self, store: Store) -> None:
        """``learnings_without_embedding`` lists the learnings of the given kinds (any
        status) with no vector by a model, ``limit`` at a time in a stable order, as stored;
        a backfill by kinds ends and leaves other kinds unembedded."""
        k1, k2, k3, model = _uid("k1"), _uid("k2"), _uid("k3"), _uid("embedder")
        other = _uid("other-embedder")

        async def learn(kind: str, embedding: Embedding | None = None, **kw: Any) -> Learning:
            return await store.upsert_learning(
                Learning(kind=kind, content={"kind": kind}, **kw), embedding=embedding
            )

        plain = await learn(k1)
        by_other = await learn(k1, _emb(other, _axis(0)))
        by_model = await learn(k1, _emb(model, _axis(0)))
        proposed = await learn(k1, status=LearningStatus.PROPOSED)
        second_kind = await learn(k2)
        third_kind = await learn(k3)

        async def lacking(kinds: list[str] | None, limit: int = 100) -> list[Learning]:
            return await store.learnings_without_embedding(model, kinds=kinds, limit=limit)

        def ids(rows: Sequence[Learning]) -> set[str]:
            return {row.learning_id for row in rows}

        k1_rows = await lacking([k1])
        assert ids(k1_rows) == ids([plain, by_other, proposed])
        assert {row.learning_id: row for row in k1_rows} == {
            row.learning_id: row for row in (plain, by_other, proposed)
        }, "listed not as stored"
        assert ids(await lacking([k1, k2])) == ids([plain, by_other, proposed, second_kind])
        assert ids(await lacking([k2, _uid("none")])) == ids([second_kind])

        first = await lacking([k1, k2], limit=2)
        assert await lacking([k1, k2], limit=2) == first, "order unstable"
        longer = await lacking([k1, k2], limit=4)
        assert len(first) == 2 and longer[:2] == first, (first, longer)

        listed = await _backfill(store, "learnings", model, {}, limit=2, kinds=[k1, k2])
        assert set(listed) == ids([plain, by_other, proposed, second_kind])
        assert await lacking([k1, k2]) == []
        assert await lacking([k3]) == [third_kind]
        everything = await _backfill(store, "learnings", model, {}, limit=50)
        assert third_kind.learning_id in everything, "kinds=None did not list every kind"

        found = await _learning_hits(store, _emb(model, _axis(0)), kind=k1, status=None)
        assert {row for row, _ in found} == ids([plain, by_other, by_model, proposed])

    # -- deleting and forgetting ------------------------------------------------------------
    async def test_vector_deleted_with_its_row(self, store: Store) -> None:
        """``delete_memory`` / ``delete_learning`` take the vector along: it is never found
        again, not even when a row is stored again under the same id without one."""
        user, kind, model = _uid("u"), _uid("kind"), _uid("embedder")
        query = _emb(model, _axis(0))
        gone = await store.upsert_memory(Memory(user_id=user, content="gone"), embedding=query)
        kept = await store.upsert_memory(
            Memory(user_id=user, content="kept"), embedding=_emb(model, _vec(0.6, 0.8))
        )
        lost = await store.upsert_learning(Learning(kind=kind, content={"v": 1}), embedding=query)
        stays = await store.upsert_learning(
            Learning(kind=kind, content={"v": 2}), embedding=_emb(model, _vec(0.6, 0.8))
        )

        assert await store.delete_memory(gone.memory_id) is True
        assert await store.delete_learning(lost.learning_id) is True
        _assert_hits(await _memory_hits(store, user, query), [(kept.memory_id, 0.6)])
        _assert_hits(await _learning_hits(store, query, kind=kind), [(stays.learning_id, 0.6)])
        assert await store.set_embeddings("memories", {gone.memory_id: query}) == 0
        assert await store.set_embeddings("learnings", {lost.learning_id: query}) == 0

        await store.upsert_memory(gone)  # the same id again, without a vector
        await store.upsert_learning(lost)
        _assert_hits(await _memory_hits(store, user, query), [(kept.memory_id, 0.6)], "same id")
        _assert_hits(await _learning_hits(store, query, kind=kind), [(stays.learning_id, 0.6)])

    async def test_vector_forget_user_removes_the_users_vectors(self, store: Store) -> None:
        """After ``forget_user`` nothing of the user is found by vector (memories, their
        learnings, learnings of their sessions), not even after their ids are reused; other
        users' vectors stay."""
        alice, bob, kind, model = _uid("alice"), _uid("bob"), _uid("kind"), _uid("embedder")
        query = _emb(model, _axis(0))
        sid = _uid("s")
        await store.upsert_session(Session(session_id=sid, user_id=alice), expected_version=None)
        memories = [
            await store.upsert_memory(Memory(user_id=alice, content=f"fact {i}"), embedding=query)
            for i in range(2)
        ]
        learnings = [
            await store.upsert_learning(
                Learning(kind=kind, namespace="user", user_id=alice, content={"i": 1}),
                embedding=query,
            ),
            await store.upsert_learning(
                Learning(kind=kind, namespace="session", session_id=sid, content={"i": 2}),
                embedding=query,
            ),
        ]
        bobs = await store.upsert_memory(
            Memory(user_id=bob, content="bob's"), embedding=_emb(model, _vec(0.8, 0.6))
        )
        bobs_learning = await store.upsert_learning(
            Learning(kind=kind, namespace="user", user_id=bob, content={"i": 3}),
            embedding=_emb(model, _vec(0.8, 0.6)),
        )

        counts = await store.forget_user(alice)
        assert (counts["memories"], counts["learnings"]) == (2, 2), counts

        assert await _memory_hits(store, alice, query, limit=50) == []
        assert await _learning_hits(store, query, user_id=alice, status=None, limit=50) == []
        _assert_hits(
            await _learning_hits(store, query, kind=kind, status=None, limit=50),
            [(bobs_learning.learning_id, 0.8)],
        )
        _assert_hits(await _memory_hits(store, bob, query), [(bobs.memory_id, 0.8)])
        memory_ids = {m.memory_id: query for m in memories}
        assert await store.set_embeddings("memories", memory_ids) == 0
        learning_ids = {learning.learning_id: query for learning in learnings}
        assert await store.set_embeddings("learnings", learning_ids) == 0

        for memory in memories:  # the same ids again, without vectors
            await store.upsert_memory(memory)
        for learning in learnings:
            await store.upsert_learning(learning)
        assert await _memory_hits(store, alice, query, limit=50) == []
        _assert_hits(
            await _learning_hits(store, query, kind=kind, status=None, limit=50),
            [(bobs_learning.learning_id, 0.8)],
        )
        await store.forget_user(alice)

    @requires("raw_storage_scan")
    async def test_vector_leaves_no_raw_trace_after_delete_or_forget(
        self, db: Any, store: Store
    ) -> None:
        """A deleted row's vector, and after ``forget_user`` everything of the user, are
        gone from the raw storage (``raw_scan``): no row id, user id or vector bytes left in
        orphaned vector rows or index entries."""
        user, kind, model = _uid("forget-vectors"), _uid("kind"), _uid("embedder")
        kept_vector = [0.1234 + 0.0101 * i for i in range(DIM)]  # bytes found nowhere else
        gone_vector = [0.4321 - 0.0107 * i for i in range(DIM)]
        embedding, gone = _emb(model, kept_vector), _emb(model, gone_vector)
        memory = await store.upsert_memory(
            Memory(user_id=user, content="an embedded fact"), embedding=embedding
        )
        learning = await store.upsert_learning(
            Learning(kind=kind, user_id=user, content={"fact": "embedded"}), embedding=embedding
        )
        backfilled = await store.upsert_memory(Memory(user_id=user, content="embedded later"))
        assert await store.set_embeddings("memories", {backfilled.memory_id: embedding}) == 1
        deleted = await store.upsert_memory(Memory(user_id=user, content="deleted"), embedding=gone)
        deleted_learning = await store.upsert_learning(
            Learning(kind=kind, user_id=user, content={"fact": "deleted"}), embedding=gone
        )
        bystander = _uid("bystander")
        kept = await store.upsert_memory(
            Memory(user_id=bystander, content="kept"), embedding=_emb(model, _axis(0))
        )

        def vector_needles(vector: list[float]) -> list[str]:
            """How a raw scan shows float32 bytes: byte for byte (latin-1), or as hex."""
            packed = struct.pack(f"<{DIM}f", *vector)
            return [packed.decode("latin-1"), packed.hex()]

        before = await _raw_scan(self, db)
        assert _holding(before, [user]) and _holding(before, [deleted.memory_id]), (
            f"{type(self).__name__}.raw_scan(db) found no trace of the data just stored under "
            f"user {user!r}: it must return every row/document/key of db"
        )

        assert await store.delete_memory(deleted.memory_id) is True
        assert await store.delete_learning(deleted_learning.learning_id) is True
        needles = [deleted.memory_id, deleted_learning.learning_id, *vector_needles(gone_vector)]
        left = _holding(await _raw_scan(self, db), needles)
        assert not left, (
            f"after delete_memory / delete_learning their ids or vectors are still stored in "
            f"{len(left)} entries:\n" + _shown(left, needles)
        )

        await store.forget_user(user)
        rows = [memory.memory_id, backfilled.memory_id, learning.learning_id]
        needles = [user, *rows, *vector_needles(kept_vector)]
        left = _holding(await _raw_scan(self, db), needles)
        assert not left, (
            f"after forget_user({user!r}) its id, its rows' ids or its vectors are still "
            f"stored in {len(left)} entries:\n" + _shown(left, needles)
        )
        found = await _memory_hits(store, bystander, _emb(model, _axis(0)))
        _assert_hits(found, [(kept.memory_id, 1.0)], "the bystander's vector")

    # -- the door ------------------------------------------------------------------------
    async def test_vector_arguments_refused_at_the_door(self, store: Store) -> None:
        """A vector that is not a ``kern.records.Embedding`` (a list, a dict, None where one
        is required) is refused with InvalidTextError; a table other than memories/learnings,
        a bad id, model or kinds with InvalidIdError. Nothing is written, not even the good
        vectors of a refused ``set_embeddings``."""
        user, kind, model = _uid("u"), _uid("kind"), _uid("embedder")
        query = _emb(model, _axis(0))
        memory = await store.upsert_memory(Memory(user_id=user, content="kept"), embedding=query)
        learning = await store.upsert_learning(
            Learning(kind=kind, content={"v": 1}), embedding=query
        )
        new_memory = Memory(user_id=user, content="never stored")
        new_learning = Learning(kind=kind, content={"v": "never stored"})
        good = _emb(model, _axis(2))  # would move the kept rows' scores if it were stored
        raw = _axis(1)
        problems: list[str] = []

        async def refused(
            what: str, error: type[Exception], call: Any, *args: Any, **kw: Any
        ) -> None:
            problem = await _refusal_problem(functools.partial(call, *args, **kw), error)
            if problem is not None:
                problems.append(f"{what}: {problem}")

        not_vectors: list[Any] = [raw, {"model": model, "vector": raw}, (model, raw), "v", 1.0]
        for bad in not_vectors:
            shown = type(bad).__name__
            for record in (memory, new_memory):
                changed = record.model_copy(update={"content": "overwritten"})
                await refused(
                    f"upsert_memory(embedding={shown})",
                    InvalidTextError,
                    store.upsert_memory,
                    changed,
                    embedding=bad,
                )
            for learned in (learning, new_learning):
                changed_l = learned.model_copy(update={"content": {"v": "overwritten"}})
                await refused(
                    f"upsert_learning(embedding={shown})",
                    InvalidTextError,
                    store.upsert_learning,
                    changed_l,
                    embedding=bad,
                )
            await refused(
                f"search_memories_by_vector({shown})",
                InvalidTextError,
                store.search_memories_by_vector,
                user,
                bad,
            )
            await refused(
                f"search_learnings_by_vector({shown})",
                InvalidTextError,
                store.search_learnings_by_vector,
                bad,
                kind=kind,
            )
            for table, row in (("memories", memory.memory_id), ("learnings", learning.learning_id)):
                await refused(
                    f"set_embeddings({table}, {{good, bad: {shown}}})",
                    InvalidTextError,
                    store.set_embeddings,
                    table,
                    {row: good, _uid("row"): bad},
                )
        await refused(
            "search_memories_by_vector(None)",
            InvalidTextError,
            store.search_memories_by_vector,
            user,
            None,
        )
        await refused(
            "search_learnings_by_vector(None)",
            InvalidTextError,
            store.search_learnings_by_vector,
            None,
            kind=kind,
        )
        not_mappings: list[Any] = [[(memory.memory_id, good)], None, "memories"]
        for bad in not_mappings:
            await refused(
                f"set_embeddings(memories, {type(bad).__name__})",
                InvalidTextError,
                store.set_embeddings,
                "memories",
                bad,
            )
        bad_tables: list[Any] = ["sessions", "runs", "Memories", "memories ", "", None, 1]
        for table_name in bad_tables:
            await refused(
                f"set_embeddings({table_name!r})",
                InvalidIdError,
                store.set_embeddings,
                table_name,
                {memory.memory_id: good},
            )
        bad_keys: list[Any] = [None, "", 1, ("m",), "a\x00b", "x" * 256]
        for key in bad_keys:
            await refused(
                f"set_embeddings(memories, {{{key!r:.20}: ...}})",
                InvalidIdError,
                store.set_embeddings,
                "memories",
                {memory.memory_id: good, key: good},
            )
        bad_ids: list[Any] = [None, "", 1, {"$ne": None}, ["m"], "a\x00b", "x" * 256]
        for bad in bad_ids:
            shown = f"{bad!r:.20}"
            await refused(
                f"memories_without_embedding({shown})",
                InvalidIdError,
                store.memories_without_embedding,
                bad,
            )
            await refused(
                f"learnings_without_embedding({shown})",
                InvalidIdError,
                store.learnings_without_embedding,
                bad,
            )
            await refused(
                f"learnings_without_embedding(kinds=[{shown}])",
                InvalidIdError,
                store.learnings_without_embedding,
                model,
                kinds=[kind, bad],
            )
            await refused(
                f"search_memories_by_vector(user_id={shown})",
                InvalidIdError,
                store.search_memories_by_vector,
                bad,
                query,
            )
            if bad is None:
                continue  # None is "any" for the optional filters below
            await refused(
                f"search_memories_by_vector(agent_id={shown})",
                InvalidIdError,
                store.search_memories_by_vector,
                user,
                query,
                agent_id=bad,
            )
            for field in ("kind", "namespace", "user_id"):
                filters: dict[str, Any] = {field: bad}  # a filter named at run time
                await refused(
                    f"search_learnings_by_vector({field}={shown})",
                    InvalidIdError,
                    store.search_learnings_by_vector,
                    query,
                    **filters,
                )
        await refused(
            "learnings_without_embedding(kinds='k')",
            InvalidIdError,
            store.learnings_without_embedding,
            model,
            kinds=kind,
        )
        assert not problems, "bad vector arguments got past the contract:\n" + "\n".join(problems)

        assert await store.get_memory(memory.memory_id) == memory
        assert await store.get_memory(new_memory.memory_id) is None
        assert await store.get_learning(learning.learning_id) == learning
        assert await store.get_learning(new_learning.learning_id) is None
        _assert_hits(await _memory_hits(store, user, query), [(memory.memory_id, 1.0)])
        _assert_hits(await _learning_hits(store, query, kind=kind), [(learning.learning_id, 1.0)])

    # -- exact and indexed search ----------------------------------------------------------
    async def test_vector_search_agrees_with_brute_force(self, store: Store) -> None:
        """Whatever a backend searches with (an exact scan, a vector index), its top 5 is the
        brute-force top 5 of the user's (or the filter's) vectors, with the exact cosines."""
        rng = random.Random(14)  # issue 14: recall by meaning

        def random_vector() -> list[float]:
            return [rng.gauss(0.0, 1.0) for _ in range(DIM)]

        alice, bob, kind = _uid("alice"), _uid("bob"), _uid("kind")
        model, other = _uid("embedder"), _uid("other-embedder")
        agents: dict[str, str] = {}
        memory_vectors: dict[str, list[float]] = {}
        for i in range(40):
            vector = random_vector()
            memory = Memory(user_id=alice, agent_id=("planner", "writer")[i % 2], content=f"{i}")
            if i % 10 == 3:
                await store.upsert_memory(memory, embedding=_emb(other, vector))
            elif i % 10 == 7:
                await store.upsert_memory(memory)
            else:
                await store.upsert_memory(memory, embedding=_emb(model, vector))
                memory_vectors[memory.memory_id] = vector
                agents[memory.memory_id] = memory.agent_id or ""
        for i in range(10):
            await store.upsert_memory(
                Memory(user_id=bob, agent_id="planner", content=f"bob {i}"),
                embedding=_emb(model, random_vector()),
            )
        learning_vectors: dict[str, tuple[Learning, list[float]]] = {}
        statuses = [LearningStatus.ACTIVE] * 3 + [LearningStatus.PROPOSED]
        for i in range(30):
            vector = random_vector()
            learning = await store.upsert_learning(
                Learning(
                    kind=kind,
                    namespace="user",
                    user_id=bob if i % 3 == 0 else alice,
                    status=statuses[i % 4],
                    content={"i": i},
                ),
                embedding=_emb(model, vector),
            )
            learning_vectors[learning.learning_id] = (learning, vector)

        queries = [random_vector() for _ in range(6)]
        queries.append(next(iter(memory_vectors.values())))  # a stored vector itself
        for n, query in enumerate(queries):
            embedding = _emb(model, query)
            for agent in (None, "planner"):
                candidates = {
                    row: vector
                    for row, vector in memory_vectors.items()
                    if agent is None or agents[row] == agent
                }
                found = await _memory_hits(store, alice, embedding, agent_id=agent)
                _assert_like_brute_force(found, candidates, query, 5, f"query {n}, {agent=}")
            learning_filters: list[dict[str, Any]] = [
                {},
                {"user_id": alice},
                {"status": None},
                {"user_id": bob, "status": LearningStatus.PROPOSED},
            ]
            for filters in learning_filters:
                status = filters.get("status", LearningStatus.ACTIVE)
                learning_candidates = {
                    row: vector
                    for row, (learning, vector) in learning_vectors.items()
                    if filters.get("user_id", learning.user_id) == learning.user_id
                    and status in (None, learning.status)
                }
                found = await _learning_hits(store, embedding, kind=kind, **filters)
                where = f"learnings, query {n}, {filters}"
                _assert_like_brute_force(found, learning_candidates, query, 5, where)

    # -- persistence -------------------------------------------------------------------------
    @requires("persistent")
    async def test_vector_persists_in_a_second_db_object(
        self, store: Store, recipe: Recipe
    ) -> None:
        """Vectors are stored, not held by the db object: another db built from the same
        recipe finds them, and finds what it stores from the first."""
        user, kind, model = _uid("u"), _uid("kind"), _uid("embedder")
        query = _emb(model, _axis(0))
        memory = await store.upsert_memory(Memory(user_id=user, content="kept"), embedding=query)
        learning = await store.upsert_learning(
            Learning(kind=kind, content={"v": 1}), embedding=query
        )

        second = await self._open(recipe)
        try:
            _assert_hits(await _memory_hits(second, user, query), [(memory.memory_id, 1.0)])
            found = await _learning_hits(second, query, kind=kind)
            _assert_hits(found, [(learning.learning_id, 1.0)], "the second db")
            later = await second.upsert_memory(
                Memory(user_id=user, content="later"), embedding=_emb(model, _vec(0.6, 0.8))
            )
        finally:
            await self._close(second)
        _assert_hits(
            await _memory_hits(store, user, query),
            [(memory.memory_id, 1.0), (later.memory_id, 0.6)],
        )
