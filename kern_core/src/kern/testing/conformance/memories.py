"""Memories: upsert and replace, listing per user, relevant and bounded search, deleting."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kern.records import Memory
from kern.testing.capabilities import requires
from kern.testing.conformance.base import ScenarioBase, Store
from kern.testing.conformance.common import ODD_QUERIES, _ids, _tick, _uid

__all__ = ["MemoryScenarios"]


class MemoryScenarios(ScenarioBase):
    """``upsert_memory`` / ``get_memory`` / ``list_memories`` / ``search_memories`` /
    ``delete_memory``."""

    async def test_memory_upsert_get_and_replace(self, store: Store) -> None:
        old = datetime(2020, 1, 1, tzinfo=UTC)
        user = _uid("u")
        memory = Memory(
            user_id=user,
            agent_id="assistant",
            content="Prefers tea over coffee — 緑茶 🍵",
            topics=["drinks", "preferences"],
            source_run_id=_uid("run"),
            created_at=old,
            updated_at=old,
        )
        stored = await store.upsert_memory(memory)

        assert stored.updated_at > old  # refreshed
        assert stored.model_copy(update={"updated_at": old}) == memory
        assert await store.get_memory(memory.memory_id) == stored
        assert await store.get_memory(_uid("missing")) is None

        replaced = await store.upsert_memory(
            memory.model_copy(update={"content": "Prefers coffee now", "topics": ["drinks"]})
        )
        assert (replaced.content, replaced.topics) == ("Prefers coffee now", ["drinks"])
        assert await store.get_memory(memory.memory_id) == replaced
        assert await store.list_memories(user) == [replaced]

    async def test_list_memories_scoped_ordered_and_paged(self, store: Store) -> None:
        alice, bob = _uid("alice"), _uid("bob")
        m1, m2, m3 = (
            Memory(user_id=alice, agent_id=agent, content=f"fact {i}")
            for i, agent in enumerate(("x", "y", "x"))
        )
        m4 = Memory(user_id=bob, agent_id="x", content="bob's fact")
        for memory in (m1, m2, m3, m4):
            await store.upsert_memory(memory)
            _tick()
        await store.upsert_memory(m1.model_copy(update={"content": "fact 0, revised"}))

        async def listed(user: str, **kw: Any) -> list[str]:
            return _ids(await store.list_memories(user, **kw), "memory_id")

        assert await listed(alice) == [m1.memory_id, m3.memory_id, m2.memory_id]
        assert await listed(alice, agent_id="x") == [m1.memory_id, m3.memory_id]
        assert await listed(alice, limit=2) == [m1.memory_id, m3.memory_id]
        assert await listed(alice, limit=2, offset=2) == [m2.memory_id]
        assert await listed(alice, agent_id="x", offset=1) == [m3.memory_id]
        assert await listed(bob) == [m4.memory_id]
        assert await listed(_uid("nobody")) == []

    @requires("ranked_search")
    async def test_search_memories_relevant_first(self, store: Store) -> None:
        user = _uid("u")
        contents = {
            "hiking": "I love hiking in the Alps every summer",
            "sushi": "My favourite food is sushi",
            "job": "I work as a data engineer at Acme",
            "dog": "I have a dog named Rex",
        }
        ids = {}
        for key, content in contents.items():
            ids[key] = (await store.upsert_memory(Memory(user_id=user, content=content))).memory_id

        for query, best in (
            ("sushi", "sushi"),
            ("data engineer", "job"),
            ("Rex", "dog"),
            ("Which mountains do I go hiking in?", "hiking"),  # natural language, partial match
        ):
            found = await store.search_memories(user, query)
            assert found, f"nothing found for {query!r}"
            assert found[0].memory.memory_id == ids[best], (query, found)
            assert all(isinstance(hit.score, float) for hit in found)
            assert len({hit.memory.memory_id for hit in found}) == len(found)

    async def test_search_memories_bounded_by_limit(self, store: Store) -> None:
        user = _uid("u")
        for i in range(7):
            await store.upsert_memory(Memory(user_id=user, content=f"coffee fact number {i}"))

        assert len(await store.search_memories(user, "coffee", limit=3)) == 3
        assert len(await store.search_memories(user, "coffee", limit=1)) == 1
        assert len(await store.search_memories(user, "coffee")) == 5  # the default limit

    async def test_search_memories_never_returns_another_users(self, store: Store) -> None:
        alice, bob = _uid("alice"), _uid("bob")
        mine = await store.upsert_memory(Memory(user_id=alice, content="hiking in the Alps"))
        for i in range(10):
            await store.upsert_memory(Memory(user_id=bob, content=f"hiking hiking Alps {i}"))

        found = await store.search_memories(alice, "hiking Alps", limit=5)
        assert [hit.memory.memory_id for hit in found] == [mine.memory_id]
        assert await store.search_memories(_uid("nobody"), "hiking") == []

    async def test_search_memories_agent_filter(self, store: Store) -> None:
        user = _uid("u")
        one = await store.upsert_memory(Memory(user_id=user, agent_id="one", content="likes tea"))
        await store.upsert_memory(Memory(user_id=user, agent_id="two", content="likes tea a lot"))

        found = await store.search_memories(user, "tea", agent_id="one")
        assert [hit.memory.memory_id for hit in found] == [one.memory_id]

    async def test_search_memories_odd_query_text(self, store: Store) -> None:
        """Query text is data, never syntax: operators, quotes and wildcards do not raise."""
        user, other = _uid("u"), _uid("other")
        await store.upsert_memory(Memory(user_id=user, content='what\'s "up" AND (x) 100%_done'))
        await store.upsert_memory(Memory(user_id=other, content='what\'s "up" AND (x) 100%_done'))
        for query in ODD_QUERIES:
            found = await store.search_memories(user, query, limit=3)
            assert isinstance(found, list)
            assert len(found) <= 3
            assert all(hit.memory.user_id == user for hit in found), query

    async def test_delete_memory(self, store: Store) -> None:
        user = _uid("u")
        gone = await store.upsert_memory(Memory(user_id=user, content="to forget"))
        kept = await store.upsert_memory(Memory(user_id=user, content="to keep"))

        assert await store.delete_memory(gone.memory_id) is True
        assert await store.get_memory(gone.memory_id) is None
        assert await store.list_memories(user) == [kept]
        assert gone.memory_id not in {
            hit.memory.memory_id for hit in await store.search_memories(user, "forget")
        }
        assert await store.delete_memory(gone.memory_id) is False
