"""Learnings: upsert and replace, every query filter, search over JSON content, deleting."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import JsonValue

from kern.records import Learning, LearningStatus
from kern.testing.conformance.base import ScenarioBase, Store
from kern.testing.conformance.common import ODD_QUERIES, _ids, _json, _tick, _uid

__all__ = ["LearningScenarios"]


class LearningScenarios(ScenarioBase):
    """``upsert_learning`` / ``get_learning`` / ``query_learnings`` / ``search_learnings`` /
    ``delete_learning``."""

    async def test_learning_upsert_get_and_replace(self, store: Store) -> None:
        old = datetime(2020, 1, 1, tzinfo=UTC)
        learning = Learning(
            kind=_uid("entity"),
            namespace="user",
            user_id=_uid("u"),
            session_id=_uid("s"),
            entity_id="acme",
            content={
                "name": "Acme GmbH",
                "facts": ["headquartered in Zürich", {"founded": 1999, "public": False}],
                "score": 0.5,
            },
            status=LearningStatus.PROPOSED,
            source_run_id=_uid("run"),
            created_at=old,
            updated_at=old,
        )
        stored = await store.upsert_learning(learning)

        assert stored.updated_at > old
        assert stored.model_copy(update={"updated_at": old}) == learning
        fetched = await store.get_learning(learning.learning_id)
        assert fetched == stored
        assert _json(fetched.content) == _json(learning.content)
        assert await store.get_learning(_uid("missing")) is None

        replaced = await store.upsert_learning(
            learning.model_copy(update={"status": LearningStatus.ACTIVE, "content": {"v": 2}})
        )
        assert (replaced.status, replaced.content) == (LearningStatus.ACTIVE, {"v": 2})
        assert await store.get_learning(learning.learning_id) == replaced
        assert await store.query_learnings(kind=learning.kind) == [replaced]

    async def test_query_learnings_by_every_filter(self, store: Store) -> None:
        k1, k2, ns1, ns2 = _uid("k1"), _uid("k2"), _uid("ns1"), _uid("ns2")
        ua, ub, s1, e1 = _uid("ua"), _uid("ub"), _uid("s1"), _uid("e1")
        specs: dict[str, dict[str, Any]] = {
            "a": {"kind": k1, "namespace": ns1, "user_id": ua, "session_id": s1},
            "b": {"kind": k1, "namespace": ns1, "user_id": ub, "entity_id": e1},
            "c": {"kind": k1, "namespace": ns2, "status": LearningStatus.PROPOSED},
            "d": {"kind": k2, "namespace": ns1, "user_id": ua, "entity_id": e1},
            "e": {
                "kind": k2,
                "namespace": ns2,
                "session_id": s1,
                "status": LearningStatus.REJECTED,
            },
            "f": {"kind": k1, "namespace": ns1, "user_id": ua, "status": LearningStatus.SUPERSEDED},
        }
        ids = {}
        for name, fields in specs.items():
            ids[name] = (
                await store.upsert_learning(Learning(content={"n": name}, **fields))
            ).learning_id

        async def found(**filters: Any) -> set[str]:
            got = await store.query_learnings(**filters)
            names = {name for name, lid in ids.items() if lid in _ids(got, "learning_id")}
            assert len(names) == len(got), "query returned learnings of another scenario"
            return names

        assert await found(kind=k1) == {"a", "b", "c", "f"}
        assert await found(namespace=ns2) == {"c", "e"}
        assert await found(user_id=ua) == {"a", "d", "f"}
        assert await found(session_id=s1) == {"a", "e"}
        assert await found(entity_id=e1) == {"b", "d"}
        assert await found(kind=k1, status=LearningStatus.ACTIVE) == {"a", "b"}
        assert await found(kind=k1, status=LearningStatus.PROPOSED) == {"c"}
        assert await found(kind=k2, status=LearningStatus.REJECTED) == {"e"}
        assert await found(user_id=ua, status=LearningStatus.SUPERSEDED) == {"f"}
        assert await found(kind=k1, namespace=ns1, user_id=ua) == {"a", "f"}
        assert await found(kind=k2, namespace=ns1, entity_id=e1) == {"d"}
        assert await found(kind=k2, user_id=ub) == set()

    async def test_query_learnings_newest_first_and_paging(self, store: Store) -> None:
        kind = _uid("kind")
        first, second, third = (Learning(kind=kind, content={"i": i}) for i in range(3))
        for learning in (first, second, third):
            await store.upsert_learning(learning)
            _tick()
        await store.upsert_learning(first.model_copy(update={"content": {"i": "revised"}}))

        async def page(**kw: Any) -> list[str]:
            return _ids(await store.query_learnings(kind=kind, **kw), "learning_id")

        assert await page() == [first.learning_id, third.learning_id, second.learning_id]
        assert await page(limit=2) == [first.learning_id, third.learning_id]
        assert await page(limit=2, offset=2) == [second.learning_id]
        assert await page(offset=3) == []

    async def test_search_learnings_over_json_content(self, store: Store) -> None:
        """Search looks into the values of the JSON content, nested ones included."""
        kind = _uid("knowledge")
        docs: dict[str, dict[str, JsonValue]] = {
            "units": {"fact": "The user prefers metric units", "topic": "units"},
            "acme": {"entity": "Acme", "facts": ["headquartered in Berlin", "founded 1999"]},
            "deploy": {"insight": "Deploys on Fridays cause incidents", "confidence": 0.8},
        }
        ids = {}
        for key, content in docs.items():
            ids[key] = (
                await store.upsert_learning(Learning(kind=kind, content=content))
            ).learning_id

        for query, best in (("metric", "units"), ("Berlin", "acme"), ("Fridays deploys", "deploy")):
            found = await store.search_learnings(query, kind=kind)
            assert found, f"nothing found for {query!r}"
            assert found[0].learning.learning_id == ids[best], (query, found)
            assert all(isinstance(hit.score, float) for hit in found)

        assert len(await store.search_learnings("the", kind=kind, limit=1)) <= 1
        for query in ODD_QUERIES:
            found = await store.search_learnings(query, kind=kind, limit=2)
            assert isinstance(found, list) and len(found) <= 2
        assert await store.search_learnings("metric", kind=_uid("empty")) == []

    async def test_search_learnings_scoping_and_status(self, store: Store) -> None:
        """user_id and namespace scope the search; status defaults to active only."""
        kind, alice, bob, ns = _uid("k"), _uid("alice"), _uid("bob"), _uid("ns")
        fact: dict[str, JsonValue] = {"fact": "prefers metric units"}
        mine = await store.upsert_learning(
            Learning(kind=kind, namespace="user", user_id=alice, content=fact)
        )
        await store.upsert_learning(
            Learning(kind=kind, namespace="user", user_id=bob, content=fact)
        )
        shared = await store.upsert_learning(Learning(kind=kind, namespace=ns, content=fact))
        pending = await store.upsert_learning(
            Learning(
                kind=kind,
                namespace="user",
                user_id=alice,
                content={"fact": "maybe metric units everywhere"},
                status=LearningStatus.PROPOSED,
            )
        )

        async def found(**kw: Any) -> set[str]:
            return {
                hit.learning.learning_id for hit in await store.search_learnings("metric", **kw)
            }

        assert await found(kind=kind, user_id=alice) == {mine.learning_id}
        assert await found(user_id=alice) == {mine.learning_id}
        assert await found(kind=kind, namespace=ns) == {shared.learning_id}
        assert await found(namespace=ns) == {shared.learning_id}
        assert await found(kind=kind, user_id=alice, status=LearningStatus.PROPOSED) == {
            pending.learning_id
        }
        assert await found(kind=kind, user_id=alice, status=None) == {
            mine.learning_id,
            pending.learning_id,
        }
        assert await found(kind=kind, user_id=_uid("nobody")) == set()

    async def test_delete_learning(self, store: Store) -> None:
        kind = _uid("k")
        gone = await store.upsert_learning(Learning(kind=kind, content={"fact": "obsolete"}))
        kept = await store.upsert_learning(Learning(kind=kind, content={"fact": "current"}))

        assert await store.delete_learning(gone.learning_id) is True
        assert await store.get_learning(gone.learning_id) is None
        assert await store.query_learnings(kind=kind) == [kept]
        assert gone.learning_id not in {
            hit.learning.learning_id for hit in await store.search_learnings("obsolete", kind=kind)
        }
        assert await store.delete_learning(gone.learning_id) is False
