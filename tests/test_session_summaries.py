"""Rolling session summaries (kern.summaries) and past sessions (kern.past_sessions).

Against a real SQLite file and the real openai SDK on the scripted server, whose default
answer to kern's summary prompt carries the previous summary forward and adds what the
user said (``kern.testing.scripted_server.scripted_summary``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from kern.agent import Agent
from kern.db.sqlite import AsyncSqliteDb, SqliteDb
from kern.errors import ConfigurationError, SessionOwnershipError
from kern.past_sessions import PastSessions
from kern.records import Session
from kern.summaries import SUMMARY_KEY, SUMMARY_MARKER, SessionSummaries
from kern.team import Team
from kern.testing import scripted_server as scripted_module
from kern.testing.scripted_server import Reply, ScriptedServer, ToolCallReply, request_messages

FACT = "My cat is called Mirabelle."


def said(turn: int) -> str:
    return FACT if turn == 2 else f"Small talk number {turn}."


def is_summary(body: dict[str, Any]) -> bool:
    messages = request_messages(body)
    return bool(messages) and SUMMARY_MARKER in str(messages[0].get("content"))


def answers(server: ScriptedServer) -> list[list[dict[str, Any]]]:
    """The conversations of the model requests that were not summary requests."""
    return [request_messages(b) for b in server.chat_requests() if not is_summary(b)]


def summary_requests(server: ScriptedServer) -> list[dict[str, Any]]:
    return [b for b in server.chat_requests() if is_summary(b)]


@pytest.fixture
def responder(scripted: ScriptedServer) -> Iterator[ScriptedServer]:
    """The scripted server, with its responder put back after the test."""
    yield scripted
    scripted.responder = None


def long_agent(model: Any, db: Any, **kwargs: Any) -> Agent:
    options: dict[str, Any] = {
        "user_id": "ada",
        "add_history_to_context": True,
        "num_history_runs": 3,
        "session_summaries": SessionSummaries(every_runs=5),
    }
    return Agent(model=model, db=db, **{**options, **kwargs})


def test_the_marker_is_the_one_the_scripted_model_answers():
    assert scripted_module.SUMMARY_MARKER == SUMMARY_MARKER


def test_turn_41_carries_a_fact_of_turn_2_through_the_summary(scripted, model, db_file):
    db = SqliteDb(db_file=db_file)
    agent = long_agent(model, db)
    for turn in range(1, 41):
        agent.run(said(turn), session_id="long")
    scripted.clear()

    agent.run("What is my cat called?", session_id="long")

    (request,) = answers(scripted)
    users = [m for m in request if m["role"] == "user"]
    assert len(users) == 3 + 1  # the last num_history_runs runs and the new input
    assert not any("Mirabelle" in str(m["content"]) for m in request if m["role"] != "system")
    (summary,) = [m for m in request if m["role"] == "system" and "Mirabelle" in m["content"]]
    assert request.index(summary) < request.index(users[0])  # ahead of the last runs
    assert "Mirabelle" in (agent.get_session_summary("long") or "")
    stored = db.get_session("long")
    assert stored is not None and stored.metadata[SUMMARY_KEY] == {"through_seq": 40}


def test_the_summary_is_refreshed_every_n_runs(scripted, model, db_file):
    agent = long_agent(model, SqliteDb(db_file=db_file))
    for turn in range(1, 13):
        agent.run(said(turn), session_id="s")
    refreshes = summary_requests(scripted)
    assert len(refreshes) == 2  # after runs 5 and 10
    second = request_messages(refreshes[1])[-1]["content"]
    assert "Small talk number 6." in second and "Small talk number 10." in second
    users = [line for line in second.split("New turns:")[1].splitlines() if line.startswith("User")]
    assert users == [f"User: Small talk number {n}." for n in range(6, 11)]  # the new runs


async def test_async_agents_keep_summaries_the_same_way(scripted, model, db_file):
    db = AsyncSqliteDb(db_file=db_file)
    agent = long_agent(model, db, num_history_runs=1)
    for turn in range(1, 12):
        await agent.arun(said(turn), session_id="s")
    assert "Mirabelle" in (await agent.aget_session_summary("s") or "")
    await db.close()


def test_a_background_summary_does_not_hold_the_answer(responder, model, db_file):
    release = threading.Event()
    started = threading.Event()

    def hold_summaries(body: dict[str, Any]) -> Reply | None:
        if is_summary(body):
            started.set()
            assert release.wait(30), "the test never released the summary"
        return None

    responder.responder = hold_summaries
    summaries = SessionSummaries(every_runs=2, background=True)
    agent = long_agent(model, SqliteDb(db_file=db_file), session_summaries=summaries)
    agent.run(said(1), session_id="s")
    output = agent.run(said(2), session_id="s")  # the summary is due after this run

    assert output.content and started.wait(30)
    assert agent.get_session_summary("s") is None  # answered while the summary waits
    release.set()
    assert summaries.wait(30)
    assert "Mirabelle" in (agent.get_session_summary("s") or "")


def test_a_summary_lost_after_the_answer_is_made_by_the_next_turn(responder, model, db_file):
    """The process dies (here: the summary call fails) between the answer and the summary:
    the run is stored, and the next turn, in a new agent, summarizes every run since."""
    responder.responder = lambda body: Reply.error(500) if is_summary(body) else None
    first = long_agent(model, SqliteDb(db_file=db_file), session_summaries=SessionSummaries(2))
    first.run(said(1), session_id="s")
    first.run(said(2), session_id="s")
    assert first.get_session_summary("s") is None
    assert [r.seq for r in SqliteDb(db_file=db_file).get_last_runs("s", 10)] == [1, 2]

    responder.responder = None
    again = long_agent(model, SqliteDb(db_file=db_file), session_summaries=SessionSummaries(2))
    again.run(said(3), session_id="s")
    summary = again.get_session_summary("s") or ""
    assert "Mirabelle" in summary and "Small talk number 1." in summary
    assert "Small talk number 3." in summary


def test_a_turn_that_changes_state_is_stored_over_a_summary_written_meanwhile(
    scripted, model, db_file
):
    db = SqliteDb(db_file=db_file)

    def note(topic: str, session_state: dict[str, Any]) -> str:
        """Note a topic."""
        session = db.get_session("s")  # a background summary lands during the turn
        assert session is not None
        db.upsert_session(
            session.model_copy(update={"summary": "written meanwhile"}),
            expected_version=session.version,
        )
        session_state["topic"] = topic
        return "noted"

    agent = long_agent(model, db, tools=[note])
    agent.run("hello", session_id="s")
    scripted.script(Reply.tool_calls(ToolCallReply("note", {"topic": "cats"})), "done")
    output = agent.run("note cats", session_id="s")

    stored = db.get_session("s")
    assert stored is not None
    assert output.session_state == {"topic": "cats"} == stored.state
    assert stored.summary == "written meanwhile"


def test_a_streamed_turn_does_not_stream_the_summary(scripted, model, db_file):
    agent = long_agent(model, SqliteDb(db_file=db_file), session_summaries=SessionSummaries(1))
    events = list(agent.run(said(2), session_id="s", stream=True))
    text = "".join(e.content or "" for e in events if e.event == "content")
    assert "The user said" not in text
    assert "Mirabelle" in (agent.get_session_summary("s") or "")


def test_a_team_keeps_a_summary_too(scripted, model, db_file):
    member = Agent(model=model, name="helper")
    team = Team(
        members=[member],
        model=model,
        db=SqliteDb(db_file=db_file),
        user_id="ada",
        add_history_to_context=True,
        num_history_runs=1,
        session_summaries=SessionSummaries(every_runs=2),
    )
    for turn in range(1, 4):
        team.run(said(turn), session_id="t")
    assert "Mirabelle" in (team.get_session_summary("t") or "")
    last = answers(scripted)[-1]
    assert any("Mirabelle" in str(m["content"]) for m in last if m["role"] == "system")


def test_get_session_summary_is_per_user(scripted, model, db_file):
    db = SqliteDb(db_file=db_file)
    agent = long_agent(model, db, session_summaries=SessionSummaries(1))
    assert agent.get_session_summary("nothing-yet") is None
    agent.run(said(2), session_id="s")
    assert "Mirabelle" in (agent.get_session_summary("s") or "")
    with pytest.raises(SessionOwnershipError):
        Agent(model=model, db=db, user_id="bob").get_session_summary("s")


def test_summaries_are_off_by_default_and_options_are_checked(scripted, model, db_file):
    agent = Agent(model=model, db=SqliteDb(db_file=db_file), user_id="ada")
    for turn in range(1, 8):
        agent.run(said(turn), session_id="s")
    assert summary_requests(scripted) == [] and agent.get_session_summary("s") is None
    assert Agent(model=model, session_summaries=True).session_summaries == SessionSummaries()
    with pytest.raises(ConfigurationError, match="every_runs"):
        SessionSummaries(every_runs=0)
    with pytest.raises(ConfigurationError, match="session_summaries"):
        Agent(model=model, session_summaries="often")  # type: ignore[arg-type]


# -- past sessions ----------------------------------------------------------------------


def seed_sessions(db: SqliteDb) -> None:
    db.upsert_session(
        Session(session_id="ada-trip", user_id="ada", name="Trip", summary="Ada plans Lisbon."),
        expected_version=None,
    )
    db.upsert_session(
        Session(session_id="bob-trip", user_id="bob", summary="Bob plans Lisbon as well."),
        expected_version=None,
    )


def tool_results(server: ScriptedServer) -> list[str]:
    last = answers(server)[-1]
    return [str(m["content"]) for m in last if m["role"] == "tool"]


def test_the_past_sessions_tool_finds_the_users_session_and_never_anothers(
    scripted, model, db_file
):
    db = SqliteDb(db_file=db_file)
    seed_sessions(db)
    search = ToolCallReply("search_past_sessions", {"query": "Where is the Lisbon trip?"})

    agent = Agent(model=model, db=db, user_id="ada", tools=[PastSessions(limit=3)])
    scripted.script(Reply.tool_calls(search), "You planned Lisbon.")
    agent.run("Which city did I plan?", session_id="ada-now")
    (found,) = tool_results(scripted)
    assert [s["session_id"] for s in json.loads(found)] == ["ada-trip"]
    assert json.loads(found)[0]["summary"] == "Ada plans Lisbon."

    scripted.script(Reply.tool_calls(search), "You planned Lisbon.")
    agent.run("And Bob?", user_id="bob", session_id="bob-now")
    (found,) = tool_results(scripted)
    assert [s["session_id"] for s in json.loads(found)] == ["bob-trip"]

    scripted.script(Reply.tool_calls(search), "I cannot tell.")
    agent.run("Anyone?", user_id="carol", session_id="carol-now")
    (found,) = tool_results(scripted)
    assert "No earlier session" in found


def test_the_past_sessions_tool_needs_a_user(scripted, model, db_file):
    db = SqliteDb(db_file=db_file)
    seed_sessions(db)
    scripted.script(
        Reply.tool_calls(ToolCallReply("search_past_sessions", {"query": "Lisbon"})), "ok"
    )
    Agent(model=model, db=db, tools=[PastSessions()]).run("Lisbon?", session_id="anon")
    (found,) = tool_results(scripted)
    assert "no user_id" in found
    with pytest.raises(ConfigurationError):
        PastSessions(limit=0)


async def test_a_summary_makes_a_session_findable_by_the_tool(scripted, model, db_file):
    db = AsyncSqliteDb(db_file=db_file)
    agent = long_agent(model, db, session_summaries=SessionSummaries(1), tools=[PastSessions()])
    await agent.arun(said(2), session_id="earlier")
    scripted.script(
        Reply.tool_calls(ToolCallReply("search_past_sessions", {"query": "Mirabelle"})), "ok"
    )
    await agent.arun("What was my cat's name?", session_id="later")
    (found,) = tool_results(scripted)
    assert [s["session_id"] for s in json.loads(found)] == ["earlier"]
    await db.close()


CHILD = """
import sys
from kern.agent import Agent
from kern.db.sqlite import SqliteDb
from kern.models.openai import OpenAIChat
from kern.summaries import SessionSummaries

model = OpenAIChat(id="scripted", base_url=sys.argv[1], api_key="test")
agent = Agent(
    model=model,
    db=SqliteDb(db_file=sys.argv[2]),
    user_id="ada",
    session_summaries=SessionSummaries(every_runs=2, background=True),
)
agent.run("Small talk number 1.", session_id="s")
agent.run("My cat is called Mirabelle.", session_id="s")
print("answered", flush=True)
sys.stdin.read()  # killed here, its summary still waiting on the model
"""


def test_a_process_killed_before_its_background_summary_loses_nothing(responder, model, db_file):
    release = threading.Event()
    asked = threading.Event()

    def hold_summaries(body: dict[str, Any]) -> Reply | None:
        if is_summary(body) and not release.is_set():
            asked.set()
            release.wait(60)
            return Reply.error(500)
        return None

    responder.responder = hold_summaries
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, responder.base_url, str(db_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "answered"
        assert asked.wait(60)  # the summary was under way when the process died
        child.kill()
        child.wait(60)
    finally:
        release.set()
        if child.poll() is None:
            child.kill()
    db = SqliteDb(db_file=db_file)
    assert [r.seq for r in db.get_last_runs("s", 10)] == [1, 2]
    assert db.get_session("s").summary is None  # type: ignore[union-attr]

    agent = long_agent(model, db, session_summaries=SessionSummaries(every_runs=2))
    agent.run("Small talk number 3.", session_id="s")
    assert "Mirabelle" in (agent.get_session_summary("s") or "")


async def test_an_async_background_summary_runs_as_a_task(scripted, model, db_file):
    db = AsyncSqliteDb(db_file=db_file)
    summaries = SessionSummaries(every_runs=1, background=True)
    agent = long_agent(model, db, session_summaries=summaries)
    await agent.arun(said(2), session_id="s")
    assert await summaries.await_pending(30)
    assert "Mirabelle" in (await agent.aget_session_summary("s") or "")
    await db.close()
