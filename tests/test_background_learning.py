"""Background learning: the answer is out before the extraction reaches the model, and a
run whose learning did not finish (a crash, a SIGKILL) is finished by the next process,
exactly once, even when two processes resume at the same moment.

The marker and its claim on every backend, sync and async, are in ``kern.testing.learning``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from kern.agent import Agent
from kern.db import connect
from kern.db.base import BaseDb
from kern.db.sqlite import AsyncSqliteDb, SqliteDb
from kern.effects import Turn
from kern.learn import LearningMachine, LearningScope, UserMemoryStore
from kern.learn.background import MARKER_COMPONENT, claimable, marker_id
from kern.models.base import Model
from kern.models.openai import OpenAIChat
from kern.performers import run_turn
from kern.records import Run, Session
from kern.testing.learning import extract, memories
from kern.testing.scripted_server import Reply, ScriptedServer, ToolCallReply, request_messages

SLOW = 1.5  # the extraction's delay: far longer than a turn, even on a loaded machine
FACT = "Ada likes tea."


def background_agent(model: OpenAIChat, db: Any, **kwargs: Any) -> Agent:
    return Agent(
        model=model, db=db, learning=LearningMachine(background=True), user_id="ada", **kwargs
    )


def machine_of(agent: Agent) -> LearningMachine:
    assert agent.learning is not None
    return agent.learning


def contents(db: BaseDb, user: str = "ada") -> list[str]:
    return sorted(m.content for m in db.list_memories(user))


def markers(db: BaseDb) -> list[Session]:
    return db.list_sessions(component_id=MARKER_COMPONENT, limit=100)


def tools_of(body: dict[str, Any]) -> list[str]:
    return [tool["function"]["name"] for tool in body.get("tools") or []]


def extraction_replies(answer: Callable[[dict[str, Any]], Reply | str], delay: float = 0.0):
    """A responder for turns whose extraction runs alongside other model calls (so the
    order of requests is not known): an extraction learns FACT from a turn that says
    "tea" and nothing from others; every other request gets ``answer(body)``."""

    def respond(body: dict[str, Any]) -> Reply | str:
        if "save_user_memories" not in tools_of(body):
            return answer(body)
        if "tea" in json.dumps(request_messages(body)[-1]):
            return extract(memories(FACT)).after(delay)
        return Reply.text("nothing")

    return respond


# -- the answer first ----------------------------------------------------------------------


def test_a_sync_turn_answers_before_the_extraction_is_answered(
    scripted: ScriptedServer, model: OpenAIChat, db_file: Path
):
    db = SqliteDb(db_file=db_file)
    agent = background_agent(model, db)
    scripted.script(Reply.text("Hi Ada."), extract(memories(FACT)).after(SLOW))

    started = time.perf_counter()
    output = agent.run("I'm Ada and I like tea.")
    elapsed = time.perf_counter() - started

    assert output.content == "Hi Ada."
    assert elapsed < SLOW  # the extraction's answer had not come yet
    assert contents(db) == []
    assert scripted.pending == 0 or len(scripted.chat_requests()) == 1
    # Before the answer was returned, the run's learning was marked pending in the db.
    [marker] = markers(db)
    assert marker.session_id == marker_id(output.run_id)
    assert marker.state["run_id"] == output.run_id and marker.user_id == "ada"
    assert db.get_run(output.run_id) is not None

    assert machine_of(agent).wait(timeout=10)
    assert contents(db) == [FACT]
    assert db.list_memories("ada")[0].source_run_id == output.run_id
    assert markers(db) == []
    assert len(scripted.chat_requests()) == 2


def test_a_streamed_turn_sends_its_last_event_before_the_extraction_is_answered(
    scripted: ScriptedServer, model: OpenAIChat, db_file: Path
):
    db = SqliteDb(db_file=db_file)
    agent = background_agent(model, db)
    scripted.script(Reply.text("Hi Ada."), extract(memories(FACT)).after(SLOW))

    started = time.perf_counter()
    events = list(agent.run("I'm Ada and I like tea.", stream=True))
    elapsed = time.perf_counter() - started

    assert events[-1].event == "completed" and events[-1].output.content == "Hi Ada."
    assert elapsed < SLOW and contents(db) == []
    assert machine_of(agent).wait(timeout=10)
    assert contents(db) == [FACT]


async def test_an_async_turn_answers_before_the_extraction_is_answered(
    scripted: ScriptedServer, model: OpenAIChat, db_file: Path
):
    db = AsyncSqliteDb(db_file=db_file)
    agent = background_agent(model, db)
    scripted.script(Reply.text("Hi Ada."), extract(memories(FACT)).after(SLOW))
    try:
        started = time.perf_counter()
        output = await agent.arun("I'm Ada and I like tea.")
        assert time.perf_counter() - started < SLOW
        assert await db.list_memories("ada") == []
        assert await db.get_session(marker_id(output.run_id)) is not None

        # Streamed: the last event too (once the first extraction has been asked for).
        while len(scripted.chat_requests()) < 2:
            await asyncio.sleep(0.01)
        scripted.script(Reply.text("Noted."), extract(memories("Ada sails.")).after(SLOW))
        started = time.perf_counter()
        events = [event async for event in await agent.arun("I sail.", stream=True)]
        assert events[-1].event == "completed"
        assert time.perf_counter() - started < SLOW

        assert await machine_of(agent).await_pending(timeout=10)
        stored = sorted(m.content for m in await db.list_memories("ada"))
        assert stored == sorted(["Ada sails.", FACT])
        assert await db.list_sessions(component_id=MARKER_COMPONENT) == []
    finally:
        await db.close()


def test_the_default_machine_still_learns_in_the_turn(
    scripted: ScriptedServer, model: OpenAIChat, db_file: Path
):
    db = SqliteDb(db_file=db_file)
    agent = Agent(model=model, db=db, learning=True, user_id="ada")
    scripted.script(Reply.text("Hi Ada."), extract(memories(FACT)))
    output = agent.run("I like tea.")
    assert contents(db) == [FACT] and markers(db) == []
    assert output.metrics["extraction"]["calls"] == 1


def test_a_team_member_learns_in_the_background_too(
    scripted: ScriptedServer, model: OpenAIChat, db_file: Path
):
    from kern.team import Team

    def answer(body: dict[str, Any]) -> Reply | str:
        if "delegate_to_helper" not in tools_of(body):
            return "Done."  # the member
        if request_messages(body)[-1]["role"] == "tool":
            return "The helper noted it."
        return Reply.tool_calls(ToolCallReply("delegate_to_helper", {"task": "Ada likes tea."}))

    db = SqliteDb(db_file=db_file)
    member = Agent(
        model=model, name="helper", learning=LearningMachine(background=True), user_id="ada"
    )
    team = Team(model=model, db=db, members=[member], user_id="ada")
    scripted.responder = extraction_replies(answer, delay=SLOW)
    try:
        started = time.perf_counter()
        output = team.run("Please remember I like tea.")
        assert output.content == "The helper noted it."
        assert time.perf_counter() - started < SLOW
        assert machine_of(member).wait(timeout=10)
    finally:
        scripted.responder = None
    assert contents(db) == [FACT]


# -- failures stay in the background ---------------------------------------------------------


class FailingStore(UserMemoryStore):
    """A memory store whose writes fail."""

    def process(
        self, scope: LearningScope, run: Run, model: Model, extracted: Sequence[BaseModel] = ()
    ) -> Turn[None]:
        raise RuntimeError("the store is broken")
        yield  # pragma: no cover


def test_a_failure_in_background_learning_is_logged_not_raised(
    scripted: ScriptedServer,
    model: OpenAIChat,
    db_file: Path,
    caplog: pytest.LogCaptureFixture,
):
    db = SqliteDb(db_file=db_file)
    lm = LearningMachine(background=True, user_memory=FailingStore(), user_profile=False)
    agent = Agent(model=model, db=db, learning=lm, user_id="ada")
    scripted.script(Reply.text("Hi."), extract(memories(FACT)), Reply.text("Again."))
    with caplog.at_level(logging.ERROR, logger="kern.learn"):
        assert agent.run("I like tea.").content == "Hi."
        assert lm.wait(timeout=10)
        assert agent.run("Hello?").content == "Again."  # the next turn is not hurt
        assert lm.wait(timeout=10)
    assert "background learning failed" in caplog.text
    assert "the store is broken" in caplog.text
    # The run stays pending for a later resume.
    assert [m.state["run_id"] for m in markers(db)]


def test_a_failed_extraction_keeps_the_run_pending_for_a_later_resume(
    scripted: ScriptedServer, model: OpenAIChat, db_file: Path
):
    db = SqliteDb(db_file=db_file)
    agent = background_agent(model, db)
    scripted.script(Reply.text("Hi Ada."), Reply.error(500))
    output = agent.run("I like tea.")
    lm = machine_of(agent)
    assert lm.wait(timeout=10)
    assert contents(db) == [] and [m.state["run_id"] for m in markers(db)] == [output.run_id]

    scripted.script(extract(memories(FACT)))
    assert agent.get_learning_machine().resume_pending() == 1
    assert contents(db) == [FACT] and markers(db) == []


# -- the marker and its claim ----------------------------------------------------------------


def marker_state(**changes: Any) -> Session:
    state: dict[str, Any] = {
        "run_id": "r1",
        "owner": "another-process",
        "host": socket.gethostname(),
        "pid": os.getppid(),  # alive: the process that started this test run
        "lease_until": time.time() + 60,
        "claims": 1,
    }
    state.update(changes)
    return Session(session_id=marker_id("r1"), component_id=MARKER_COMPONENT, state=state)


def test_who_may_claim_a_marker():
    assert not claimable(marker_state())  # a live owner within its lease
    assert claimable(marker_state(lease_until=time.time() - 1))  # the lease ran out
    assert not claimable(marker_state(host="elsewhere"))  # another host: trust the lease
    assert claimable(marker_state(pid=os.getpid()))  # this pid, another token: it restarted
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert claimable(marker_state(pid=dead.pid))  # its owner is gone


def test_a_resumed_restatement_is_not_stored_twice(
    scripted: ScriptedServer, model: OpenAIChat, db_file: Path
):
    """The one window the claim cannot close (a holder that dies after writing, before
    removing the marker) is closed by the stores: a restated memory is refreshed."""
    db = SqliteDb(db_file=db_file)
    lm = LearningMachine(model=model, db=db, user_profile=False)
    scope = LearningScope("ada", "s1", None, "r1", "sqlite")
    run = Run(run_id="r1", session_id="s1", user_id="ada", input="I like tea.", output="Hi.")
    for _ in range(2):  # the same extraction, twice
        scripted.script(extract(memories(FACT)))
        run_turn(lm.process(scope, run, model), db)
    assert contents(db) == [FACT]
    assert len(scripted.chat_requests()) == 2


# -- crashes and other processes ---------------------------------------------------------------

_CRASHING_TURN = """
import json, sys, time
from kern.agent import Agent
from kern.db import connect
from kern.learn import LearningMachine
from kern.models.openai import OpenAIChat

url, base_url = sys.argv[1:3]
model = OpenAIChat(id="scripted", base_url=base_url, api_key="test")
agent = Agent(model=model, db=connect(url), learning=LearningMachine(background=True))
output = agent.run("I'm Ada and I like tea.", user_id="ada")
print(json.dumps({"run_id": output.run_id}), flush=True)
time.sleep(60)  # SIGKILLed here, while the extraction waits for the model
"""

_RESUME = """
import json, sys, time
from kern.db import connect
from kern.learn import LearningMachine
from kern.models.openai import OpenAIChat

url, base_url, start = sys.argv[1:4]
model = OpenAIChat(id="scripted", base_url=base_url, api_key="test")
lm = LearningMachine(background=True, model=model, db=connect(url))
time.sleep(max(0.0, float(start) - time.time()))  # both processes start together
print(json.dumps({"finished": lm.resume_pending()}), flush=True)
"""

POSTGRES_URL = os.environ.get(
    "KERN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throwaway database on the Postgres server the plugin's tests use, if one runs."""
    psycopg = pytest.importorskip("psycopg")
    from sqlalchemy.engine import make_url

    name = f"kern_test_bg_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no Postgres server at {POSTGRES_URL} ({exc}); set KERN_TEST_POSTGRES_URL")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, db_file: Path) -> str:
    """Where the processes of a crash test meet: a SQLite file, or a Postgres database."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite:///{db_file}"


def answered_requests(scripted: ScriptedServer) -> list[dict[str, Any]]:
    """The model requests received whole: a process killed while it sent one leaves a
    request without its body, recorded whenever the server gets to it."""
    return [body for body in scripted.chat_requests() if isinstance(body, dict)]


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "KERN_"))}


def crash_after_the_answer(url: str, scripted: ScriptedServer) -> str:
    """A process answers a turn with background learning and is SIGKILLed before the
    extraction is answered; returns the run's id."""
    scripted.script(Reply.text("Hi Ada."), extract(memories(FACT)).after(3))
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_TURN, url, scripted.base_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, child.stderr.read() if child.stderr else ""
        run_id: str = json.loads(line)["run_id"]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    return run_id


def resume_in_processes(
    url: str, scripted: ScriptedServer, count: int, start_in: float = 0.0
) -> list[int]:
    """``lm.resume_pending()`` in ``count`` new processes that start it at the same
    moment; what each returned."""
    start = str(time.time() + start_in)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _RESUME, url, scripted.base_url, start],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for _ in range(count)
    ]
    finished = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        finished.append(json.loads(out.strip().splitlines()[-1])["finished"])
    return finished


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_run_killed_before_its_extraction_is_learned_once_by_the_next_process(
    scripted: ScriptedServer, model: OpenAIChat, db_url: str
):
    run_id = crash_after_the_answer(db_url, scripted)
    db = connect(db_url)
    try:
        assert db.get_run(run_id) is not None  # the answer was stored
        assert contents(db) == []  # its learning was not
        assert [m.state["run_id"] for m in markers(db)] == [run_id]

        # The next process's first turn finishes it, in the background.
        scripted.clear()
        scripted.responder = extraction_replies(lambda body: "Hello again.")
        try:
            agent = background_agent(model, db)
            assert agent.run("Hello?").content == "Hello again."
            assert machine_of(agent).wait(timeout=10)
        finally:
            scripted.responder = None
        assert len(answered_requests(scripted)) == 3  # the answer, its extraction, the resumed
        assert contents(db) == [FACT]
        assert db.list_memories("ada")[0].source_run_id == run_id
        assert markers(db) == []
        assert agent.get_learning_machine().resume_pending() == 0  # nothing is left
    finally:
        db.close()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_two_processes_resuming_at_once_learn_a_killed_run_once(
    scripted: ScriptedServer, db_url: str
):
    run_id = crash_after_the_answer(db_url, scripted)
    scripted.clear()
    scripted.script(extract(memories(FACT)), extract(memories(FACT)))
    assert sorted(resume_in_processes(db_url, scripted, 2, start_in=2.0)) == [0, 1]
    assert len(answered_requests(scripted)) == 1  # one extraction, by the one that claimed
    db = connect(db_url)
    try:
        assert contents(db) == [FACT]
        assert db.list_memories("ada")[0].source_run_id == run_id
        assert markers(db) == []
    finally:
        db.close()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")
def test_a_run_taken_over_after_its_lease_is_learned_once(
    scripted: ScriptedServer, model: OpenAIChat, db_file: Path
):
    """A holder whose lease ran out while the model extracted, and whose run another
    process took over, writes nothing: its commit point fails."""
    db = SqliteDb(db_file=db_file)
    agent = background_agent(model, db)
    lm = machine_of(agent)
    lm.lease_seconds = 0.0  # expired at once: another process may take it over
    taken_over = threading.Event()
    extractions: list[int] = []

    def answer(body: dict[str, Any]) -> Reply | str:
        if "save_user_memories" not in tools_of(body):
            return "Hi Ada."
        extractions.append(1)
        if len(extractions) == 1:  # this process's: answered once the other has finished
            taken_over.wait(60)
        return extract(memories(FACT))

    scripted.responder = answer
    try:
        agent.run("I like tea.")
        while not extractions:  # this process's extraction is with the model
            time.sleep(0.01)
        assert resume_in_processes(f"sqlite:///{db_file}", scripted, 1) == [1]
        assert contents(db) == [FACT]  # by the other process
        taken_over.set()
        assert lm.wait(timeout=30)
    finally:
        taken_over.set()
        scripted.responder = None
    assert contents(db) == [FACT]  # and not again
    assert len(extractions) == 2
    assert markers(db) == []


async def test_aresume_pending_finishes_a_pending_run(
    scripted: ScriptedServer, model: OpenAIChat, db_file: Path
):
    db = AsyncSqliteDb(db_file=db_file)
    try:
        agent = background_agent(model, db)
        scripted.script(Reply.text("Hi."), Reply.error(500))  # the extraction fails
        output = await agent.arun("I like tea.")
        assert await machine_of(agent).await_pending(timeout=10)
        assert await db.get_session(marker_id(output.run_id)) is not None

        scripted.script(extract(memories(FACT)))
        lm = agent.get_learning_machine()
        results = await asyncio.gather(lm.aresume_pending(), lm.aresume_pending())
        assert sorted(results) == [0, 1]
        assert [m.content for m in await db.list_memories("ada")] == [FACT]
    finally:
        await db.close()


def test_resume_pending_needs_a_model(db_file: Path):
    from kern.errors import ConfigurationError

    lm = LearningMachine(background=True, db=SqliteDb(db_file=db_file))
    with pytest.raises(ConfigurationError, match="needs a model"):
        lm.resume_pending()


def test_a_pending_run_whose_run_is_gone_is_dropped(model: OpenAIChat, db_file: Path):
    db = SqliteDb(db_file=db_file)
    stale = marker_state(lease_until=0, run_id="gone")
    db.upsert_session(stale, expected_version=None)
    lm = LearningMachine(background=True, model=model, db=db)
    assert lm.resume_pending() == 0
    assert markers(db) == []
