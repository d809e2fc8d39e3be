"""Continuing a conversation from an earlier turn: ``Agent.fork_session`` on every backend.

What a user relies on: the fork's next turn sends the model the history up to the fork
point and nothing after it; the original session is unchanged and continues as before;
the fork has the state the fork point's turn left; refusals write nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from kern.agent import Agent
from kern.db import connect
from kern.db.base import AsyncBaseDb, BaseDb
from kern.db.fork import FORKED_FROM, STATE_KEY
from kern.db.sqlite import AsyncSqliteDb, SqliteDb
from kern.errors import ForkError, RunNotFoundError, SessionOwnershipError
from kern.records import Run, Session
from kern.testing.scripted_server import Reply, ToolCallReply

BACKENDS = ["sqlite", "duckdb", "postgres", "mongo", "redis"]


def user_texts(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "user"]


def last_request(server: Any) -> dict[str, Any]:
    bodies = [r.body for r in server.requests if r.path.endswith("/chat/completions")]
    return bodies[-1]


def _agent(model: Any, db: Any, **options: Any) -> Agent:
    return Agent(model=model, db=db, add_history_to_context=True, num_history_runs=10, **options)


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_forks_next_turn_carries_the_history_up_to_the_fork_point(
    backend: str, flavour: str, backend_url: Callable[[str], str], scripted: Any, model: Any
) -> None:
    url = backend_url(backend)
    if flavour == "async":
        url = url.replace("postgresql+psycopg://", "postgresql+psycopg_async://")
    db = connect(url, is_async=flavour == "async")
    agent = _agent(model, db, user_id="ada")

    async def scenario() -> None:
        try:
            await turns()
        finally:
            closed = db.close()
            if asyncio.iscoroutine(closed):
                await closed

    async def turns() -> None:
        async def run(text: str, session_id: str) -> Any:
            if flavour == "async":
                return await agent.arun(text, session_id=session_id)
            return agent.run(text, session_id=session_id)

        outputs = [await run(f"turn {i}", "main") for i in range(1, 6)]
        if flavour == "async":
            fork = await agent.afork_session("main", at_run_id=outputs[2].run_id)
        else:
            fork = agent.fork_session("main", at_seq=3)

        answer = await run("another way", fork)

        assert user_texts(last_request(scripted)) == ["turn 1", "turn 2", "turn 3", "another way"]
        assert answer.seq == 4 and answer.session_id == fork
        # The original is unchanged, and continues after its own last turn.
        again = await run("back on main", "main")
        assert user_texts(last_request(scripted)) == [
            *(f"turn {i}" for i in range(1, 6)),
            "back on main",
        ]
        assert again.seq == 6

    asyncio.run(scenario())


def test_the_fork_has_the_state_its_turn_left_and_names_its_parent(
    scripted: Any, model: Any, db_file: Any
) -> None:
    def remember(value: str, session_state: dict[str, Any]) -> str:
        """Remember a value."""
        session_state["colour"] = value
        return "remembered"

    db = SqliteDb(db_file=db_file)
    agent = _agent(model, db, tools=[remember], user_id="ada")
    for colour in ("red", "green"):
        scripted.script(
            Reply.tool_calls(ToolCallReply(name="remember", arguments={"value": colour})),
            Reply.text(f"noted {colour}"),
        )
        agent.run(f"my colour is {colour}", session_id="main")
    assert agent.get_session_state("main") == {"colour": "green"}

    fork = agent.fork_session("main", at_seq=1, new_session_id="main-red")

    assert fork == "main-red"
    session = db.get_session("main-red")
    assert session is not None and session.user_id == "ada"
    assert session.state == {"colour": "red"}
    assert session.metadata[FORKED_FROM] == {"session_id": "main", "seq": 1, "state": "run"}
    assert [m.content for m in agent.get_chat_history("main-red") if m.role == "user"] == [
        "my colour is red"
    ]
    assert agent.get_session_state("main") == {"colour": "green"}


def test_refusals_write_nothing(scripted: Any, model: Any, db_file: Any) -> None:
    db = SqliteDb(db_file=db_file)
    agent = _agent(model, db, user_id="ada")
    first = agent.run("one", session_id="main")
    agent.run("two", session_id="other")

    with pytest.raises(ForkError, match="exactly one fork point"):
        agent.fork_session("main")
    with pytest.raises(ForkError, match="exactly one fork point"):
        agent.fork_session("main", at_seq=1, at_run_id=first.run_id)
    with pytest.raises(ForkError, match="last run is seq 1"):
        agent.fork_session("main", at_seq=2, new_session_id="f1")
    with pytest.raises(ForkError, match="already taken"):
        agent.fork_session("main", at_seq=1, new_session_id="other")
    with pytest.raises(RunNotFoundError, match="no run of that id"):
        other_run = db.get_last_runs("other", 1)[0]
        agent.fork_session("main", at_run_id=other_run.run_id, new_session_id="f1")
    with pytest.raises(SessionOwnershipError):
        _agent(model, db, user_id="bob").fork_session("main", at_seq=1, new_session_id="f1")

    assert db.get_session("f1") is None and db.get_last_runs("f1", 5) == []
    assert [s.session_id for s in db.list_sessions(user_id="ada")] == ["other", "main"]


def test_an_async_agent_refuses_the_sync_call(model: Any, db_file: Any) -> None:
    agent = _agent(model, AsyncSqliteDb(db_file=db_file))
    with pytest.raises(Exception, match="afork_session"):
        agent.fork_session("main", at_seq=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_encrypted_session_forks_readable(
    backend: str, backend_url: Callable[[str], str], scripted: Any, model: Any
) -> None:
    """The copies and the recorded state stay sealed as stored, and open with the key."""
    from kern.crypto import encrypt, generate_key

    def remember(value: str, session_state: dict[str, Any]) -> str:
        """Remember a value."""
        session_state["colour"] = value
        return "remembered"

    db = encrypt(connect(backend_url(backend), is_async=False), key=generate_key("k1"))
    try:
        agent = _agent(model, db, tools=[remember], user_id="ada")
        for colour in ("red", "green"):
            scripted.script(
                Reply.tool_calls(ToolCallReply(name="remember", arguments={"value": colour})),
                Reply.text(f"noted {colour}"),
            )
            agent.run(f"my colour is {colour}", session_id="main")
        fork = agent.fork_session("main", at_seq=1)
        session = db.get_session(fork)
        assert session is not None and session.state == {"colour": "red"}
        assert [r.input for r in db.get_last_runs(fork, 5)] == ["my colour is red"]
    finally:
        db.close()


class DefaultForkDb(SqliteDb):
    """SQLite with the contract's default ``fork_session`` (what a third-party backend gets)."""

    fork_session = BaseDb.fork_session


class DefaultForkAsyncDb(AsyncSqliteDb):
    sync_class = DefaultForkDb
    fork_session = AsyncBaseDb.fork_session


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_the_contracts_default_fork_copies_through_the_other_methods(
    flavour: str, db_file: Any
) -> None:
    async def scenario() -> None:
        db: Any = DefaultForkDb(db_file=db_file)
        if flavour == "async":
            db = DefaultForkAsyncDb(db_file=db_file)

        async def call(method: str, *args: Any, **kwargs: Any) -> Any:
            result = getattr(db, method)(*args, **kwargs)
            return await result if asyncio.iscoroutine(result) else result

        await call("upsert_session", Session(session_id="s", user_id="u"), expected_version=None)
        leader = await call(
            "append_run", Run(session_id="s", input="q1", metrics={STATE_KEY: {"n": 1}})
        )
        await call("append_run", Run(session_id="s", input="m", parent_run_id=leader.run_id))
        await call("append_run", Run(session_id="s", input="q2"))

        fork = await call("fork_session", "s", at_seq=2, new_session_id="f")

        assert fork.user_id == "u"
        assert fork.state == {} and fork.metadata[FORKED_FROM]["state"] == "current"  # a member's
        first = await call("fork_session", "s", at_seq=1, new_session_id="f1")
        assert first.state == {"n": 1}
        copied = await call("get_last_runs", "f", 10)
        assert [(r.seq, r.run_id, r.input) for r in copied] == [(1, "f:1", "q1"), (2, "f:2", "m")]
        assert copied[1].parent_run_id == "f:1"
        with pytest.raises(ForkError, match="already taken"):
            await call("fork_session", "s", at_seq=1, new_session_id="f")
        with pytest.raises(ForkError, match="last run is seq 3"):
            await call("fork_session", "s", at_seq=4, new_session_id="g")
        assert await call("get_session", "g") is None
        await call("close")

    asyncio.run(scenario())
