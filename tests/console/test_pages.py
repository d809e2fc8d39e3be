"""The console's pages as HTML, in-process on SQLite: what they show, what they escape,
how a transcript pages, and forgetting a user with its confirmation."""

from __future__ import annotations

import re
from types import ModuleType
from typing import Any

from kern.console import create_app
from kern.console.auth import COOKIE, Keys
from kern.db import AsyncBaseDb
from kern.performers import arun_turn
from kern.reading import runs_page
from kern.records import Run


async def test_pages_show_the_data_escaped(
    sqlite_db: AsyncBaseDb, client: Any, kit: ModuleType
) -> None:
    ids = (await kit.seed(sqlite_db)).ids
    async with client(create_app(db=sqlite_db, token=kit.TOKEN), headers=kit.BEARER) as web:
        sessions = (await web.get("/sessions")).text
        for key in ("chat", "team", "bob"):
            assert ids[key] in sessions
        assert "kern.learning.pending" not in sessions  # the marker is kern's bookkeeping
        teams = (await web.get("/sessions", params={"type": "team"})).text
        assert ids["team"] in teams and ids["chat"] not in teams

        chat = (await web.get(f"/sessions/{ids['chat']}")).text
        assert "question 2 &lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in chat
        assert "<script>document" not in chat
        assert chat.count('class="run"') == 3

        team = (await web.get(f"/sessions/{ids['team']}")).text
        leader = team.index(f'id="run-{ids["leader"]}"')
        members = [team.index(f'id="run-{ids[name]}"') for name in ("researcher", "writer")]
        assert leader < members[0] < members[1] < team.index("Sunday in Belem; no peanuts")
        assert team.count('class="run nested"') == 2
        assert "search({&#34;q&#34;: &#34;Lisbon weekend&#34;})" in team

        mallory = (await web.get("/users/mallory")).text
        assert "&lt;img src=x onerror=&#34;alert(1);document.title=" in mallory
        assert "<img" not in mallory

        ada = (await web.get("/users/ada")).text
        assert re.search(r"<dt>name</dt><dd>Ada</dd>", ada)
        assert ada.index("Ada plays chess on Sundays") < ada.index("Ada likes green tea")
        assert "user_profile" in ada
        found = (await web.get("/users/ada", params={"q": "green tea"})).text
        assert "Ada likes green tea" in found and "score" in found

        queue = (await web.get("/proposals")).text
        for key in ("veggie", "seat", "insight"):
            assert f'id="proposal-{ids[key]}"' in queue
        mine = (await web.get("/proposals", params={"user": "ada"})).text
        assert ids["insight"] not in mine


async def test_forgetting_a_user_asks_for_the_id_and_shows_a_receipt(
    sqlite_db: AsyncBaseDb, client: Any, kit: ModuleType
) -> None:
    await kit.seed(sqlite_db)
    csrf = Keys(kit.TOKEN).csrf
    app = create_app(db=sqlite_db, token=kit.TOKEN)
    async with client(app, cookies={COOKIE: Keys(kit.TOKEN).cookie}) as browser:
        confirm = (await browser.get("/forget/ada")).text
        assert 'name="confirm"' in confirm and f'value="{csrf}"' in confirm

        wrong = await browser.post("/forget/ada", data={"csrf": csrf, "confirm": "ad"})
        assert wrong.status_code == 400 and "nothing was deleted" in wrong.text
        assert len(await sqlite_db.list_memories("ada")) == 2

        done = await browser.post("/forget/ada", data={"csrf": csrf, "confirm": "ada"})
        assert done.status_code == 200
        # 3 sessions (the marker too), 6 runs, 2 memories, the profile and two proposals
        assert "14 rows deleted" in done.text
        assert re.search(r"<td>runs</td><td class=\"num\">6</td>", done.text)
        assert await sqlite_db.list_memories("ada") == []
        assert await sqlite_db.list_sessions(user_id="ada") == []
        assert len(await sqlite_db.list_memories("bob")) == 1


async def test_a_transcript_pages_by_seq_and_keeps_nested_runs_with_their_turn(
    sqlite_db: AsyncBaseDb, client: Any, kit: ModuleType
) -> None:
    """Seqs 1-3 plain turns; 4-5 a team's members and 6 their leader; 7 a workflow with
    its steps 8-9; 10-12 plain turns."""
    session = "s-long"

    async def append(parent: str | None = None, **fields: Any) -> Run:
        return await sqlite_db.append_run(
            Run(session_id=session, parent_run_id=parent, input="turn", **fields)
        )

    for _ in range(3):
        await append()
    leader = Run(session_id=session, input="team")
    await append(leader.run_id)
    await append(leader.run_id)
    await sqlite_db.append_run(leader)
    flow = await append()
    await append(flow.run_id)
    await append(flow.run_id)
    for _ in range(3):
        await append()

    def seqs(runs: list[Run]) -> list[int | None]:
        return [run.seq for run in runs]

    newest, older = await arun_turn(runs_page(session, limit=3), sqlite_db)
    assert seqs(newest) == [10, 11, 12] and older == 10
    # the page cut the workflow off its steps: it is read with them
    steps, older = await arun_turn(runs_page(session, limit=2, before_seq=10), sqlite_db)
    assert seqs(steps) == [7, 8, 9] and older == 7
    # the page holds the leader: its members, stored before it, come with it
    team, older = await arun_turn(runs_page(session, limit=1, before_seq=7), sqlite_db)
    assert seqs(team) == [4, 5, 6] and older == 4
    # members whose leader is newer than the page stay on their page
    members, older = await arun_turn(runs_page(session, limit=2, before_seq=6), sqlite_db)
    assert seqs(members) == [4, 5] and older == 4
    first, older = await arun_turn(runs_page(session, limit=10, before_seq=4), sqlite_db)
    assert seqs(first) == [1, 2, 3] and older is None
    everything, older = await arun_turn(runs_page(session, limit=100), sqlite_db)
    assert len(everything) == 12 and older is None

    async with client(create_app(db=sqlite_db, token=kit.TOKEN), headers=kit.BEARER) as web:
        page = await web.get(f"/sessions/{session}", params={"before": 10, "limit": 2})
        assert page.text.count('class="run nested"') == 2
        assert f'href="/sessions/{session}?before=7&amp;limit=2">Older runs' in page.text
        assert f'href="/sessions/{session}?before=12&amp;limit=2">Newer runs' in page.text
        api = (await web.get(f"/api/sessions/{session}", params={"limit": 1})).json()
        assert [tree["run"]["seq"] for tree in api["runs"]] == [12] and api["older"] == 12
        assert api["session"] is None  # runs without a session row are still shown
