"""Sessions: compare-and-set writes, exact round trips, listing, deleting.

The multi-process races on one session are in ``concurrency``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kern.errors import VersionConflictError
from kern.records import Session, SessionType
from kern.testing.conformance.base import ScenarioBase, Store
from kern.testing.conformance.common import _ids, _json, _tick, _turn, _uid

__all__ = ["SessionScenarios"]


class SessionScenarios(ScenarioBase):
    """``upsert_session`` / ``get_session`` / ``list_sessions`` / ``delete_session``."""

    async def test_create_session_then_get(self, store: Store) -> None:
        """expected_version=None creates the session at version 1; get returns what was stored."""
        old = datetime(2020, 1, 1, tzinfo=UTC)
        session = Session(
            session_id=_uid("s"),
            user_id=_uid("u"),
            component_id=_uid("agent"),
            state={"step": 1},
            created_at=old,
            updated_at=old,
        )
        stored = await store.upsert_session(session, expected_version=None)

        assert stored.version == 1
        assert stored.created_at == old  # a new session keeps the created_at it was given
        assert stored.updated_at > old  # ...and gets a fresh updated_at
        assert stored.model_copy(update={"version": 0, "updated_at": old}) == session
        assert await store.get_session(session.session_id) == stored

    async def test_get_unknown_session_is_none(self, store: Store) -> None:
        assert await store.get_session(_uid("missing")) is None

    async def test_update_session_with_current_version(self, store: Store) -> None:
        """A write naming the stored version succeeds: version +1, created_at kept,
        updated_at moves, every other field replaced (the written object's own
        ``version`` and ``created_at`` are ignored)."""
        sid, user = _uid("s"), _uid("u")
        v1 = await store.upsert_session(
            Session(session_id=sid, user_id=user, name="first", state={"n": 1}),
            expected_version=None,
        )
        _tick()
        rewrite = Session(  # a fresh object: version 0, created_at now
            session_id=sid,
            user_id=user,
            name="second",
            summary="talked about tests",
            state={"n": 2, "added": [1, 2]},
            metadata={"tag": "x"},
        )
        v2 = await store.upsert_session(rewrite, expected_version=1)

        assert v2.version == 2
        assert v2.created_at == v1.created_at
        assert v2.updated_at > v1.updated_at
        assert (v2.name, v2.summary, v2.state, v2.metadata) == (
            "second",
            "talked about tests",
            {"n": 2, "added": [1, 2]},
            {"tag": "x"},
        )
        assert await store.get_session(sid) == v2

        v3 = await store.upsert_session(
            v2.model_copy(update={"state": {"n": 3}}), expected_version=2
        )
        assert v3.version == 3
        stored = await store.get_session(sid)
        assert stored is not None and stored.state == {"n": 3}

    async def test_stale_version_write_is_refused(self, store: Store) -> None:
        """Acceptance case 2: a write naming an old version raises VersionConflictError and
        leaves the stored session exactly as it was."""
        sid = _uid("s")
        await store.upsert_session(Session(session_id=sid, state={"n": 1}), expected_version=None)
        current = await store.upsert_session(
            Session(session_id=sid, state={"n": 2}), expected_version=1
        )

        stale = Session(session_id=sid, state={"n": "stale"})
        with pytest.raises(VersionConflictError) as conflict:
            await store.upsert_session(stale, expected_version=1)
        assert conflict.value.session_id == sid
        assert conflict.value.expected == 1
        for wrong in (0, 5):  # neither older nor newer than the stored version
            with pytest.raises(VersionConflictError):
                await store.upsert_session(stale, expected_version=wrong)

        assert await store.get_session(sid) == current

    async def test_creating_an_existing_session_is_refused(self, store: Store) -> None:
        sid = _uid("s")
        stored = await store.upsert_session(
            Session(session_id=sid, state={"owner": "first"}), expected_version=None
        )
        with pytest.raises(VersionConflictError):
            await store.upsert_session(
                Session(session_id=sid, state={"owner": "second"}), expected_version=None
            )
        assert await store.get_session(sid) == stored

    async def test_updating_a_missing_session_is_refused(self, store: Store) -> None:
        """expected_version=N on a session that is not stored conflicts and creates nothing."""
        sid = _uid("s")
        with pytest.raises(VersionConflictError):
            await store.upsert_session(Session(session_id=sid), expected_version=1)
        assert await store.get_session(sid) is None

    async def test_session_round_trips_exactly(self, store: Store) -> None:
        created = datetime.now(UTC) - timedelta(days=3, microseconds=1)
        session = Session(
            session_id=_uid("s"),
            session_type=SessionType.TEAM,
            component_id="support-team",
            user_id=_uid("user"),
            name="Ünïcode — 名前 🚀",
            state={
                "cart": [{"sku": "A-1", "qty": 2, "price": 9.99}],
                "flags": {"vip": True, "one": 1, "two": 2.0, "none": None},
                "empty": {},
                "nothing": [],
                "text": 'quote " backslash \\ newline \n tab \t',
                "big": 2**53,
                "neg": -7,
            },
            summary="Résumé",
            metadata={"source": "api", "nested": {"deep": [[1], [2, {"k": "v"}]]}},
            created_at=created,
        )
        stored = await store.upsert_session(session, expected_version=None)
        fetched = await store.get_session(session.session_id)

        assert fetched == stored
        assert (
            fetched.model_copy(update={"version": 0, "updated_at": session.updated_at}) == session
        )
        assert _json(fetched.state) == _json(session.state)
        assert _json(fetched.metadata) == _json(session.metadata)
        assert fetched.created_at.tzinfo is not None and fetched.updated_at.tzinfo is not None

    async def test_list_sessions_filters(self, store: Store) -> None:
        """Every given filter applies (user_id, component_id, session_type), combined."""
        u1, u2, c1, c2 = _uid("u1"), _uid("u2"), _uid("c1"), _uid("c2")
        specs = {
            "s1": (u1, c1, SessionType.AGENT),
            "s2": (u1, c2, SessionType.TEAM),
            "s3": (u2, c1, SessionType.AGENT),
            "s4": (None, c1, SessionType.WORKFLOW),
        }
        ids = {name: _uid(name) for name in specs}
        for name, (user, component, kind) in specs.items():
            await store.upsert_session(
                Session(
                    session_id=ids[name], user_id=user, component_id=component, session_type=kind
                ),
                expected_version=None,
            )

        async def listed(**filters: Any) -> set[str]:
            found = await store.list_sessions(**filters, limit=100)
            return {name for name, sid in ids.items() if sid in _ids(found, "session_id")}

        assert await listed(user_id=u1) == {"s1", "s2"}
        assert await listed(component_id=c1) == {"s1", "s3", "s4"}
        assert await listed(user_id=u1, component_id=c1) == {"s1"}
        assert await listed(user_id=u1, session_type=SessionType.TEAM) == {"s2"}
        assert await listed(component_id=c1, session_type=SessionType.WORKFLOW) == {"s4"}
        assert await listed(component_id=c1, session_type=SessionType.TEAM) == set()
        assert await store.list_sessions(user_id=_uid("nobody")) == []
        workflows = await store.list_sessions(session_type=SessionType.WORKFLOW, limit=1000)
        assert all(s.session_type == SessionType.WORKFLOW for s in workflows)
        assert ids["s4"] in _ids(workflows, "session_id")
        # the filtered list holds whole, exact sessions
        assert await store.list_sessions(user_id=u2) == [await store.get_session(ids["s3"])]

    async def test_list_sessions_newest_first_and_paging(self, store: Store) -> None:
        """Newest updated_at first (an update moves a session to the front); limit/offset page."""
        user = _uid("u")
        a, b, c = _uid("a"), _uid("b"), _uid("c")
        for sid in (a, b, c):
            await store.upsert_session(Session(session_id=sid, user_id=user), expected_version=None)
            _tick()
        await store.upsert_session(Session(session_id=a, user_id=user), expected_version=1)

        async def page(**kw: Any) -> list[str]:
            return _ids(await store.list_sessions(user_id=user, **kw), "session_id")

        assert await page() == [a, c, b]
        assert await page(limit=2) == [a, c]
        assert await page(limit=2, offset=2) == [b]
        assert await page(limit=1, offset=1) == [c]
        assert await page(offset=3) == []

    async def test_list_sessions_default_limit_is_20(self, store: Store) -> None:
        user = _uid("u")
        for _ in range(23):
            await store.upsert_session(Session(user_id=user), expected_version=None)
        assert len(await store.list_sessions(user_id=user)) == 20
        assert len(await store.list_sessions(user_id=user, offset=20)) == 3

    async def test_delete_session_removes_its_runs(self, store: Store) -> None:
        user, sid, other = _uid("u"), _uid("s"), _uid("other")
        await store.upsert_session(Session(session_id=sid, user_id=user), expected_version=None)
        runs = [await store.append_run(_turn(sid, i, user)) for i in range(3)]
        kept = [await store.append_run(_turn(other, i, user)) for i in range(2)]

        assert await store.delete_session(sid) is True
        assert await store.get_session(sid) is None
        assert await store.get_last_runs(sid, 10) == []
        for run in runs:
            assert await store.get_run(run.run_id) is None
        assert await store.get_last_runs(other, 10) == kept
        assert await store.list_sessions(user_id=user) == []
        assert await store.delete_session(sid) is False
