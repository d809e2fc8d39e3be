"""The console's fixtures: a seeded database, an in-process client, a live server, chromium.

API tests drive the ASGI app in-process (``httpx2.ASGITransport``) on an async Db of any
backend (``backend_url`` from tests/conftest.py); browser tests start uvicorn in a thread on
a free port and drive Debian's chromium with Playwright (never a browser of its own: no
chromium means a skip naming ``apt-get install chromium``, and a failure under ``CI=true``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from types import ModuleType
from typing import Any

import httpx2
import pytest
import uvicorn

from kern.console import create_app
from kern.console.context import open_async
from kern.db import AsyncBaseDb
from kern.learn.background import MARKER_COMPONENT
from kern.records import (
    Learning,
    LearningStatus,
    Memory,
    Message,
    Run,
    Session,
    SessionType,
    ToolCall,
    utcnow,
)

TOKEN = "test-token-" + "x" * 32
BEARER = {"Authorization": f"Bearer {TOKEN}"}
#: Stored text that must show as text, never as markup.
XSS_IMG = "<img src=x onerror=\"alert(1);document.title='pwned'\"> Mallory's note"
XSS_SCRIPT = "<script>document.title='pwned'</script>"


@dataclass
class Seeded:
    """The ids a test asserts on."""

    ids: dict[str, str] = field(default_factory=dict)


async def seed(db: AsyncBaseDb) -> Seeded:
    """Sessions (one a team's, with member runs stored before their leader's), a marker
    session, memories (one holding markup), a profile and proposals, through kern's API."""
    seeded = Seeded()
    t0 = utcnow() - timedelta(hours=1)
    chat = await db.upsert_session(
        Session(user_id="ada", component_id="helper", name="dinner", updated_at=t0),
        expected_version=None,
    )
    seeded.ids["chat"] = chat.session_id
    for n in range(3):
        await db.append_run(
            Run(
                session_id=chat.session_id,
                user_id="ada",
                component_id="helper",
                input=f"question {n}",
                messages=[
                    Message(role="user", content=f"question {n} {XSS_SCRIPT}"),
                    Message(role="assistant", content=f"answer {n}"),
                ],
                output=f"answer {n}",
            )
        )
    team = await db.upsert_session(
        Session(user_id="ada", session_type=SessionType.TEAM, component_id="trip-crew"),
        expected_version=None,
    )
    seeded.ids["team"] = team.session_id
    ask = "Plan a weekend in Lisbon for me"
    leader = Run(session_id=team.session_id, user_id="ada", component_id="trip-crew", input=ask)
    seeded.ids["leader"] = leader.run_id
    work = {
        "researcher": ("search", '{"q": "Lisbon weekend"}', "Alfama, Belem, LX Factory"),
        "writer": ("draft", '{"days": 2}', "Saturday: Alfama. Sunday: Belem."),
    }
    for name, (tool, arguments, result) in work.items():
        member = await db.append_run(
            Run(
                session_id=team.session_id,
                parent_run_id=leader.run_id,
                component_id=name,
                input=ask,
                messages=[
                    Message(
                        role="assistant",
                        tool_calls=[ToolCall(id="c1", name=tool, arguments=arguments)],
                    ),
                    Message(role="tool", tool_call_id="c1", name=tool, content=result),
                    Message(role="assistant", content=f"{name} done: {result}"),
                ],
            )
        )
        seeded.ids[name] = member.run_id
    answer = "Saturday in Alfama, Sunday in Belem; no peanuts at dinner."
    await db.append_run(
        leader.model_copy(
            update={
                "messages": [
                    Message(role="user", content=ask),
                    Message(role="assistant", content=answer),
                ],
                "output": answer,
            }
        )
    )
    bob = await db.upsert_session(Session(user_id="bob"), expected_version=None)
    seeded.ids["bob"] = bob.session_id
    marker = await db.upsert_session(
        Session(
            session_id="kern.learning.pending.r1", component_id=MARKER_COMPONENT, user_id="ada"
        ),
        expected_version=None,
    )
    seeded.ids["marker"] = marker.session_id
    for content in ("Ada likes green tea", "Ada plays chess on Sundays"):
        await db.upsert_memory(Memory(user_id="ada", content=content, topics=["likes"]))
    await db.upsert_memory(Memory(user_id="bob", content="Bob likes black coffee"))
    await db.upsert_memory(Memory(user_id="mallory", content=XSS_IMG))
    await db.upsert_learning(
        Learning(kind="user_profile", namespace="user", user_id="ada", content={"name": "Ada"})
    )
    for key, text in (("veggie", "Ada is vegetarian"), ("seat", "Ada likes aisle seats")):
        proposal = await db.upsert_learning(
            Learning(
                kind="user_memory",
                namespace="user",
                user_id="ada",
                content={"content": text, "topics": ["health"]},
                status=LearningStatus.PROPOSED,
            )
        )
        seeded.ids[key] = proposal.learning_id
    insight = await db.upsert_learning(
        Learning(
            kind="learned_knowledge",
            content={"title": "Units", "learning": "Ask which units"},
            status=LearningStatus.PROPOSED,
        )
    )
    seeded.ids["insight"] = insight.learning_id
    return seeded


Client = Callable[..., httpx2.AsyncClient]


@pytest.fixture(scope="session")
def kit() -> ModuleType:
    """This module: its constants, ``seed`` and ``LiveServer`` for the tests (a test module
    cannot import a conftest under --import-mode=importlib)."""
    return sys.modules[__name__]


@pytest.fixture
def client() -> Client:
    """``client(app, **kwargs)``: an in-process HTTP client of the app (no lifespan)."""

    def make(app: Any, **kwargs: Any) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://console.test", **kwargs
        )

    return make


@pytest.fixture
async def sqlite_db(backend_url: Callable[[str], str]) -> AsyncIterator[AsyncBaseDb]:
    db = open_async(backend_url("sqlite"))
    try:
        yield db
    finally:
        await db.close()


# -- a live server and a browser ----------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """The console under uvicorn in a thread of this process, on a free port."""

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        app = create_app(url=url, token=TOKEN, read_only=read_only)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the console did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def chromium() -> str:
    """Debian's chromium, or a skip saying how to install it (a failure under CI=true)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "no chromium for the browser tests: apt-get install chromium"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless chromium driven by Playwright (module-wide: it takes a second to start)."""
    from playwright.sync_api import sync_playwright

    path = chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, headless=True)
        try:
            yield launched
        finally:
            launched.close()


def run(coroutine: Any) -> Any:
    """Run a coroutine to completion from a sync test: on a loop of its own, in a thread
    (Playwright's sync API keeps a loop running in this one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
