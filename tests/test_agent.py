"""The Agent against a real SQLite file and the real openai SDK (scripted server)."""

from __future__ import annotations

import asyncio
import io
import threading
from typing import Any

import pytest
from rich.console import Console

from kern import printing
from kern.agent import Agent
from kern.db.sqlite import AsyncSqliteDb, SqliteDb
from kern.errors import (
    ConfigurationError,
    SessionNotFoundError,
    SyncAsyncMismatchError,
    UnserializableError,
    VersionConflictError,
)
from kern.records import RunStatus
from kern.testing.scripted_server import Reply, ToolCallReply


def user_texts(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "user"]


def model_bodies(server) -> list[dict[str, Any]]:
    return [r.body for r in server.requests if r.path.endswith("/chat/completions")]


def test_history_comes_from_the_database_not_the_object(scripted, model, db_file):
    first = Agent(model=model, db=SqliteDb(db_file=db_file), add_history_to_context=True)
    first.run("My name is Ada.", session_id="s1")

    # A new agent and a new db object: only the file connects the two turns.
    second = Agent(model=model, db=SqliteDb(db_file=db_file), add_history_to_context=True)
    output = second.run("What is my name?", session_id="s1")

    assert user_texts(model_bodies(scripted)[-1]) == ["My name is Ada.", "What is my name?"]
    assert "My name is Ada." in output.content
    assert output.seq == 2


def test_history_is_limited_to_the_last_n_runs(scripted, model, db_file):
    agent = Agent(
        model=model, db=SqliteDb(db_file=db_file), add_history_to_context=True, num_history_runs=2
    )
    for n in range(5):
        agent.run(f"message {n}", session_id="s")
    assert user_texts(model_bodies(scripted)[-1]) == ["message 2", "message 3", "message 4"]


def test_history_is_off_unless_asked_for(scripted, model, db_file):
    agent = Agent(model=model, db=SqliteDb(db_file=db_file))
    agent.run("one", session_id="s")
    agent.run("two", session_id="s")
    assert user_texts(model_bodies(scripted)[-1]) == ["two"]
    assert [m.content for m in agent.get_chat_history("s") if m.role == "user"] == ["one", "two"]


def test_runs_are_appended_with_their_messages_and_metrics(scripted, model, db_file):
    db = SqliteDb(db_file=db_file)
    agent = Agent(model=model, db=db, agent_id="helper", user_id="ada")
    output = agent.run("hello", session_id="s")

    stored = db.get_run(output.run_id)
    assert stored is not None
    assert stored.seq == 1
    assert stored.user_id == "ada" and stored.component_id == "helper"
    assert stored.status == RunStatus.COMPLETED
    assert stored.input == "hello"
    assert [m.role for m in stored.messages] == ["user", "assistant"]
    assert stored.output == output.content
    assert stored.metrics["model_calls"] == 1
    assert stored.metrics["input_tokens"] > 0
    session = db.get_session("s")
    assert session is not None and session.user_id == "ada" and session.component_id == "helper"


def test_tools_are_called_and_their_traffic_stored(scripted, model, db_file):
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    scripted.script(
        Reply.tool_calls(ToolCallReply(name="add", arguments={"a": 2, "b": 3})),
        Reply.text("The sum is 5."),
    )
    db = SqliteDb(db_file=db_file)
    output = Agent(model=model, db=db, tools=[add]).run("add 2 and 3", session_id="s")

    assert output.content == "The sum is 5."
    tool_spec = model_bodies(scripted)[0]["tools"][0]["function"]
    assert tool_spec["name"] == "add" and tool_spec["description"] == "Add two integers."
    assert set(tool_spec["parameters"]["properties"]) == {"a", "b"}
    tool_message = model_bodies(scripted)[1]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["content"] == "5"
    stored = db.get_run(output.run_id)
    assert [m.role for m in stored.messages] == ["user", "assistant", "tool", "assistant"]


def test_bad_tool_arguments_are_told_to_the_model(scripted, model, db_file):
    def add(a: int, b: int) -> int:
        return a + b

    scripted.script(
        Reply.tool_calls(ToolCallReply(name="add", arguments={"a": "not a number"})),
        Reply.text("Sorry."),
    )
    Agent(model=model, db=SqliteDb(db_file=db_file), tools=[add]).run("add", session_id="s")
    tool_message = model_bodies(scripted)[1]["messages"][-1]
    assert tool_message["content"].startswith("Error: invalid arguments for add")


def test_session_state_survives_a_restart(scripted, model, db_file):
    def add_item(item: str, session_state: dict) -> str:
        """Add an item to the shopping list."""
        session_state.setdefault("items", []).append(item)
        return f"added {item}"

    scripted.script(
        Reply.tool_calls(ToolCallReply(name="add_item", arguments={"item": "milk"})),
        Reply.text("Added milk."),
    )
    agent = Agent(model=model, db=SqliteDb(db_file=db_file), tools=[add_item])
    agent.run("add milk", session_id="shop")
    spec = model_bodies(scripted)[0]["tools"][0]["function"]
    assert "session_state" not in spec["parameters"]["properties"]

    restarted = Agent(model=model, db=SqliteDb(db_file=db_file), session_state={"items": []})
    assert restarted.get_session_state("shop") == {"items": ["milk"]}
    assert restarted.get_session("shop").version == 1  # created with its state: one write


def test_stale_state_write_is_refused_and_nothing_is_overwritten(scripted, model, db_file):
    db = SqliteDb(db_file=db_file)

    def remember(value: str, session_state: dict) -> str:
        # Meanwhile another process writes the same session's state.
        other = db.get_session("s")
        db.upsert_session(
            other.model_copy(update={"state": {"owner": "other"}}),
            expected_version=other.version,
        )
        session_state["owner"] = value
        return "ok"

    Agent(model=model, db=db).run("create the session", session_id="s")
    scripted.script(
        Reply.tool_calls(ToolCallReply(name="remember", arguments={"value": "me"})),
        Reply.text("done"),
    )
    with pytest.raises(VersionConflictError, match="another writer"):
        Agent(model=model, db=db, tools=[remember]).run("set owner", session_id="s")
    assert db.get_session("s").state == {"owner": "other"}


def test_unserialisable_state_is_a_clear_error_and_stores_nothing(scripted, model, db_file):
    db = SqliteDb(db_file=db_file)
    agent = Agent(model=model, db=db)
    agent.run("first", session_id="s")
    with pytest.raises(UnserializableError, match=r"\[.tags.\].*list instead of a set"):
        agent.run("second", session_id="s", session_state={"tags": {"a", "b"}})
    assert len(agent.get_chat_history("s")) == 2
    with pytest.raises(UnserializableError):
        Agent(model=model, db=db, session_state={"when": object()})


def test_async_db_with_sync_run_names_the_fix(model, db_file):
    agent = Agent(model=model, db=AsyncSqliteDb(db_file=db_file))
    with pytest.raises(SyncAsyncMismatchError, match=r"await agent\.arun"):
        agent.run("hello")
    with pytest.raises(SyncAsyncMismatchError, match="aget_chat_history"):
        agent.get_chat_history()


def test_unknown_session_history_is_an_error(model, db_file):
    with pytest.raises(SessionNotFoundError, match="no session 'nope'"):
        Agent(model=model, db=SqliteDb(db_file=db_file)).get_chat_history("nope")


def test_not_a_db_is_refused_at_construction(model):
    with pytest.raises(ConfigurationError, match="SqliteDb"):
        Agent(model=model, db="sqlite:///tmp/x.db")


async def test_arun_with_async_db_carries_history(scripted, model, db_file):
    agent = Agent(model=model, db=AsyncSqliteDb(db_file=db_file), add_history_to_context=True)
    await agent.arun("My name is Ada.", session_id="s")
    output = await agent.arun("What is my name?", session_id="s")
    assert "My name is Ada." in output.content
    history = await agent.aget_chat_history("s")
    assert [m.content for m in history if m.role == "user"] == [
        "My name is Ada.",
        "What is my name?",
    ]


class ThreadRecordingDb(SqliteDb):
    """A SqliteDb that notes which thread each storage call ran on."""

    threads: list[int]

    def read_turn(self, session_id, limit, **filters):
        self.threads.append(threading.get_ident())
        return super().read_turn(session_id, limit, **filters)

    def append_run(self, run):
        self.threads.append(threading.get_ident())
        return super().append_run(run)


async def test_arun_with_sync_db_keeps_storage_off_the_event_loop(scripted, model, db_file):
    db = ThreadRecordingDb(db_file=db_file)
    db.threads = []
    await Agent(model=model, db=db).arun("hello", session_id="s")
    loop_thread = threading.get_ident()
    assert db.threads and loop_thread not in db.threads


async def test_arun_turns_run_concurrently_on_one_session(scripted, model, db_file):
    agent = Agent(model=model, db=AsyncSqliteDb(db_file=db_file))
    outputs = await asyncio.gather(*(agent.arun(f"m{n}", session_id="s") for n in range(20)))
    assert sorted(o.seq for o in outputs) == list(range(1, 21))


def test_streaming_yields_content_then_the_stored_output(scripted, model, db_file):
    scripted.script(Reply.text("Hello there, streaming world."))
    agent = Agent(model=model, db=SqliteDb(db_file=db_file))
    events = list(agent.run("hi", session_id="s", stream=True))
    pieces = "".join(e.content for e in events if e.event == "content")
    assert pieces == "Hello there, streaming world."
    assert events[-1].event == "completed"
    assert events[-1].output.content == pieces
    assert agent.get_chat_history("s")[-1].content == pieces


def test_print_response_never_reads_model_text_as_markup(scripted, model, db_file, monkeypatch):
    buffer = io.StringIO()
    monkeypatch.setattr(printing, "console", Console(file=buffer, width=100))
    scripted.script(Reply.text("Use [bold]brackets[/] and [/red] freely."))
    Agent(model=model, db=SqliteDb(db_file=db_file)).print_response("[i]hi[/i]", session_id="s")
    printed = buffer.getvalue()
    assert "Use [bold]brackets[/] and [/red] freely." in printed
    assert "[i]hi[/i]" in printed


def test_agent_without_model_uses_the_sdk_environment(scripted, db_file, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", scripted.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    output = Agent(db=SqliteDb(db_file=db_file)).run("hello", session_id="s")
    assert output.content.startswith("[scripted model]")
    assert model_bodies(scripted)[-1]["model"] == "gpt-4.1-mini"


def test_model_given_as_provider_string(scripted, db_file, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", scripted.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    Agent(model="openai:my-model", db=SqliteDb(db_file=db_file)).run("hello")
    assert model_bodies(scripted)[-1]["model"] == "my-model"


def test_agent_without_db_still_answers(scripted, model):
    assert Agent(model=model).run("hello").content.startswith("[scripted model]")
