"""Sessions: a hash per session, compare-and-set on its version by a Lua script, and one
sorted-set index per combination of the ``list_sessions`` filters.

Hash ``<p>{s:<id>}:session``: ``v`` version, ``c`` created_at, ``u`` updated_at (text),
``um`` updated_at (µs), ``o`` user_id, ``cid`` component_id, ``t`` session_type, ``rest``
the other fields as JSON. Indexes (see ``Keys.session_entries``): by user, user+component,
user+type, user+component+type (all in the user's slot), component, component+type, type,
and all sessions; member the session id, score updated_at in µs. Every filter combination
of ``list_sessions`` reads exactly one of them: no filtering of unrelated sessions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kern.db.redis import codec
from kern.db.redis.codec import text
from kern.db.redis.indexes import Ctx, add_to, register, remove_from, walk
from kern.db.redis.plans import Cmd, Lua, Plan
from kern.errors import VersionConflictError
from kern.records import Session, SessionType, new_id, utcnow


def _maybe(value: str | None) -> str:
    """Optional text for a script: '' for None, '=' + value otherwise."""
    return "" if value is None else "=" + value


def _entries(ctx: Ctx, user: Any, component: Any, stype: Any) -> list[str]:
    return ctx.keys.session_entries(text(user), text(component), text(stype))


def read_step(ctx: Ctx, session_id: str) -> Cmd:
    return Cmd("hmget", ctx.keys.session_base(session_id) + "session", "v", "c", "u", "rest")


def parse(fields: list[Any]) -> Session | None:
    version, created, updated, rest = fields
    if version is None or rest is None:
        return None
    return codec.session_from(version, created, updated, rest)


def get_session(ctx: Ctx, session_id: str) -> Plan[Session | None]:
    (fields,) = yield [read_step(ctx, session_id)]
    return parse(fields)


def fetch_sessions(ctx: Ctx, session_ids: list[str]) -> Plan[list[Session | None]]:
    if not session_ids:
        return []
    rows = yield [read_step(ctx, sid) for sid in session_ids]
    return [parse(fields) for fields in rows]


def cas_args(
    ctx: Ctx,
    session: Session,
    expected_version: int | None,
    now: datetime,
    *,
    version: int | None = None,
) -> tuple[list[str], tuple[str, ...]]:
    """The session's index keys and the arguments of the ``session_cas`` script (which
    ``commit_turn`` scripts start with), for a write at ``now`` of ``version`` (by default
    the one after ``expected_version``; an import keeps the version it was given)."""
    keys = ctx.keys
    if version is None:
        version = (expected_version or 0) + 1
    stype = SessionType(session.session_type).value
    entries = keys.session_entries(session.user_id, session.component_id, stype)
    args = (
        keys.session_base(session.session_id),
        "" if expected_version is None else str(expected_version),
        str(version),
        codec.iso(session.created_at),
        codec.iso(now),
        str(codec.micros(now)),
        _maybe(session.user_id),
        _maybe(session.component_id),
        stype,
        codec.session_rest(session),
        str(ctx.ttl),
        new_id(),
        "\n".join(entries),
    )
    return entries, args


def join_indexes(
    ctx: Ctx, session: Session, entries: list[str], expected_version: int | None, score: int
) -> list[Cmd]:
    """Step 1 of a session write (``kern.db.redis.indexes``): join the new indexes first. An
    update only adds missing entries (the stored session keeps its place until its write
    succeeds); a create also lifts a leftover entry of an earlier session of that id."""
    ranks = {"nx": True} if expected_version is not None else {"gt": True}
    sid = session.session_id
    return [*add_to(entries, sid, score, **ranks), *register(ctx.keys, session.user_id, entries)]


def conflict(session_id: str, expected_version: int | None, outcome: list[Any]) -> Exception:
    actual = outcome[1] if len(outcome) > 1 else None
    return VersionConflictError(
        session_id, expected_version, None if actual is None else int(text(actual))
    )


def settle_indexes(
    ctx: Ctx, session_id: str, entries: list[str], version: int, score: int, old: list[Any]
) -> Plan[None]:
    """Steps 3 and 4 of an update that replaced a session whose owner, component and type
    were ``old``: scores follow the record (entries a slower writer of the version before
    may just have removed come back), indexes of the fields it had before are left, and if
    a newer version landed meanwhile, its entries our removals may have hit come back."""
    stale = sorted(set(_entries(ctx, *old)) - set(entries))
    yield [*add_to(entries, session_id, score, gt=True), *remove_from(stale, session_id)]
    if stale:
        base = ctx.keys.session_base(session_id)
        (current,) = yield [Cmd("hmget", base + "session", "v", "um", "ix")]
        stored_version, stored_us, stored_ix = current
        if stored_version is not None and int(stored_version) != version and stored_ix:
            newer = text(stored_ix).split("\n")
            yield add_to(newer, session_id, int(stored_us), gt=True)


def upsert_session(ctx: Ctx, session: Session, expected_version: int | None) -> Plan[Session]:
    sid = session.session_id
    now = utcnow()
    now_us = codec.micros(now)
    version = (expected_version or 0) + 1
    entries, args = cas_args(ctx, session, expected_version, now)
    # 1. Join the new indexes first; 2. the compare-and-set, in the session's slot.
    yield join_indexes(ctx, session, entries, expected_version, now_us)
    (outcome,) = yield [Lua("session_cas", (args[0] + "session",), args)]
    if int(outcome[0]) != 1:
        raise conflict(sid, expected_version, outcome)
    created = codec.parse_time(outcome[1])
    if expected_version is not None:
        # 3. and 4.: the indexes follow the record.
        yield from settle_indexes(ctx, sid, entries, version, now_us, outcome[2:5])
    return session.model_copy(update={"version": version, "updated_at": now, "created_at": created})


def list_sessions(
    ctx: Ctx,
    *,
    user_id: str | None,
    component_id: str | None,
    session_type: SessionType | str | None,
    limit: int,
    offset: int,
) -> Plan[list[Session]]:
    stype = None if session_type is None else SessionType(session_type).value
    index = ctx.keys.session_index(user_id, component_id, stype)

    def accept(session: Session) -> bool:
        return (
            (user_id is None or session.user_id == user_id)
            and (component_id is None or session.component_id == component_id)
            and (stype is None or session.session_type == stype)
        )

    return (yield from walk(index, offset, limit, lambda ids: fetch_sessions(ctx, ids), accept))


def delete_sessions(
    ctx: Ctx, session_ids: list[str], *, owner: str | None = None, idle_before: int | None = None
) -> Plan[list[tuple[bool, int]]]:
    """Delete sessions with their runs, then their index entries and run-id claims.

    With ``owner``, only sessions owned by that user are deleted; with ``idle_before``
    (µs), only stored sessions last updated before it that hold no running run (retention's
    ``idle_sessions``), checked by the script. Returns, per session, ``(the session row
    existed and was deleted, runs deleted)``.
    """
    if not session_ids:
        return []
    keys = ctx.keys
    guard = "" if owner is None else "=" + owner
    idle = () if idle_before is None else (str(idle_before),)
    outcomes = yield [
        Lua("delete_session", (base + "session",), (base, guard, *idle))
        for base in (keys.session_base(sid) for sid in session_ids)
    ]
    done: list[tuple[bool, int]] = []
    cleanup: list[Cmd] = []
    for session_id, outcome in zip(session_ids, outcomes, strict=True):
        if int(outcome[0]) == -1:
            done.append((False, 0))
            continue
        existed, user, component, stype, run_ids, users = outcome
        cleanup += [Cmd("delete", keys.claim(text(rid))) for rid in run_ids]
        if run_ids:
            cleanup.append(Cmd("zrem", keys.run_sessions, session_id))
        if int(existed):
            cleanup += remove_from(_entries(ctx, user, component, stype), session_id)
        # The session's script keeps its runs' user ids quoted, as in key names.
        cleanup += [Cmd("srem", keys.user_base_quoted(text(u)) + "rs", session_id) for u in users]
        done.append((bool(int(existed)), len(run_ids)))
    if cleanup:
        yield cleanup
    return done


def delete_session(ctx: Ctx, session_id: str) -> Plan[bool]:
    ((existed, _),) = yield from delete_sessions(ctx, [session_id])
    return existed
