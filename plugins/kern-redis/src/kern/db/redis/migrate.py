"""Migration steps of the key layout (``kern.db.redis.schema.MIGRATIONS``).

Version 2 of memories and of learnings adds the vector state sets (``kern.db.redis.keys``):
every row written since is in one, and these steps put the rows of an older database in the
set of rows without a vector, so ``*_without_embedding`` finds them to backfill. Rows keep
their keys and JSON: nothing else changes. Each step may run again after a crash (``ZADD
NX``: an entry already made is left as it is).

Version 2 of runs adds what retention reads (``kern.db.redis.retention``): each session's
runs by created_at (``r:ct``, in its slot) and the index of sessions holding runs by their
oldest run (``{ro}:sess``). Sessions holding runs are found by ``SCAN`` of their ``runs``
hashes (a session written by ``append_run`` alone is in no index of the older layout), once,
under the migration lock; their runs are read by seq in pages.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kern.db.redis import codec, docs, learnings, memories
from kern.db.redis.codec import text
from kern.db.redis.docs import D, DocSpec
from kern.db.redis.indexes import Ctx
from kern.db.redis.plans import Cmd, Plan, Scan

#: Rows read per step, and keys a ``SCAN`` round asks each node for.
BATCH = 500
SCAN_COUNT = 1000


def _enter_unembedded(spec: DocSpec[D], found: Iterable[D | None]) -> list[Cmd]:
    """Put each row in its "no vector" sets, at its updated_at (an older layout had none)."""
    entries: dict[str, dict[str, int]] = {}
    for doc in found:
        if doc is None:
            continue
        at = codec.micros(doc.updated_at)  # type: ignore[attr-defined]
        for key in spec.states(doc, None):
            entries.setdefault(key, {})[spec.id_of(doc)] = at
    return [Cmd("zadd", key, members, nx=True) for key, members in sorted(entries.items())]


def memory_vector_states(ctx: Ctx) -> Plan[None]:
    """Memories v2. No index of the older layout lists every memory (only each user's, and
    users are not listed), so this step, and nothing else, finds them by ``SCAN`` of the
    record keys ``<prefix>{m:<id>}``: once, under the migration lock."""
    spec = memories.spec(ctx)
    pattern = ctx.keys.family("m")
    cursor: Any = 0
    while True:
        ((cursor, names),) = yield [Scan(pattern, cursor, SCAN_COUNT)]
        names = [str(text(name)) for name in names]
        for start in range(0, len(names), BATCH):
            chunk = names[start : start + BATCH]
            (raws,) = yield [ctx.mget(chunk)]
            adds = _enter_unembedded(spec, (docs.parse_or_none(spec, raw) for raw in raws))
            if adds:
                yield adds
        if cursor == 0:
            return


def learning_vector_states(ctx: Ctx) -> Plan[None]:
    """Learnings v2: every learning is in the index of all learnings, read in batches."""
    spec = learnings.spec(ctx)
    index = ctx.keys.learning_index("all", None, None)
    position = 0
    while True:
        (members,) = yield [Cmd("zrange", index, position, position + BATCH - 1)]
        if not members:
            return
        found = yield from docs.fetch(ctx, spec, [str(text(m)) for m in members])
        adds = _enter_unembedded(spec, found)
        if adds:
            yield adds
        position += BATCH


def run_created_index(ctx: Ctx) -> Plan[None]:
    """Runs v2: ``r:ct`` of every session holding runs, and its entry in ``{ro}``."""
    keys = ctx.keys
    cursor: Any = 0
    while True:
        ((cursor, names),) = yield [Scan(keys.family("s", ":runs"), cursor, SCAN_COUNT, "hash")]
        for name in names:
            yield from _index_session_runs(ctx, keys.id_in(str(text(name)), "s"))
        if cursor == 0:
            return


def _index_session_runs(ctx: Ctx, session_id: str) -> Plan[None]:
    base = ctx.keys.session_base(session_id)
    position = 0
    oldest: int | None = None
    while True:
        (ids,) = yield [Cmd("zrange", base + "r:all", position, position + BATCH - 1)]
        if not ids:
            break
        (raws,) = yield [Cmd("hmget", base + "runs", *ids)]
        created = {
            str(text(rid)): codec.micros(codec.run_from(raw).created_at)
            for rid, raw in zip(ids, raws, strict=True)
            if raw is not None
        }
        if created:
            expiry = [Cmd("expire", base + "r:ct", ctx.ttl)] if ctx.ttl else []
            yield [Cmd("zadd", base + "r:ct", created, nx=True), *expiry]
            least = min(created.values())
            oldest = least if oldest is None else min(oldest, least)
        position += BATCH
    if oldest is not None:
        yield [Cmd("zadd", ctx.keys.run_sessions, {session_id: oldest}, lt=True)]
