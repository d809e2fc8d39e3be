"""Ids and stored text checked at the door, once, in kern-core (docs/storage.md).

The per-backend cases (injection table, isolation, raw scans after ``forget_user``) are in the
conformance suite; these check the mechanism itself: the rules, that every way a Db class can
get a contract method is guarded, and that an agent turn checks before it reads or calls the
model.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kern.agent import Agent
from kern.db.base import AsyncBaseDb, BaseDb
from kern.db.sqlite import AsyncSqliteDb, SqliteDb
from kern.errors import InvalidIdError, InvalidTextError, KernError
from kern.ids import MAX_ID_LENGTH, check_id, check_text
from kern.learn import LearningMachine
from kern.records import Learning, Memory, Message, Run, Session

BAD_IDS: list[tuple[Any, str]] = [
    (None, "None is not an id"),
    (1, "must be a string"),
    ({"$ne": None}, "must be a string"),
    (["a"], "must be a string"),
    ("", "non-empty"),
    ("a\x00b", "NUL"),
    ("\ud800", "lone surrogate"),
    ("x" * (MAX_ID_LENGTH + 1), f"at most {MAX_ID_LENGTH} characters"),
    ("x" * 1_000_000, f"at most {MAX_ID_LENGTH} characters"),
]


@pytest.mark.parametrize(("value", "rule"), BAD_IDS, ids=lambda v: repr(v)[:20])
def test_a_bad_id_names_the_argument_the_rule_and_the_type(value, rule):
    with pytest.raises(InvalidIdError, match=rule) as error:
        check_id("user_id", value)
    assert isinstance(error.value, KernError) and isinstance(error.value, ValueError)
    assert str(error.value).startswith("user_id must be")
    assert type(value).__name__ in str(error.value)
    assert len(str(error.value)) < 400  # a 1 MB id is not echoed back


@pytest.mark.parametrize("value", ["u", "ü-ser", "*", "{}", "$ne", "' OR 1=1 --", "x" * 255])
def test_ordinary_strings_are_ids(value):
    check_id("user_id", value)


def test_none_passes_only_where_it_means_any():
    check_id("user_id", None, optional=True)
    with pytest.raises(InvalidIdError):
        check_id("user_id", None)


def test_text_with_nul_or_a_lone_surrogate_is_refused_wherever_it_is_nested():
    check_text("state", {"ok": ["ü", "🙂", "\u2028", 1, None, 2.5]})
    with pytest.raises(InvalidTextError, match=r"state\['a'\]\[1\] contains a NUL"):
        check_text("state", {"a": ["fine", "x\x00"]})
    with pytest.raises(InvalidTextError, match="state key contains a lone surrogate"):
        check_text("state", {"\udc80": 1})


# -- every way a Db class gets a contract method is guarded ------------------------------


class _Recorder:
    """A mixin holding contract methods (outside the BaseDb family, like Mongo's)."""

    calls: list[tuple[str, tuple[Any, ...]]]

    def list_memories(self, user_id: str, **kwargs: Any) -> list[Memory]:
        self.calls.append(("list_memories", (user_id,)))
        return []


def _fill_abstract(cls: type) -> type:
    """Concrete no-op methods for the rest of the contract, assigned after the class exists."""
    for name in sorted(cls.__abstractmethods__):

        def method(self: Any, *args: Any, _name: str = name, **kwargs: Any) -> Any:
            self.calls.append((_name, args))
            return None

        method.__name__ = name
        setattr(cls, name, method)
    cls.__abstractmethods__ = frozenset()
    return cls


@_fill_abstract
class ThirdPartyDb(_Recorder, BaseDb):
    backend_name = "third-party"

    def __init__(self) -> None:
        self.calls = []

    def get_session(self, session_id: str) -> Session | None:  # written in the class body
        self.calls.append(("get_session", (session_id,)))
        return None


def test_methods_from_the_body_a_mixin_and_setattr_are_all_guarded():
    db = ThirdPartyDb()
    for call in (
        lambda: db.get_session(None),  # class body
        lambda: db.list_memories({"$ne": None}),  # mixin
        lambda: db.forget_user(None),  # assigned after the class was made
        lambda: db.get_run(run_id=7),  # by keyword
        lambda: db.upsert_memory(Memory.model_construct(user_id=None, content="x")),
    ):
        with pytest.raises(InvalidIdError):
            call()
    assert db.calls == []  # the backend never saw any of them

    db.get_session("s")
    db.list_memories("u")
    db.forget_user("u")
    db.query_learnings(user_id=None)  # a filter: None means any
    assert [name for name, _ in db.calls] == [
        "get_session",
        "list_memories",
        "forget_user",
        "query_learnings",
    ]


def test_records_are_checked_field_by_field():
    db = ThirdPartyDb()
    with pytest.raises(InvalidIdError, match=r"upsert_session\(\): session.user_id"):
        db.upsert_session(Session(session_id="s", user_id=""), expected_version=None)
    with pytest.raises(InvalidTextError, match=r"append_run\(\): run.messages\[0\].content"):
        db.append_run(Run(session_id="s", messages=[Message(role="user", content="a\x00")]))
    with pytest.raises(InvalidIdError, match=r"learning.namespace"):
        db.upsert_learning(Learning(kind="k", namespace=""))
    with pytest.raises(InvalidTextError, match="must be a string"):
        db.search_memories("u", {"$regex": "."})
    assert db.calls == []


async def test_async_methods_raise_when_awaited_before_the_backend_runs(tmp_path):
    db = AsyncSqliteDb(db_file=tmp_path / "kern.db")
    try:
        with pytest.raises(InvalidIdError):
            await db.forget_user(None)
        with pytest.raises(InvalidIdError):
            await db.search_memories({"$ne": None}, "x")
        assert await db.list_memories("u") == []
    finally:
        await db.close()
    assert issubclass(AsyncSqliteDb, AsyncBaseDb)


def test_guarded_methods_keep_their_name_and_doc():
    assert SqliteDb.list_memories.__name__ == "list_memories"
    assert SqliteDb.list_memories.__kern_checked__ is True


# -- the agent and the curator check before they read or call the model -----------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"session_id": {"$ne": None}}, InvalidIdError),
        ({"session_id": "s", "user_id": 42}, InvalidIdError),
        ({"session_id": "s", "user_id": "a\x00"}, InvalidIdError),
        ({"session_id": "s", "input": "hello\x00"}, InvalidTextError),
        ({"session_id": "s", "input": {"text": "hi"}}, InvalidTextError),
    ],
)
def test_a_turn_with_bad_ids_or_input_stores_nothing_and_asks_no_model(
    scripted, model, db_file, kwargs, error
):
    db = SqliteDb(db_file=db_file)
    agent = Agent(model=model, db=db)
    kwargs = {"input": "hello", **kwargs}
    with pytest.raises(error):
        agent.run(kwargs.pop("input"), **kwargs)
    assert scripted.requests == []
    assert db.list_sessions() == []


async def test_arun_checks_the_same_way(scripted, model, db_file):
    agent = Agent(model=model, db=AsyncSqliteDb(db_file=db_file))
    with pytest.raises(InvalidIdError):
        await agent.arun("hello", session_id="s", user_id=["alice"])
    assert scripted.requests == []


def test_the_curator_checks_a_given_user(db_file):
    lm = LearningMachine(db=SqliteDb(db_file=db_file))
    with pytest.raises(InvalidIdError):
        lm.curator.prune(user_id={"$ne": None}, max_count=1, kinds=["entity"])
    with pytest.raises(KernError, match="pass user_id"):
        lm.curator.prune(max_count=1)  # user memories are curated per user


def test_concurrent_guarded_calls_stay_independent(tmp_path):
    async def main() -> list[list[Memory]]:
        db = AsyncSqliteDb(db_file=tmp_path / "kern.db")
        try:
            await db.upsert_memory(Memory(user_id="a", content="apples"))
            return list(await asyncio.gather(db.list_memories("a"), db.list_memories("b")))
        finally:
            await db.close()

    a, b = asyncio.run(main())
    assert [m.content for m in a] == ["apples"] and b == []
