"""The Redis plans and their runners, without a server: the contract's builders, and what a
failed step does to the plan that sent it (``kern.effects`` throws it in at the ``yield``)."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException

from kern.db.base import AsyncBaseDb, BaseDb
from kern.db.planned import AsyncPlannedDb, ContractPlans, PlannedDb
from kern.db.redis import AsyncRedisDb, RedisDb
from kern.db.redis.contract import RedisPlans
from kern.db.redis.plans import (
    AsyncRunner,
    ClusterUnreachableError,
    Cmd,
    Plan,
    SyncRunner,
    together,
)

CONTRACT = sorted(name for name in vars(ContractPlans) if not name.startswith("_"))


def _shape(function: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("name", CONTRACT)
def test_each_plan_builder_takes_its_contract_methods_arguments(name: str) -> None:
    assert _shape(getattr(RedisPlans, name)) == _shape(getattr(BaseDb, name))


@pytest.mark.parametrize(
    ("cls", "base", "contract"),
    [(RedisDb, PlannedDb, BaseDb), (AsyncRedisDb, AsyncPlannedDb, AsyncBaseDb)],
)
def test_the_contract_methods_are_the_planned_dbs(cls: type, base: type, contract: type) -> None:
    """Written out once in ``kern.db.planned``: none made by the class, none left abstract."""
    assert not cls.__abstractmethods__  # type: ignore[attr-defined]
    assert issubclass(cls, contract)
    for name in CONTRACT:
        assert getattr(cls, name) is getattr(base, name), name


class _Client:
    """Answers every ``get`` with ``reply``, or raises it when it is an exception."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply

    def register_script(self, source: str) -> Any:
        return None

    def answer(self) -> Any:
        if isinstance(self.reply, BaseException):
            raise self.reply
        return self.reply

    def get(self, key: str) -> Any:
        return self.answer()

    def pipeline(self, *, transaction: bool) -> Any:
        return _Pipeline(self)


class _Pipeline:
    def __init__(self, client: _Client) -> None:
        self.client = client
        self.queued = 0

    def get(self, key: str) -> None:
        self.queued += 1

    def execute(self) -> list[Any]:
        return [self.client.answer() for _ in range(self.queued)]


class _AsyncClient(_Client):
    async def get(self, key: str) -> Any:
        return self.answer()

    def pipeline(self, *, transaction: bool) -> Any:
        return _AsyncPipeline(self)


class _AsyncPipeline(_Pipeline):
    async def execute(self) -> list[Any]:  # type: ignore[override]
        return super().execute()


def _read() -> Plan[Any]:
    (value,) = yield [Cmd("get", "k")]
    return value


def _careful() -> Plan[str]:
    try:
        yield [Cmd("get", "k")]
    except ClusterUnreachableError:
        return "handled"
    return "answered"


def _run(reply: Any, plan: Plan[Any], *, flavour: str) -> Any:
    if flavour == "sync":
        return SyncRunner(_Client(reply), cluster=False, limit=1).run(plan)
    runner = AsyncRunner(_AsyncClient(reply), cluster=False, limit=1)
    return asyncio.run(runner.run(plan))


def _cluster_down() -> RedisClusterException:
    error = RedisClusterException("Redis Cluster cannot be connected.")
    error.__cause__ = RedisConnectionError("refused")
    return error


FLAVOURS = pytest.mark.parametrize("flavour", ["sync", "async"])


@FLAVOURS
def test_a_plan_gets_its_replies(flavour: str) -> None:
    assert _run(b"v", _read(), flavour=flavour) == b"v"
    assert _run(b"v", together(_read(), _read()), flavour=flavour) == (b"v", b"v")


@FLAVOURS
def test_a_failed_step_leaves_the_plan_unchanged(flavour: str) -> None:
    """Thrown in at the ``yield`` of a plan (or of ``together``) that does not catch it."""
    lost = RedisConnectionError("lost")
    for plan in (_read(), together(_read(), _read())):
        with pytest.raises(RedisConnectionError) as error:
            _run(lost, plan, flavour=flavour)
        assert error.value is lost


@FLAVOURS
def test_an_unreachable_cluster_is_a_connection_error(flavour: str) -> None:
    down = _cluster_down()
    with pytest.raises(ClusterUnreachableError) as error:
        _run(down, _read(), flavour=flavour)
    assert error.value.__cause__ is down
    assert _run(_cluster_down(), _careful(), flavour=flavour) == "handled"


@FLAVOURS
def test_other_cluster_errors_pass_unchanged(flavour: str) -> None:
    odd = RedisClusterException("no startup nodes")
    with pytest.raises(RedisClusterException) as error:
        _run(odd, _read(), flavour=flavour)
    assert error.value is odd and error.value.__cause__ is None
