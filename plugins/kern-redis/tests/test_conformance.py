"""kern's backend conformance suite against Redis: standalone (sync and async) and a
three-master Redis Cluster, run exactly as a third party would.

The read counter is the server's own: the calls of every command in ``INFO commandstats``
(commands run inside Lua scripts included), diffed around the read; on the cluster, summed
over its nodes. ``INFO`` itself is left out. The standalone suites run on ``counting_url``
(a server private to this test session when ``redis-server`` is installed), so no other
client moves the counters.

The raw scan reads every key under the test's key prefix with its value(s), whatever its
type, with a plain redis-py client of its own (a ``RedisCluster`` on the cluster, which
scans every master).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any, ClassVar

import pytest
import redis
import redis.cluster

from kern.testing.conformance import AsyncBackendConformance, BackendConformance, Capabilities


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


def raw_text(value: Any) -> str:
    """A reply as text: bytes byte for byte (latin-1), containers item by item."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, dict):
        return "{" + ", ".join(f"{raw_text(k)}: {raw_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple | set):
        return "[" + ", ".join(raw_text(item) for item in value) + "]"
    return str(value)


def key_value(client: Any, key: bytes) -> str:
    """``<key> (<type>): <value>`` for one key of any type."""
    kind = raw_text(client.type(key))
    value: Any
    if kind == "string":
        value = client.get(key)
    elif kind == "hash":
        value = client.hgetall(key)
    elif kind == "set":
        value = sorted(client.smembers(key))
    elif kind == "zset":
        value = client.zrange(key, 0, -1, withscores=True)
    elif kind == "list":
        value = client.lrange(key, 0, -1)
    elif kind == "stream":
        value = client.xrange(key)
    else:  # gone meanwhile ("none"), or a module's type
        value = None
    return f"{raw_text(key)} ({kind}): {raw_text(value)}"


def redis_keys(url: str, prefix: str, *, cluster: bool) -> list[str]:
    """Every key under ``prefix`` with its value(s), read with a client of its own."""
    if cluster:
        client: Any = redis.cluster.RedisCluster.from_url(url.split("?", 1)[0])
    else:
        client = redis.Redis.from_url(url)
    with closing(client):
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"
        return sorted(key_value(client, key) for key in client.scan_iter(match=pattern))


def info_args(db: Any) -> dict[str, Any]:
    if not db.cluster:
        return {}
    return {"target_nodes": type(db.client).PRIMARIES}


class _OnRedis:
    """Where a suite's databases live: a server URL and a fresh key prefix per test."""

    target: ClassVar[str]
    #: Every capability, standalone and on the cluster, sync and async: the full contract.
    capabilities = Capabilities()
    #: The fixture giving the server: ``counting_url`` or ``cluster_nodes``.
    server: ClassVar[str] = "counting_url"
    url: str
    key_prefix: str

    @pytest.fixture(autouse=True)
    def _isolated(self, redis_space: Callable[[str], tuple[str, str]]) -> None:
        self.url, self.key_prefix = redis_space(self.server)

    def db_factory(self, tmp_path: Path) -> tuple[str, dict[str, Any]]:
        return self.target, {"db_url": self.url, "key_prefix": self.key_prefix}

    def raw_scan(self, db: Any) -> list[str]:
        return redis_keys(self.url, db.key_prefix, cluster=self.server == "cluster_nodes")


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
