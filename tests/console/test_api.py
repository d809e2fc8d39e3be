"""The console's JSON API on every backend's async Db, driven in-process.

Each test seeds a fresh database of the backend through kern's API (``seed``) and reads or
changes it through the API only; what changed is then read back with the Db itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any

import pytest

from kern.console import create_app
from kern.console.context import open_async
from kern.db import AsyncBaseDb
from kern.records import LearningStatus

BACKENDS = ["sqlite", "postgres", "duckdb", "mongo", "redis"]


@pytest.fixture(params=BACKENDS)
async def seeded(
    request: pytest.FixtureRequest, backend_url: Callable[[str], str], kit: ModuleType
) -> AsyncIterator[tuple[AsyncBaseDb, Any]]:
    db = open_async(backend_url(request.param))
    try:
        yield db, await kit.seed(db)
    finally:
        await db.close()


async def test_reads(seeded: tuple[AsyncBaseDb, Any], client: Any, kit: ModuleType) -> None:
    db, data = seeded
    ids = data.ids
    async with client(create_app(db=db, token=kit.TOKEN), headers=kit.BEARER) as api:
        health = (await api.get("/api/health")).json()
        assert health == {
            "status": "ok",
            "version": health["version"],
            "backend": db.backend_name,
            "read_only": False,
        }

        # sessions: markers hidden, newest updated first, filters, pages
        listed = (await api.get("/api/sessions")).json()
        assert [s["session_id"] for s in listed["sessions"]] == [
            ids["bob"],
            ids["team"],
            ids["chat"],
        ]
        assert listed["next_offset"] is None
        ada = (await api.get("/api/sessions", params={"user_id": "ada"})).json()["sessions"]
        assert {s["session_id"] for s in ada} == {ids["team"], ids["chat"]}
        teams = await api.get("/api/sessions", params={"session_type": "team"})
        assert [s["session_id"] for s in teams.json()["sessions"]] == [ids["team"]]
        first = (await api.get("/api/sessions", params={"limit": 2})).json()
        assert first["next_offset"] == 2
        rest = (await api.get("/api/sessions", params={"limit": 2, "offset": 2})).json()
        assert [s["session_id"] for s in rest["sessions"]] == [ids["chat"]]
        assert rest["next_offset"] is None

        # one session: the newest page of runs, members nested under their leader
        team = (await api.get(f"/api/sessions/{ids['team']}")).json()
        assert team["session"]["component_id"] == "trip-crew" and team["older"] is None
        [leader] = team["runs"]
        assert leader["run"]["run_id"] == ids["leader"]
        assert [c["run"]["run_id"] for c in leader["children"]] == [
            ids["researcher"],
            ids["writer"],
        ]
        chat = (await api.get(f"/api/sessions/{ids['chat']}", params={"limit": 2})).json()
        assert [r["run"]["seq"] for r in chat["runs"]] == [2, 3]
        assert chat["older"] == 2
        older = await api.get(f"/api/sessions/{ids['chat']}", params={"before_seq": 2})
        assert [r["run"]["seq"] for r in older.json()["runs"]] == [1]
        assert older.json()["older"] is None
        assert (await api.get("/api/sessions/no-such-session")).status_code == 404

        # a user: profile, memories newest first, ranked search
        profile = (await api.get("/api/users/ada/profile")).json()
        assert profile == {"user_id": "ada", "profile": {"name": "Ada"}}
        memories = (await api.get("/api/users/ada/memories")).json()
        assert [m["memory"]["content"] for m in memories["memories"]] == [
            "Ada plays chess on Sundays",
            "Ada likes green tea",
        ]
        found = (await api.get("/api/users/ada/memories", params={"q": "what tea"})).json()
        assert found["memories"][0]["memory"]["content"] == "Ada likes green tea"
        assert found["memories"][0]["score"] is not None
        assert all(m["memory"]["user_id"] == "ada" for m in found["memories"])
        nobody = (await api.get("/api/users/nobody/memories", params={"q": "tea"})).json()
        assert nobody["memories"] == []

        # learnings by kind / status / user, and the queue of proposals
        active = await api.get("/api/learnings", params={"status": "active", "user_id": "ada"})
        assert [x["kind"] for x in active.json()["learnings"]] == ["user_profile"]
        kinds = await api.get("/api/learnings", params={"kind": "learned_knowledge"})
        assert [x["learning_id"] for x in kinds.json()["learnings"]] == [ids["insight"]]
        queue = (await api.get("/api/proposals")).json()["learnings"]
        assert {x["learning_id"] for x in queue} == {ids["veggie"], ids["seat"], ids["insight"]}
        mine = (await api.get("/api/proposals", params={"user_id": "ada"})).json()["learnings"]
        assert {x["learning_id"] for x in mine} == {ids["veggie"], ids["seat"]}

        assert (await api.get("/api/openapi.json")).json()["info"]["title"] == "kern console"


async def test_changes(seeded: tuple[AsyncBaseDb, Any], client: Any, kit: ModuleType) -> None:
    db, data = seeded
    ids = data.ids
    async with client(create_app(db=db, token=kit.TOKEN), headers=kit.BEARER) as api:
        approved = await api.post(f"/api/proposals/{ids['veggie']}/approve")
        assert approved.status_code == 200, approved.text
        body = approved.json()
        assert body["action"] == "approved" and body["learning"] is None
        assert body["memory"]["content"] == "Ada is vegetarian"
        assert body["memory"]["memory_id"] == ids["veggie"]
        rejected = (await api.post(f"/api/proposals/{ids['seat']}/reject")).json()
        assert rejected["action"] == "rejected"
        assert rejected["learning"]["status"] == "rejected"
        insight = (await api.post(f"/api/proposals/{ids['insight']}/approve")).json()
        assert insight["learning"]["status"] == "active"

        # decided already: 409; unknown: 404; both with kern's message
        again = await api.post(f"/api/proposals/{ids['seat']}/approve")
        assert again.status_code == 409 and "rejected, not proposed" in again.json()["detail"]
        unknown = await api.post("/api/proposals/nope/reject")
        assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]
        assert (await api.get("/api/proposals")).json()["learnings"] == []

        found = (await api.get("/api/users/ada/memories", params={"q": "vegetarian"})).json()
        assert found["memories"][0]["memory"]["content"] == "Ada is vegetarian"
        seat = await db.get_learning(ids["seat"])
        assert seat is not None and seat.status is LearningStatus.REJECTED

        receipt = await api.post("/api/users/ada/forget")
        assert receipt.status_code == 200, receipt.text
        deleted = receipt.json()["deleted"]
        assert deleted["sessions"] == 3  # the chat, the team's and the marker
        assert deleted["runs"] == 6
        assert deleted["memories"] == 3
        assert deleted["learnings"] == 2  # the profile and the rejected proposal
        assert receipt.json()["total"] == sum(deleted.values())
        assert await db.list_memories("ada") == []
        left = (await api.get("/api/sessions")).json()["sessions"]
        assert [s["session_id"] for s in left] == [ids["bob"]]
        assert (await api.get("/api/users/bob/memories")).json()["memories"] != []
