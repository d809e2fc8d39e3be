"""Tools: async tools from sync code, and which failures the model is told about."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

from kern.agent import Agent
from kern.db.sqlite import AsyncSqliteDb, SqliteDb
from kern.errors import ToolError
from kern.testing.scripted_server import Reply, ToolCallReply
from kern.tools import ToolRetry


def tool_results(server: Any) -> list[str]:
    bodies = [r.body for r in server.requests if r.path.endswith("/chat/completions")]
    return [m["content"] for body in bodies for m in body["messages"] if m["role"] == "tool"]


async def lookup(city: str) -> str:
    """The weather in a city."""
    await asyncio.sleep(0)
    return f"sunny in {city} (loop thread {threading.current_thread().name})"


def weather_script(scripted: Any) -> None:
    scripted.script(
        Reply.tool_calls(ToolCallReply(name="lookup", arguments={"city": "Oslo"})),
        Reply.text("It is sunny."),
    )


def test_sync_run_with_an_async_tool_inside_a_running_loop(scripted, model, db_file):
    """A notebook cell or a web handler: agent.run() called while this thread's loop runs."""
    weather_script(scripted)
    db = SqliteDb(db_file=db_file)
    agent = Agent(model=model, db=db, tools=[lookup])

    async def handler() -> Any:
        return agent.run("weather in Oslo?", session_id="s")  # sync call, loop running

    output = asyncio.run(handler())

    assert output.content == "It is sunny."
    [result] = tool_results(scripted)
    assert result.startswith("sunny in Oslo")
    assert "RuntimeError" not in result
    stored = db.get_run(output.run_id)
    assert stored is not None and stored.messages[2].content == result


def test_sync_run_with_an_async_tool_and_no_loop(scripted, model, db_file):
    weather_script(scripted)
    agent = Agent(model=model, db=SqliteDb(db_file=db_file), tools=[lookup])
    assert agent.run("weather?", session_id="s").content == "It is sunny."
    assert tool_results(scripted)[0].startswith("sunny in Oslo")


async def test_async_run_awaits_an_async_tool_on_the_callers_loop(scripted, model, db_file):
    weather_script(scripted)
    agent = Agent(model=model, db=AsyncSqliteDb(db_file=db_file), tools=[lookup])
    output = await agent.arun("weather?", session_id="s")
    assert output.content == "It is sunny."
    assert f"loop thread {threading.current_thread().name}" in tool_results(scripted)[0]


def test_a_tool_retry_is_told_to_the_model(scripted, model, db_file):
    def find_order(order_id: str) -> str:
        """Find an order."""
        raise ToolRetry(f"no order {order_id}; order ids look like 'A-123'")

    scripted.script(
        Reply.tool_calls(ToolCallReply(name="find_order", arguments={"order_id": "42"})),
        Reply.text("Which order?"),
    )
    db = SqliteDb(db_file=db_file)
    output = Agent(model=model, db=db, tools=[find_order]).run("my order", session_id="s")
    assert output.content == "Which order?"
    assert tool_results(scripted) == ["Error: no order 42; order ids look like 'A-123'"]
    assert db.get_run(output.run_id) is not None


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_any_other_tool_exception_is_logged_and_fails_the_run(
    scripted, model, db_file, caplog, use_async
):
    def charge(amount: int) -> str:
        """Charge the card."""
        raise KeyError("card")

    scripted.script(
        Reply.tool_calls(ToolCallReply(name="charge", arguments={"amount": 5})),
        Reply.text("never asked"),
    )
    db_class = AsyncSqliteDb if use_async else SqliteDb
    agent = Agent(model=model, db=db_class(db_file=db_file), tools=[charge])
    caplog.set_level(logging.ERROR, logger="kern.agent")

    with pytest.raises(ToolError) as raised:
        if use_async:
            asyncio.run(agent.arun("charge me", session_id="s"))
        else:
            agent.run("charge me", session_id="s")

    assert raised.value.tool_name == "charge"
    assert isinstance(raised.value.__cause__, KeyError)
    assert "ToolRetry" in str(raised.value)
    [record] = [r for r in caplog.records if r.name == "kern.agent"]
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    assert len(tool_results(scripted)) == 0  # the model was asked once, never told
    assert SqliteDb(db_file=db_file).get_session("s") is None  # nothing of the run stored
