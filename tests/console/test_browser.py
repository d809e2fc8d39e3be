"""The console in a real browser: Debian's chromium, headless, driven by Playwright.

The console runs under uvicorn (in a thread, and as ``kern serve --read-only`` in a child
process) on a SQLite file that an agent in propose mode writes to through the scripted
model server. Approving a proposal in the browser puts it into the agent's next turn;
a rejected one never gets there. ``KERN_CONSOLE_SCREENSHOTS=docs`` saves the screenshots
of docs/console.md into that folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx2
import pytest

from kern.agent import Agent
from kern.console.context import open_async
from kern.db.sqlite import SqliteDb
from kern.learn import LearningMachine
from kern.models.openai import OpenAIChat
from kern.records import LearningStatus
from kern.testing.scripted_server import Reply, ScriptedServer, ToolCallReply

SHOTS = os.environ.get("KERN_CONSOLE_SCREENSHOTS")
PEANUTS = "Ada is allergic to peanuts"
CELLO = "Ada plays the cello on Sunday mornings"


def screenshot(page: Any, name: str) -> None:
    """Save ``docs/console-<name>.png`` (into ``$KERN_CONSOLE_SCREENSHOTS``) when asked."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"console-{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def console_db(tmp_path_factory: pytest.TempPathFactory, kit: ModuleType) -> tuple[Path, Any]:
    """A SQLite file seeded through kern's API, and the ids of what was seeded."""
    path = tmp_path_factory.mktemp("console") / "kern.db"

    async def fill() -> Any:
        db = open_async(f"sqlite:///{path}")
        try:
            return await kit.seed(db)
        finally:
            await db.close()

    return path, kit.run(fill())


@pytest.fixture(scope="module")
def server(console_db: tuple[Path, Any], kit: ModuleType) -> Iterator[Any]:
    with kit.LiveServer(f"sqlite:///{console_db[0]}") as live:
        yield live


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    try:
        yield opened
    finally:
        context.close()


def log_in(page: Any, base: str, path: str, token: str) -> None:
    """Open ``path``: refused (401) with the login form, which returns there."""
    response = page.goto(base + path)
    assert response.status == 401
    page.fill("input[name=token]", token)
    page.click("button:has-text('Log in')")
    page.wait_for_url(base + path)


def test_approved_proposal_reaches_the_next_turn_and_rejected_never(
    page: Any, server: Any, console_db: tuple[Path, Any], scripted: ScriptedServer, kit: ModuleType
) -> None:
    path, _ = console_db
    model = OpenAIChat(id="scripted", base_url=scripted.base_url, api_key="test")
    agent = Agent(
        model=model,
        db=SqliteDb(db_file=path),
        agent_id="helper",
        user_id="ada",
        learning=LearningMachine(mode="propose"),
    )
    memories = [{"content": PEANUTS}, {"content": CELLO}]
    scripted.script(
        Reply.text("Noted: no peanuts, and Sunday mornings are for the cello."),
        Reply.tool_calls(ToolCallReply("save_user_memories", {"memories": memories})),
    )
    first = agent.run("I'm allergic to peanuts, and I play the cello on Sunday mornings.")
    lm = agent.get_learning_machine()
    made = [p for p in lm.pending(user_id="ada") if p.source_run_id == first.run_id]
    queued = {str(p.content["content"]): p.learning_id for p in made}
    assert set(queued) == {PEANUTS, CELLO}

    log_in(page, server.base, "/proposals", kit.TOKEN)
    peanuts = page.locator(f"#proposal-{queued[PEANUTS]}")
    cello = page.locator(f"#proposal-{queued[CELLO]}")
    assert peanuts.is_visible() and cello.is_visible()
    screenshot(page, "proposals")

    peanuts.get_by_role("button", name="Approve").click()
    peanuts.locator("p.decision").filter(has_text="approved").wait_for()
    cello.get_by_role("button", name="Reject").click()
    cello.locator("p.decision").filter(has_text="rejected").wait_for()
    page.reload()
    assert page.locator(f"#proposal-{queued[PEANUTS]}").count() == 0
    assert page.locator(f"#proposal-{queued[CELLO]}").count() == 0

    # the next turn: the approved memory is in what the model receives, the rejected not
    seen = len(scripted.chat_requests())
    scripted.script(Reply.text("Dinner without peanuts."), Reply.text("nothing"))
    agent.run("Plan a dinner for me on Sunday.")
    request = scripted.chat_requests()[seen]
    system = "\n".join(m["content"] or "" for m in request["messages"] if m["role"] == "system")
    assert PEANUTS in system
    assert "cello" not in json.dumps(request).casefold()
    rejected = lm.pending(user_id="ada")
    assert queued[CELLO] not in [p.learning_id for p in rejected]
    stored = SqliteDb(db_file=path)
    try:
        cello_row = stored.get_learning(queued[CELLO])
        assert cello_row is not None and cello_row.status is LearningStatus.REJECTED
        assert [m.content for m in stored.list_memories("ada") if "cello" in m.content] == []
    finally:
        stored.close()

    page.goto(f"{server.base}/sessions/{first.session_id}")
    assert page.get_by_text("Dinner without peanuts.").is_visible()
    page.goto(f"{server.base}/sessions/{console_db[1].ids['team']}")
    assert page.locator("article.run.nested").count() == 2
    screenshot(page, "session")
    page.goto(f"{server.base}/users/ada")
    assert page.locator("ul.memories li").first.inner_text().startswith(PEANUTS)
    screenshot(page, "user")
    page.get_by_role("searchbox").fill("green tea")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/users/ada?q=green+tea*")
    assert page.locator("ul.memories li").first.inner_text().startswith("Ada likes green tea")


def test_a_memory_holding_markup_renders_inert(page: Any, server: Any, kit: ModuleType) -> None:
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    log_in(page, server.base, "/users/mallory", kit.TOKEN)
    memory = page.locator("ul.memories li .content")
    assert memory.inner_text() == kit.XSS_IMG  # the markup, as text
    assert memory.get_by_text(kit.XSS_IMG, exact=True).is_visible()
    assert page.locator("main img").count() == 0
    page.goto(f"{server.base}/sessions?user=ada")
    page.locator("a.id").last.click()
    page.get_by_text("question 0 <script>", exact=False).wait_for()
    assert page.locator("main script").count() == 0
    page.wait_for_timeout(200)  # an onerror or a script would have run by now
    assert dialogs == []
    assert "pwned" not in page.title()


def test_a_request_without_the_token_is_refused(page: Any, server: Any) -> None:
    for path in ("/api/sessions", "/api/users/ada/memories", "/api/openapi.json"):
        assert page.goto(server.base + path).status == 401
        assert "Authorization: Bearer" in page.inner_text("body")
    response = page.goto(server.base + "/users/ada")
    assert response.status == 401
    assert page.locator("input[name=token]").is_visible()
    assert "green tea" not in page.content()
    forged = page.request.post(f"{server.base}/api/users/ada/forget")
    assert forged.status == 401
    wrong = page.request.get(
        f"{server.base}/api/sessions", headers={"Authorization": "Bearer wrong-token"}
    )
    assert wrong.status == 401


@pytest.fixture(scope="module")
def read_only_server(console_db: tuple[Path, Any], kit: ModuleType) -> Iterator[str]:
    """``kern serve --read-only`` in a child process, as a person starts it."""
    port = kit.free_port()
    env = {**os.environ, "KERN_CONSOLE_TOKEN": kit.TOKEN}
    url = f"sqlite:///{console_db[0]}"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kern.cli",
            "serve",
            "--db",
            url,
            "--port",
            str(port),
            "--read-only",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == f"kern console on {base}/"
        assert "KERN_CONSOLE_TOKEN" in child.stdout.readline()  # the token is not printed
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx2.get(f"{base}/api/health", headers=kit.BEARER).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert child.poll() is None and time.monotonic() < deadline, "kern serve failed"
            time.sleep(0.05)
        yield base
    finally:
        child.terminate()
        child.wait(10)


def test_read_only_mode_refuses_a_change(
    page: Any, read_only_server: str, console_db: tuple[Path, Any], kit: ModuleType
) -> None:
    ids = console_db[1].ids
    log_in(page, read_only_server, "/proposals", kit.TOKEN)
    assert page.get_by_role("status").first.inner_text().startswith("Read-only")
    proposal = page.locator(f"#proposal-{ids['insight']}")
    assert proposal.is_visible()
    assert proposal.get_by_role("button").count() == 0  # no Approve, no Reject
    # the change asked for anyway, as the page's own script would: refused, and said why
    refused = page.evaluate(
        """async (url) => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const r = await fetch(url, {method: "POST", headers: {"X-CSRF-Token": csrf}});
            return [r.status, (await r.json()).detail];
        }""",
        f"/api/proposals/{ids['insight']}/approve",
    )
    assert refused[0] == 403 and "read-only" in refused[1]
    page.goto(f"{read_only_server}/forget/bob")
    assert page.locator("input[name=confirm]").count() == 0
    stored = SqliteDb(db_file=console_db[0])
    try:
        insight = stored.get_learning(ids["insight"])
        assert insight is not None and insight.status is LearningStatus.PROPOSED
        assert stored.list_memories("bob") != []
    finally:
        stored.close()
