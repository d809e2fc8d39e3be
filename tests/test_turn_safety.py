"""A turn is one atomic write, checked before the model is called, in a session that belongs
to its user (docs/storage.md). Here through the Agent on SQLite; every backend's own
``commit_turn`` is held to the contract by the conformance suite."""

from __future__ import annotations

import math

import pytest

from kern.agent import Agent
from kern.db.sqlite import AsyncSqliteDb, SqliteDb
from kern.errors import (
    InvalidTextError,
    ModelProviderError,
    SessionOwnershipError,
    StorageUnavailableError,
    UnserializableError,
    VersionConflictError,
)
from kern.ids import MAX_DEPTH, MAX_INPUT_CHARS
from kern.records import Run, Session
from kern.testing.scripted_server import Reply, ToolCallReply


def model_calls(server) -> int:
    return sum(r.path.endswith("/chat/completions") for r in server.requests)


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


# -- nothing is written before the answer -----------------------------------------------


def test_a_failed_model_call_leaves_no_session_and_no_run(scripted, model, db_file):
    db = SqliteDb(db_file=db_file)
    scripted.script(Reply.error(status=400, message="bad request"))
    with pytest.raises(ModelProviderError):
        Agent(model=model, db=db).run("hello", session_id="s", user_id="alice")
    assert db.get_session("s") is None
    assert db.get_last_runs("s", 10) == []


@pytest.mark.parametrize(
    ("state", "error", "match"),
    [
        ({"x": math.nan}, UnserializableError, "nan"),
        ({"x": math.inf}, UnserializableError, "inf"),
        ({"x": "a\x00b"}, InvalidTextError, "NUL"),
        ({"\ud800": 1}, InvalidTextError, "lone surrogate"),
        (nested(MAX_DEPTH + 1), UnserializableError, f"{MAX_DEPTH} levels"),
        ({"tags": {"a"}}, UnserializableError, "list instead of a set"),
    ],
    ids=["nan", "inf", "nul", "surrogate", "too-deep", "set"],
)
def test_state_that_cannot_be_stored_is_refused_before_the_model_is_asked(
    scripted, model, db_file, state, error, match
):
    db = SqliteDb(db_file=db_file)
    with pytest.raises(error, match=match):
        Agent(model=model, db=db).run("hi", session_id="s", session_state=state)
    assert model_calls(scripted) == 0
    assert db.get_session("s") is None


def test_state_a_tool_breaks_is_refused_and_nothing_of_the_turn_is_stored(scripted, model, db_file):
    def spoil(session_state: dict) -> str:
        """Spoil the state."""
        session_state["x"] = math.nan
        return "done"

    db = SqliteDb(db_file=db_file)
    agent = Agent(model=model, db=db, tools=[spoil])
    agent.run("first", session_id="s")
    scripted.script(Reply.tool_calls(ToolCallReply(name="spoil", arguments={})), Reply.text("ok"))
    with pytest.raises(UnserializableError):
        agent.run("second", session_id="s")
    assert [run.input for run in db.get_last_runs("s", 10)] == ["first"]
    assert db.get_session("s").state == {}


def test_a_deep_state_within_the_limit_round_trips(scripted, model, db_file):
    db = SqliteDb(db_file=db_file)
    Agent(model=model, db=db).run("hi", session_id="s", session_state=nested(MAX_DEPTH))
    assert db.get_session("s").state == nested(MAX_DEPTH)


def test_input_is_checked_before_the_model_is_asked(scripted, model, db_file):
    db = SqliteDb(db_file=db_file)
    agent = Agent(model=model, db=db)
    with pytest.raises(InvalidTextError, match="MAX_INPUT_CHARS"):
        agent.run("x" * (MAX_INPUT_CHARS + 1), session_id="s")
    with pytest.raises(InvalidTextError, match="NUL"):
        agent.run("a\x00", session_id="s")
    assert model_calls(scripted) == 0
    assert db.list_sessions() == []


# -- one atomic write --------------------------------------------------------------------


def test_a_turn_that_changes_state_is_one_commit(scripted, model, db_file, monkeypatch):
    def remember(item: str, session_state: dict) -> str:
        """Remember an item."""
        session_state.setdefault("items", []).append(item)
        return "ok"

    db = SqliteDb(db_file=db_file)
    calls: list[str] = []
    for name in ("commit_turn", "append_run", "upsert_session"):
        original = getattr(db, name)
        monkeypatch.setattr(
            db, name, lambda *a, _n=name, _o=original, **k: (calls.append(_n), _o(*a, **k))[1]
        )
    agent = Agent(model=model, db=db, tools=[remember])
    scripted.script(
        Reply.tool_calls(ToolCallReply(name="remember", arguments={"item": "tea"})),
        Reply.text("ok"),
    )
    agent.run("remember tea", session_id="s")  # a new session, with a state change
    agent.run("hello", session_id="s")  # no state change
    assert calls == ["commit_turn", "append_run"]
    assert db.get_session("s").state == {"items": ["tea"]}


def test_a_stale_state_write_stores_neither_state_nor_run(scripted, model, db_file):
    def bump(session_state: dict) -> str:
        """Bump the counter."""
        session_state["n"] = session_state.get("n", 0) + 1
        return "bumped"

    db = SqliteDb(db_file=db_file)
    agent = Agent(model=model, db=db, tools=[bump])
    agent.run("first", session_id="s")

    def interloper(session_state: dict) -> str:
        """Another writer moves the session on while this turn runs."""
        stored = db.get_session("s")
        db.upsert_session(
            stored.model_copy(update={"state": {"n": 100}}), expected_version=stored.version
        )
        session_state["n"] = 1
        return "moved"

    racing = Agent(model=model, db=db, tools=[interloper])
    scripted.script(
        Reply.tool_calls(ToolCallReply(name="interloper", arguments={})), Reply.text("ok")
    )
    with pytest.raises(VersionConflictError):
        racing.run("second", session_id="s")
    assert [run.input for run in db.get_last_runs("s", 10)] == ["first"]
    assert db.get_session("s").state == {"n": 100}


# -- retrying an ambiguous commit --------------------------------------------------------


def test_a_retry_with_the_run_id_of_a_stored_turn_asks_nothing_and_stores_nothing(
    scripted, model, db_file
):
    db = SqliteDb(db_file=db_file)
    agent = Agent(model=model, db=db)
    first = agent.run("hello", session_id="s", run_id="turn-1")
    asked = model_calls(scripted)
    again = agent.run("hello", session_id="s", run_id="turn-1")
    assert model_calls(scripted) == asked
    assert (again.run_id, again.content, again.seq) == ("turn-1", first.content, first.seq)
    assert len(db.get_last_runs("s", 10)) == 1


def test_a_storage_fault_names_the_run_id_to_retry_with(scripted, model, db_file, monkeypatch):
    db = SqliteDb(db_file=db_file)
    agent = Agent(model=model, db=db)

    def down(*args, **kwargs):
        raise StorageUnavailableError("the sqlite database is unavailable")

    monkeypatch.setattr(db, "commit_turn", down)
    with pytest.raises(StorageUnavailableError) as error:
        agent.run("hello", session_id="s", run_id="turn-7")
    assert error.value.run_id == "turn-7"
    monkeypatch.undo()
    output = agent.run("hello", session_id="s", run_id=error.value.run_id)
    assert output.run_id == "turn-7" and len(db.get_last_runs("s", 10)) == 1


# -- a session belongs to its user -------------------------------------------------------


def test_bob_can_neither_read_nor_extend_alices_session(scripted, model, db_file):
    db = SqliteDb(db_file=db_file)
    Agent(model=model, db=db).run("my secret is 42", session_id="s", user_id="alice")
    asked = model_calls(scripted)

    bob = Agent(model=model, db=db, add_history_to_context=True)
    for user in ("bob", None):
        with pytest.raises(SessionOwnershipError, match="belongs to another user") as error:
            bob.run("what is the secret?", session_id="s", user_id=user)
        assert "alice" not in str(error.value)
    assert model_calls(scripted) == asked  # nothing of hers was sent anywhere
    as_bob = Agent(model=model, db=db, user_id="bob")
    with pytest.raises(SessionOwnershipError):
        as_bob.get_chat_history("s")
    with pytest.raises(SessionOwnershipError):
        as_bob.get_session("s")
    assert len(db.get_last_runs("s", 10)) == 1

    alice = Agent(model=model, db=db, user_id="alice")
    assert alice.get_session("s").user_id == "alice"
    alice.run("and now?", session_id="s")
    assert len(alice.get_chat_history("s")) == 4


def test_a_session_created_shared_takes_every_user(scripted, model, db_file):
    db = SqliteDb(db_file=db_file)
    room = Agent(model=model, db=db, shared_session=True)
    room.run("hello from alice", session_id="room", user_id="alice")
    room.run("hello from bob", session_id="room", user_id="bob")
    assert [run.user_id for run in db.get_last_runs("room", 10)] == ["alice", "bob"]
    assert db.get_session("room").user_id == "alice"


async def test_ownership_holds_for_async_turns(scripted, model, db_file):
    db = AsyncSqliteDb(db_file=db_file)
    await Agent(model=model, db=db).arun("mine", session_id="s", user_id="alice")
    with pytest.raises(SessionOwnershipError):
        await Agent(model=model, db=db).arun("theirs", session_id="s", user_id="bob")
    assert len(await db.get_last_runs("s", 10)) == 1


def test_concurrent_first_turns_of_one_session_are_both_stored(scripted, model, db_file):
    """Two turns that both found the session new: the second is stored on top of the first."""
    db = SqliteDb(db_file=db_file)
    agent = Agent(model=model, db=db)

    original = db.read_turn

    def create_meanwhile(session_id, limit, **filters):
        db.read_turn = original  # only the turn's first read misses it
        db.upsert_session(Session(session_id="s"), expected_version=None)
        return None, []

    db.read_turn = create_meanwhile  # the turn reads "no session", then one appears
    agent.run("hello", session_id="s", session_state={"k": 1})
    assert db.get_session("s").state == {"k": 1}
    assert [r.input for r in db.get_last_runs("s", 10)] == ["hello"]
    assert isinstance(db.get_last_runs("s", 1)[0], Run)
