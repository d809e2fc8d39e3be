"""What the Redis tests count on the server: commands run, per command (``INFO
commandstats``), shared by the test modules beside this file (conftest.py puts this folder
on ``sys.path``)."""

from __future__ import annotations

from typing import Any

import redis.cluster


def command_calls(client: Any, *, cluster: bool) -> dict[str, int]:
    """Calls per command from ``INFO commandstats`` (summed over a cluster's primaries)."""
    if cluster:
        nodes = client.info("commandstats", target_nodes=redis.cluster.RedisCluster.PRIMARIES)
        stats = list(nodes.values())
    else:
        stats = [client.info("commandstats")]
    calls: dict[str, int] = {}
    for node in stats:
        for name, entry in node.items():
            if name.startswith("cmdstat_") and name != "cmdstat_info":
                command = name.removeprefix("cmdstat_")
                calls[command] = calls.get(command, 0) + int(entry["calls"])
    return calls


def diff(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The commands whose count changed between two ``command_calls``, by how much."""
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
