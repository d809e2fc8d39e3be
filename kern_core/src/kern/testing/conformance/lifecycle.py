"""The db's life: what it is, its tables, data that outlives it, and forgetting a user.

``forget_user`` on the raw storage is in ``kern.testing.isolation``; first use from several
processes at once is in ``concurrency``.
"""

from __future__ import annotations

from typing import Any

from kern.db.base import AsyncBaseDb
from kern.records import Learning, Memory, Session
from kern.testing.capabilities import requires
from kern.testing.conformance.base import ScenarioBase, Store
from kern.testing.conformance.common import _seqs, _turn, _uid
from kern.testing.conformance.recipes import Recipe

__all__ = ["LifecycleScenarios"]


class LifecycleScenarios(ScenarioBase):
    """The contract class, ``create_tables``, persistence across db objects, ``forget_user``."""

    async def test_db_implements_the_contract(self, db: Any) -> None:
        """The class is a ``BaseDb`` (sync suite) / ``AsyncBaseDb`` (async suite) and says so."""
        assert isinstance(db, self.base_class)
        assert db.is_async is (self.base_class is AsyncBaseDb)
        assert isinstance(db.backend_name, str) and db.backend_name

    async def test_create_tables_is_idempotent(self, store: Store) -> None:
        sid = _uid("s")
        await store.create_tables()
        await store.upsert_session(Session(session_id=sid), expected_version=None)
        first = await store.append_run(_turn(sid, 0))
        session = await store.get_session(sid)
        await store.create_tables()
        await store.create_tables()

        assert await store.get_session(sid) == session
        assert await store.get_last_runs(sid, 10) == [first]
        assert (await store.append_run(_turn(sid, 1))).seq == 2

    @requires("persistent")
    async def test_data_persists_in_a_second_db_object(self, store: Store, recipe: Recipe) -> None:
        user, sid = _uid("u"), _uid("s")
        await store.upsert_session(
            Session(session_id=sid, user_id=user, state={"k": "v"}), expected_version=None
        )
        run = await store.append_run(_turn(sid, 0, user))
        session = await store.get_session(sid)
        memory = await store.upsert_memory(Memory(user_id=user, content="persisted"))
        learning = await store.upsert_learning(Learning(kind="k", user_id=user, content={"a": 1}))

        second = await self._open(recipe)
        try:
            assert await second.get_session(sid) == session
            assert await second.get_last_runs(sid, 10) == [run]
            assert await second.get_memory(memory.memory_id) == memory
            assert await second.get_learning(learning.learning_id) == learning
            assert (await second.append_run(_turn(sid, 1, user))).seq == 2
        finally:
            await self._close(second)
        assert _seqs(await store.get_last_runs(sid, 10)) == [1, 2]

    async def test_forget_user_removes_exactly_that_user(self, store: Store) -> None:
        """Sessions (with all their runs), runs, memories and learnings of the user go and
        are counted per table; another user's data is untouched."""
        alice, bob = _uid("alice"), _uid("bob")
        alice_sessions = [_uid("a1"), _uid("a2")]
        for sid in alice_sessions:
            await store.upsert_session(
                Session(session_id=sid, user_id=alice), expected_version=None
            )
            for i in range(3):
                await store.append_run(_turn(sid, i, alice))
        # a workflow step without user_id, inside alice's session: goes with the session
        await store.append_run(_turn(alice_sessions[0], 9))
        # alice's run in a session with no row (nor user): goes because it holds her data
        await store.append_run(_turn(_uid("loose"), 0, alice))
        for i in range(2):
            await store.upsert_memory(Memory(user_id=alice, content=f"alice fact {i}"))
            await store.upsert_learning(Learning(kind="profile", user_id=alice, content={"i": i}))

        bob_sid = _uid("b1")
        await store.upsert_session(Session(session_id=bob_sid, user_id=bob), expected_version=None)
        bob_runs = [await store.append_run(_turn(bob_sid, i, bob)) for i in range(2)]
        bob_session = await store.get_session(bob_sid)
        bob_memory = await store.upsert_memory(Memory(user_id=bob, content="bob fact"))
        bob_learning = await store.upsert_learning(
            Learning(kind="profile", user_id=bob, content={"name": "Bob"})
        )

        counts = await store.forget_user(alice)

        assert {
            table: counts[table] for table in ("sessions", "runs", "memories", "learnings")
        } == {
            "sessions": 2,
            "runs": 8,
            "memories": 2,
            "learnings": 2,
        }
        assert await store.list_sessions(user_id=alice) == []
        for sid in alice_sessions:
            assert await store.get_session(sid) is None
            assert await store.get_last_runs(sid, 10) == []
        assert await store.list_memories(alice) == []
        assert await store.search_memories(alice, "alice fact") == []
        assert await store.query_learnings(user_id=alice) == []

        assert await store.get_session(bob_sid) == bob_session
        assert await store.get_last_runs(bob_sid, 10) == bob_runs
        assert await store.list_memories(bob) == [bob_memory]
        assert await store.query_learnings(user_id=bob) == [bob_learning]

        again = await store.forget_user(alice)
        assert all(again[table] == 0 for table in ("sessions", "runs", "memories", "learnings"))
