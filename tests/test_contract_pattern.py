"""The storage contract's shape: typed storage calls, and classes a type checker can read."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest

from kern import storage
from kern.db.base import AsyncBaseDb, BaseDb
from kern.effects import DbCall, run
from kern.records import Session

#: Every public method of the contract (the abstract ones and those with a default).
CONTRACT = sorted(
    name
    for name, member in vars(BaseDb).items()
    if inspect.isfunction(member) and not name.startswith("_")
)

BACKEND_CLASSES = [
    "kern.db.sqlite:SqliteDb",
    "kern.db.sqlite:AsyncSqliteDb",
    "kern.db.postgres:PostgresDb",
    "kern.db.postgres:AsyncPostgresDb",
    "kern.db.duckdb:DuckDb",
    "kern.db.duckdb:AsyncDuckDb",
    "kern.db.mongo:MongoDb",
    "kern.db.mongo:AsyncMongoDb",
    "kern.db.redis:RedisDb",
    "kern.db.redis:AsyncRedisDb",
]


def load(path: str) -> type[Any]:
    module, name = path.split(":")
    cls: type[Any] = getattr(importlib.import_module(module), name)
    return cls


def unwrapped(function: Any) -> Any:
    return inspect.unwrap(function)  # the door wraps contract methods (functools.wraps)


def test_the_contract_lists_recall_memories_and_commit_turn():
    assert {"recall_memories", "commit_turn", "forget_user"} <= set(CONTRACT)
    assert set(CONTRACT) == {
        name
        for name, member in vars(AsyncBaseDb).items()
        if inspect.isfunction(member) and not name.startswith("_")
    }


@pytest.mark.parametrize("name", [name for name in CONTRACT if name != "close"])
def test_each_contract_method_has_a_storage_call_with_its_signature(name):
    """(``close`` has none: logic run on a db never closes it.)"""
    factory = getattr(storage, name)
    contract = inspect.signature(getattr(BaseDb, name))
    parameters = list(contract.parameters.values())[1:]  # without self
    assert list(inspect.signature(factory).parameters.values()) == parameters
    assert factory.__doc__ == getattr(BaseDb, name).__doc__
    required = [p.name for p in parameters if p.default is p.empty]
    call = factory(**{parameter: f"{parameter}-value" for parameter in required})
    assert isinstance(call, DbCall) and call.method == name
    assert dict(call.kwargs) == {parameter: f"{parameter}-value" for parameter in required}


def test_a_storage_call_is_typed_and_returns_what_the_db_returns():
    seen: list[DbCall[Any]] = []

    def turn() -> Any:
        session = yield from storage.get_session("s1")
        return session

    def perform(effect: DbCall[Any]) -> Session:
        seen.append(effect)
        return Session(session_id=effect.args[0])

    result = run(turn(), perform)
    assert isinstance(result, Session) and result.session_id == "s1"
    assert seen == [DbCall("get_session", ("s1",), {})]


@pytest.mark.parametrize("path", BACKEND_CLASSES)
def test_backend_methods_are_written_in_a_class_body_not_generated(path):
    """No ``setattr``-made methods: each contract method is a function defined under its own
    name (so a type checker and a reader find it), and the class is not abstract."""
    cls = load(path)
    assert not inspect.isabstract(cls), f"{path} leaves {cls.__abstractmethods__} abstract"
    for name in CONTRACT:
        function = unwrapped(getattr(cls, name))
        assert function.__code__.co_name == name, (
            f"{path}.{name} is the function {function.__code__.co_name!r} "
            f"({inspect.getsourcefile(function)}): generated, not written in a class body"
        )
        owner = next(klass for klass in cls.__mro__ if name in vars(klass))
        assert unwrapped(vars(owner)[name]) is function
