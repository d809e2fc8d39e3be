"""The context budget (kern.budget): history trimmed oldest first, tool calls kept whole."""

from __future__ import annotations

from typing import Any

import pytest

from kern.agent import Agent
from kern.budget import count_tokens, estimate_tokens, fit_history
from kern.db.sqlite import SqliteDb
from kern.errors import ConfigurationError
from kern.records import Message, ToolCall
from kern.summaries import SUMMARY_MARKER, SessionSummaries
from kern.testing.scripted_server import Reply, ToolCallReply, request_messages


def user(text: str) -> Message:
    return Message(role="user", content=text)


def answer(text: str) -> Message:
    return Message(role="assistant", content=text)


def calling(*ids: str) -> Message:
    calls = [ToolCall(id=i, name="lookup", arguments='{"q": "x"}') for i in ids]
    return Message(role="assistant", tool_calls=calls)


def result(call_id: str, text: str = "found it") -> Message:
    return Message(role="tool", tool_call_id=call_id, content=text)


#: Three runs: a plain one, one with two parallel tool calls, one with a chain of two.
HISTORY = [
    user("first question " * 5),
    answer("first answer " * 5),
    user("second question"),
    calling("a", "b"),
    result("a", "result a " * 20),
    result("b"),
    answer("second answer"),
    user("third question"),
    calling("c"),
    result("c"),
    calling("d"),
    result("d", "result d " * 10),
    answer("third answer"),
]


def well_formed(messages: list[Message]) -> bool:
    """Every tool result follows the call it answers, every call is answered, and the
    history starts at a user message."""
    if messages and messages[0].role != "user":
        return False
    asked: set[str] = set()
    answered: set[str] = set()
    for message in messages:
        if message.role == "tool":
            if message.tool_call_id not in asked:
                return False
            answered.add(message.tool_call_id or "")
        asked |= {call.id for call in message.tool_calls or ()}
    return asked == answered


def test_the_estimate_needs_no_network_and_grows_with_the_text():
    short, long = user("hi"), user("hi " * 400)
    assert 0 < estimate_tokens(short) < estimate_tokens(long)
    assert estimate_tokens(calling("a")) > estimate_tokens(Message(role="assistant"))
    assert count_tokens(HISTORY) == sum(estimate_tokens(m) for m in HISTORY)


@pytest.mark.parametrize("budget", range(0, count_tokens(HISTORY) + 5))
def test_every_budget_keeps_the_newest_whole_messages_that_fit(budget):
    kept, trimmed = fit_history(HISTORY, budget)
    assert count_tokens(kept) <= budget
    assert kept == HISTORY[len(HISTORY) - len(kept) :]  # the newest, in order
    assert well_formed(kept)
    assert trimmed == (len(kept) < len(HISTORY))


def test_no_budget_keeps_everything():
    assert fit_history(HISTORY, None) == (HISTORY, False)


def test_a_tool_call_is_never_sent_without_its_results():
    """A budget that would cut between a call and its results drops the call too."""
    third = HISTORY[7:]
    tail = count_tokens(HISTORY[11:])  # result d and the answer fit, call d would not...
    kept, _ = fit_history(HISTORY, tail + 1)
    assert kept == [] or kept[0].role == "user"  # ...so neither is sent without a question
    kept, _ = fit_history(HISTORY, count_tokens(third))
    assert kept == third


def test_an_orphaned_tool_result_in_stored_history_is_left_out():
    broken = [result("gone"), user("question"), answer("answer")]
    kept, trimmed = fit_history(broken, 10_000)
    assert kept == broken[1:] and trimmed


def bodies(server: Any) -> list[list[dict[str, Any]]]:
    return [
        request_messages(body)
        for body in server.chat_requests()
        if SUMMARY_MARKER not in str(request_messages(body)[0].get("content"))
    ]


def history_of(request: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history part of a request: after the system message, before the new input."""
    return [m for m in request[:-1] if m["role"] != "system"]


def test_an_agent_sends_the_history_that_fits_its_budget(scripted, model, db_file):
    agent = Agent(
        model=model,
        db=SqliteDb(db_file=db_file),
        add_history_to_context=True,
        num_history_runs=10,
        max_history_tokens=200,
    )
    for n in range(8):
        agent.run(f"message {n} " + "padding " * 10, session_id="s")
    request = bodies(scripted)[-1]
    sent = history_of(request)
    messages = [Message(role=m["role"], content=m["content"]) for m in sent]
    assert 0 < count_tokens(messages) <= 200
    assert 0 < len(sent) < 14 and sent[0]["role"] == "user"
    assert request[-1]["content"].startswith("message 7")
    assert sent[-2]["content"].startswith("message 6")  # the oldest were dropped, not these


def test_trimmed_tool_traffic_never_leaves_an_orphan_in_the_request(scripted, model, db_file):
    def lookup(q: str) -> str:
        """Look something up."""
        return "a long result " * 30

    agent = Agent(
        model=model,
        db=SqliteDb(db_file=db_file),
        tools=[lookup],
        add_history_to_context=True,
        num_history_runs=5,
        max_history_tokens=150,
    )
    for n in range(4):
        scripted.script(
            Reply.tool_calls(ToolCallReply("lookup", {"q": str(n)}, id=f"call{n}")), f"done {n}"
        )
        agent.run(f"look up {n}", session_id="s")
    requests = bodies(scripted)
    assert len(requests) == 8  # two model calls a run
    for request in requests:
        calls: set[str] = set()
        for message in request:  # a result only after its call, every call answered
            if message["role"] == "tool":
                assert message["tool_call_id"] in calls
            calls |= {c["id"] for c in message.get("tool_calls") or []}
        assert calls == {m["tool_call_id"] for m in request if m["role"] == "tool"}
    assert "look up 0" not in str(requests[-1])  # the oldest run was trimmed away


def test_trimming_refreshes_the_summary_so_nothing_is_lost(scripted, model, db_file):
    agent = Agent(
        model=model,
        db=SqliteDb(db_file=db_file),
        user_id="ada",
        add_history_to_context=True,
        num_history_runs=10,
        max_history_tokens=40,
        session_summaries=SessionSummaries(every_runs=100),
    )
    agent.run("My cat is called Mirabelle. " + "padding " * 20, session_id="s")
    agent.run("Anything new? " + "padding " * 20, session_id="s")  # run 1 trimmed away
    agent.run("Tell me.", session_id="s")
    assert "Mirabelle" in (agent.get_session_summary("s") or "")
    last = bodies(scripted)[-1]
    assert any("Mirabelle" in str(m["content"]) for m in last if m["role"] == "system")


def test_a_negative_budget_is_refused(model):
    with pytest.raises(ConfigurationError, match="max_history_tokens"):
        Agent(model=model, max_history_tokens=-1)
