"""Schema versions: what layout of keys a database holds, and migrations forward.

Redis has no tables to create; what kern records is the version of each logical table's
key layout, in the hash ``<prefix>{meta}:schema`` (``<table>`` -> version, ``<table>:at``
-> when it was reached). ``create_tables`` compares it with ``TARGETS`` and, if anything is
behind, takes a short lock key (``SET NX EX``), re-reads, runs the pending steps of
``MIGRATIONS`` in order and records each version: several processes starting at once do
the work once. A database with no version recorded holds no kern data yet (every kern
process records them before its first write), so it only gets ``TARGETS`` recorded.

Versions: 1, the first layout of each table; memories and learnings 2, their vector state
sets; runs 2, the created_at index retention reads (``kern.db.redis.migrate``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kern.db.redis import codec, migrate
from kern.db.redis.codec import text
from kern.db.redis.indexes import Ctx
from kern.db.redis.plans import Cmd, Plan
from kern.records import utcnow

#: A migration step: (version reached, description, plan doing the work).
Migration = tuple[int, str, Callable[[Ctx], Plan[None]]]


def _nothing(ctx: Ctx) -> Plan[None]:
    return
    yield  # a plan with no step


#: Logical table -> its steps, oldest first. Add new steps at the end of a list.
MIGRATIONS: dict[str, list[Migration]] = {
    name: [(1, f"key layout of {name} (version 1)", _nothing)]
    for name in ("sessions", "runs", "memories", "learnings")
}
MIGRATIONS["memories"].append(
    (2, "vector state sets {ma}: every memory in nv", migrate.memory_vector_states)
)
MIGRATIONS["learnings"].append(
    (2, "vector state sets {la}, {lk:<kind>}: every learning in nv", migrate.learning_vector_states)
)
MIGRATIONS["runs"].append(
    (2, "runs by created_at r:ct, sessions holding runs {ro}", migrate.run_created_index)
)
TARGETS = {name: steps[-1][0] for name, steps in MIGRATIONS.items()}
#: Seconds the migration lock is held at most (a crashed migrator frees it).
LOCK_SECONDS = 60


def _versions(raw: dict[Any, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in raw.items():
        name = text(key)
        if name in TARGETS:
            out[name] = int(text(value))
    return out


def is_current(stored: dict[str, int]) -> bool:
    return all(stored.get(name, 0) >= version for name, version in TARGETS.items())


def read_versions(ctx: Ctx) -> Plan[dict[str, int]]:
    (raw,) = yield [Cmd("hgetall", ctx.keys.schema)]
    return _versions(raw)


def create_tables(ctx: Ctx) -> Plan[int]:
    """Bring the recorded versions up to ``TARGETS``; return how many steps ran (0 if none).

    Returns -1 when another process holds the migration lock: the caller waits and retries.
    """
    stored = yield from read_versions(ctx)
    if is_current(stored):
        return 0
    lock = ctx.keys.schema + ":lock"
    (locked,) = yield [Cmd("set", lock, "1", nx=True, ex=LOCK_SECONDS)]
    if not locked:
        return -1
    # A migrator that fails leaves the lock to expire (LOCK_SECONDS); nothing half-done
    # is recorded, and steps are written to be run again.
    stored = yield from read_versions(ctx)
    if not stored:  # a new database: nothing to migrate
        at = codec.iso(utcnow())
        versions: dict[str, Any] = {}
        for name, version in TARGETS.items():
            versions |= {name: version, f"{name}:at": at}
        yield [Cmd("hset", ctx.keys.schema, mapping=versions), Cmd("delete", lock)]
        return 0
    ran = 0
    for name, steps in MIGRATIONS.items():
        for version, _description, step in steps:
            if version <= stored.get(name, 0):
                continue
            yield from step(ctx)
            at = codec.iso(utcnow())
            yield [Cmd("hset", ctx.keys.schema, mapping={name: version, f"{name}:at": at})]
            ran += 1
    yield [Cmd("delete", lock)]
    return ran
