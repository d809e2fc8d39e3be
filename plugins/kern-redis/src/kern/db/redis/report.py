"""``storage_report``: what ``kern doctor`` reads of a Redis database, changing nothing.

Reads only (``INFO``, ``HGETALL``, ``ZCARD``, ``SMEMBERS``): the db runs this plan without
``create_tables`` first (``RedisPlans.as_found``), so a database kern never wrote to shows
no versions instead of getting them recorded.

- ``schema_versions``: the hash ``<prefix>{meta}:schema`` (``kern.db.redis.schema``);
- ``missing``: that hash, when kern's keys are there but no version is recorded (they were
  written by a kern that records none, or the hash was deleted): nothing else is created
  ahead of time in Redis, every other key is made by the write that needs it;
- ``capabilities``: text and vector search (kern's own, on any Redis: RediSearch is not
  used), and two server settings kern's data depends on: an eviction policy that never
  drops kern's keys, and the append-only file;
- ``counts``: sessions, memories and learnings from the cardinality of the indexes of all of
  them (``{sa}``, the vector state sets of ``{ma}``, ``{la}``): cheap, and they may count an
  entry a crash left behind. Runs are left out: no index lists every run (a count would walk
  every session).
"""

from __future__ import annotations

from typing import Any

from kern.db.redis import schema
from kern.db.redis.codec import text
from kern.db.redis.indexes import Ctx
from kern.db.redis.keys import vector_models, vector_state
from kern.db.redis.plans import Cmd, Plan, together
from kern.db.report import Capability, StorageReport

#: What the search paths are, whatever the server (``kern.db.redis.text``, ``.embeddings``).
SEARCH = [
    Capability(
        "text search",
        True,
        "kern's own word indexes (a sorted set per word and scope), ranked by BM25: works on "
        "any Redis, RediSearch is not needed",
    ),
    Capability(
        "vector search",
        True,
        "exact cosine over the float32 vectors of the rows a filter names (one user's "
        "memories, the smallest learning index): no vector index, so its cost follows those "
        "rows, not the database; RediSearch is not used",
    ),
]
CONFIG_FIX = "CONFIG SET {setting} {value} on each server, and {setting} {value} in redis.conf"


def storage_report(ctx: Ctx, target: str) -> Plan[StorageReport]:
    info_call = Cmd("info", target_nodes="primaries") if ctx.cluster else Cmd("info")
    (info,) = yield [info_call]
    nodes = list(info.values()) if ctx.cluster else [info]
    versions, counts = yield from together(schema.read_versions(ctx), _counts(ctx))
    missing = []
    if not versions and any(counts.values()):
        missing.append(
            f"{ctx.keys.schema} (the schema versions hash: kern's keys are there but no "
            "version is recorded)"
        )
    return StorageReport(
        backend="redis",
        target=target,
        server_version=_version(nodes),
        schema_versions=versions,
        expected_versions=dict(schema.TARGETS),
        missing=missing,
        capabilities=[*SEARCH, _eviction(nodes), _durability(nodes)],
        counts=counts,
    )


def _counts(ctx: Ctx) -> Plan[dict[str, int]]:
    keys = ctx.keys
    memories = keys.all_memories
    sessions, learnings, unembedded, models = yield [
        Cmd("zcard", keys.all_sessions),
        Cmd("zcard", keys.learning_index("all", None, None)),
        Cmd("zcard", vector_state(memories, None)),
        Cmd("smembers", vector_models(memories)),
    ]
    embedded: list[Any] = []
    if models:
        embedded = yield [
            Cmd("zcard", vector_state(memories, str(text(m)))) for m in sorted(models)
        ]
    return {
        "sessions": int(sessions),
        "memories": int(unembedded) + sum(int(n) for n in embedded),
        "learnings": int(learnings),
    }


def _version(nodes: list[dict[str, Any]]) -> str | None:
    names = sorted(
        {
            f"Valkey {node['valkey_version']}"
            if "valkey_version" in node
            else f"Redis {node['redis_version']}"
            for node in nodes
            if "redis_version" in node or "valkey_version" in node
        }
    )
    return ", ".join(names) or None


def _eviction(nodes: list[dict[str, Any]]) -> Capability:
    policies = sorted({str(node.get("maxmemory_policy", "noeviction")) for node in nodes})
    said = f"maxmemory-policy {', '.join(policies)}"
    if any(policy.startswith("allkeys") for policy in policies):
        return Capability(
            "keys never evicted",
            False,
            f"{said}: when memory is full Redis drops keys of any kind, runs and indexes of "
            "kern's among them (data lost, indexes that no longer match their records)",
            CONFIG_FIX.format(setting="maxmemory-policy", value="noeviction"),
        )
    return Capability(
        "keys never evicted",
        True,
        f"{said}: kern's keys are not dropped to make room (only keys with a TTL may be, "
        "under a volatile-* policy: sessions of a db with session_ttl)",
    )


def _durability(nodes: list[dict[str, Any]]) -> Capability:
    if all(int(node.get("aof_enabled", 0)) for node in nodes):
        return Capability("append-only file", True, "every write is logged to the AOF")
    return Capability(
        "append-only file",
        False,
        "the append-only file is off: what was written since the last RDB snapshot (if the "
        "server takes any) is lost when the server restarts",
        CONFIG_FIX.format(setting="appendonly", value="yes"),
    )
