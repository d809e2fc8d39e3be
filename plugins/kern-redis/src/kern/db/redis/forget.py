"""``forget_user``: every record holding a user's data, found through the user's own keys.

Nothing is scanned. The user's slot ``{u:<user_id>}`` indexes what is theirs, and because
every writer adds a record to those indexes *before* it writes the record, no record of the
user can exist without being listed there:

1. sessions owned by the user (index ``sess``): each deleted with all its runs, by a script
   in the session's slot that checks the owner again;
2. sessions holding runs of the user (set ``rs``): the user's runs deleted from each;
3. memories (index ``m``) and learnings (index ``l:ix``, and those tied to a deleted
   session): deleted with their vectors when the record still names the user (or the
   session) and still holds what was read (``delete_doc_if_equal``), then removed from
   indexes in other slots (the vector state sets among them);
4. last, every key of the user's slot, by its registry, in one script.

Each step is atomic in its own slot; the whole is not one transaction (no Redis Cluster
operation spans slots). Run it for a user who is no longer writing: a write racing with it
may survive, and calling ``forget_user`` again removes it (counts then report what was
left). A second call on a forgotten user finds nothing and returns zeros.
"""

from __future__ import annotations

from kern.db.redis import docs
from kern.db.redis.codec import text
from kern.db.redis.docs import D, DocSpec
from kern.db.redis.indexes import Ctx, remove_from
from kern.db.redis.keys import q
from kern.db.redis.plans import Cmd, Lua, Plan
from kern.db.redis.sessions import delete_sessions
from kern.records import Learning, Memory


def forget_user(
    ctx: Ctx, memory_spec: DocSpec[Memory], learning_spec: DocSpec[Learning], user_id: str
) -> Plan[dict[str, int]]:
    keys = ctx.keys
    counts = {"sessions": 0, "runs": 0, "memories": 0, "learnings": 0}
    lists = yield [
        Cmd("zrange", keys.session_index(user_id, None, None), 0, -1),
        Cmd("smembers", keys.user_run_sessions(user_id)),
        Cmd("zrange", keys.memory_index(user_id), 0, -1),
        Cmd("zrange", keys.learning_index("user_id", user_id, None), 0, -1),
    ]
    session_ids, run_session_ids, memory_ids, learning_ids = (
        sorted({text(member) for member in found}) for found in lists
    )

    # 1. The user's sessions, with every run in them.
    owned: list[str] = []
    for sid, (deleted, runs) in zip(
        session_ids, (yield from delete_sessions(ctx, session_ids, owner=user_id)), strict=True
    ):
        counts["runs"] += runs
        if deleted:
            counts["sessions"] += 1
            owned.append(sid)

    # 2. The user's runs in other sessions.
    gone_sessions = set(owned)
    others = [sid for sid in run_session_ids if sid not in gone_sessions]
    if others:
        bases = [keys.session_base(sid) for sid in others]
        gone = yield [Lua("forget_runs", (b + "runs",), (b, q(user_id))) for b in bases]
        run_ids = [text(rid) for ids, _ in gone for rid in ids]
        counts["runs"] += len(run_ids)
        # A session left with no run leaves the index of sessions holding runs.
        emptied = [sid for sid, (_, left) in zip(others, gone, strict=True) if not int(left)]
        cleanup = [Cmd("delete", keys.claim(rid)) for rid in run_ids]
        if emptied:
            cleanup.append(Cmd("zrem", keys.run_sessions, *emptied))
        if cleanup:
            yield cleanup

    # 3. Memories and learnings.
    found_memories = yield from docs.fetch_raw(ctx, memory_spec, memory_ids)
    mine = [pair for pair in found_memories if pair is not None and pair[0].user_id == user_id]
    deleted_memories = yield from docs.delete_exact(ctx, memory_spec, mine)
    counts["memories"] = len(deleted_memories)

    if owned:
        linked = yield [
            Cmd("zrange", keys.learning_index("session_id", sid, None), 0, -1) for sid in owned
        ]
        learning_ids = sorted({*learning_ids, *(text(m) for ids in linked for m in ids)})
    tied = gone_sessions
    found_learnings = yield from docs.fetch_raw(ctx, learning_spec, learning_ids)
    theirs = [
        pair
        for pair in found_learnings
        if pair is not None and (pair[0].user_id == user_id or pair[0].session_id in tied)
    ]
    deleted_learnings = yield from docs.delete_exact(ctx, learning_spec, theirs)
    counts["learnings"] = len(deleted_learnings)

    user_base = keys.user_base(user_id)
    elsewhere = [
        *_outside(memory_spec, deleted_memories, user_base),
        *_outside(learning_spec, deleted_learnings, user_base),
    ]
    if elsewhere:
        yield elsewhere

    # 4. The user's slot, whole.
    yield [Lua("purge_registry", (keys.user_registry(user_id),), ())]
    return counts


def _outside(spec: DocSpec[D], gone: list[tuple[D, str | None]], user_base: str) -> list[Cmd]:
    """Removal of deleted documents from their entries outside the user's slot."""
    out: list[Cmd] = []
    for doc, model in gone:
        entries = [k for k in spec.every_entry(doc, model) if not k.startswith(user_base)]
        out += remove_from(entries, spec.id_of(doc))
    return out
