"""kern's backend conformance suite against Redis: standalone (sync and async) and a
three-master Redis Cluster, run exactly as a third party would.

The read counter is the server's own: the calls of every command in ``INFO commandstats``
(commands run inside Lua scripts included), diffed around the read; on the cluster, summed
over its nodes. ``INFO`` itself is left out. The standalone suites run on ``counting_url``
(a server private to this test session when ``redis-server`` is installed), so no other
client moves the counters.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

pytest.register_assert_rewrite("kern.testing.conformance")

from kern.testing.conformance import AsyncBackendConformance, BackendConformance  # noqa: E402


def command_calls(stats: dict[str, Any]) -> int:
    """Calls of every command in one node's ``INFO commandstats`` but INFO's own."""
    return sum(
        int(entry["calls"])
        for name, entry in stats.items()
        if name.startswith("cmdstat_") and name != "cmdstat_info"
    )


def total_calls(info: dict[str, Any], *, cluster: bool) -> int:
    nodes = info.values() if cluster else [info]
    return sum(command_calls(stats) for stats in nodes)


def info_args(db: Any) -> dict[str, Any]:
    if not db.cluster:
        return {}
    return {"target_nodes": type(db.client).PRIMARIES}


class _OnRedis:
    """Where a suite's databases live: a server URL and a fresh key prefix per test."""

    target: ClassVar[str]
    #: The fixture giving the server: ``counting_url`` or ``cluster_nodes``.
    server: ClassVar[str] = "counting_url"
    url: str
    key_prefix: str

    @pytest.fixture(autouse=True)
    def _isolated(self, redis_space: Callable[[str], tuple[str, str]]) -> None:
        self.url, self.key_prefix = redis_space(self.server)

    def db_factory(self, tmp_path: Path) -> tuple[str, dict[str, Any]]:
        return self.target, {"db_url": self.url, "key_prefix": self.key_prefix}


class _SyncCounting(_OnRedis):
    def count_reads(self, db: Any, fn: Callable[[], Any]) -> int:
        before = total_calls(db.client.info("commandstats", **info_args(db)), cluster=db.cluster)
        fn()
        after = total_calls(db.client.info("commandstats", **info_args(db)), cluster=db.cluster)
        return after - before


class _AsyncCounting(_OnRedis):
    seed_concurrency = 64

    async def count_reads(self, db: Any, fn: Callable[[], Awaitable[Any]]) -> int:
        info = await db.client.info("commandstats", **info_args(db))
        before = total_calls(info, cluster=db.cluster)
        await fn()
        info = await db.client.info("commandstats", **info_args(db))
        return total_calls(info, cluster=db.cluster) - before


class TestRedisConformance(_SyncCounting, BackendConformance):
    target = "kern.db.redis:RedisDb"


class TestAsyncRedisConformance(_AsyncCounting, AsyncBackendConformance):
    target = "kern.db.redis:AsyncRedisDb"


class TestRedisClusterConformance(_SyncCounting, BackendConformance):
    target = "kern.db.redis:RedisDb"
    server = "cluster_nodes"


class TestAsyncRedisClusterConformance(_AsyncCounting, AsyncBackendConformance):
    target = "kern.db.redis:AsyncRedisDb"
    server = "cluster_nodes"
