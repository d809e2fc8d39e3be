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


def _read(ctx: Ctx, session_id: str) -> Cmd:
    return Cmd("hmget", ctx.keys.session_base(session_id) + "session", "v", "c", "u", "rest")


def _parse(fields: list[Any]) -> Session | None:
    version, created, updated, rest = fields
    if version is None or rest is None:
        return None
    return codec.session_from(version, created, updated, rest)


def get_session(ctx: Ctx, session_id: str) -> Plan[Session | None]:
    (fields,) = yield [_read(ctx, session_id)]
    return _parse(fields)


def fetch_sessions(ctx: Ctx, session_ids: list[str]) -> Plan[list[Session | None]]:
    if not session_ids:
        return []
    rows = yield [_read(ctx, sid) for sid in session_ids]
    return [_parse(fields) for fields in rows]


def upsert_session(ctx: Ctx, session: Session, expected_version: int | None) -> Plan[Session]:
    keys = ctx.keys
    sid = session.session_id
    now = utcnow()
    now_us = codec.micros(now)
    version = (expected_version or 0) + 1
    stype = SessionType(session.session_type).value
    entries = keys.session_entries(session.user_id, session.component_id, stype)
    # 1. Join the new indexes first. An update only adds missing entries (the stored
    # session keeps its place until its write succeeds); a create also lifts a leftover
    # entry of an earlier session of that id to now.
    ranks = {"nx": True} if expected_version is not None else {"gt": True}
    yield [*add_to(entries, sid, now_us, **ranks), *register(keys, session.user_id, entries)]
    base = keys.session_base(sid)
    (outcome,) = yield [
        Lua(
            "session_cas",
            (base + "session",),
            (
                base,
                "" if expected_version is None else str(expected_version),
                str(version),
                codec.iso(session.created_at),
                codec.iso(now),
                str(now_us),
                _maybe(session.user_id),
                _maybe(session.component_id),
                stype,
                codec.session_rest(session),
                str(ctx.ttl),
                new_id(),
                "\n".join(entries),
            ),
        )
    ]
    if int(outcome[0]) != 1:
        actual = outcome[1] if len(outcome) > 1 else None
        raise VersionConflictError(sid, expected_version, None if actual is None else int(actual))
    created = codec.parse_time(outcome[1])
    if expected_version is not None:
        # 3. Scores follow the record (entries a slower writer of the version before may
        # just have removed come back); indexes of the fields it had before are left.
        stale = sorted(set(_entries(ctx, *outcome[2:5])) - set(entries))
        yield [*add_to(entries, sid, now_us, gt=True), *remove_from(stale, sid)]
        if stale:
            # 4. If a newer version landed meanwhile, our removals may have hit its entries.
            (current,) = yield [Cmd("hmget", base + "session", "v", "um", "ix")]
            stored_version, stored_us, stored_ix = current
            if stored_version is not None and int(stored_version) != version and stored_ix:
                newer = text(stored_ix).split("\n")
                yield add_to(newer, sid, int(stored_us), gt=True)
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
    ctx: Ctx, session_ids: list[str], *, owner: str | None = None
) -> Plan[list[tuple[bool, int]]]:
    """Delete sessions with their runs, then their index entries and run-id claims.

    With ``owner``, only sessions owned by that user are deleted. Returns, per session,
    ``(the session row existed and was deleted, runs deleted)``.
    """
    if not session_ids:
        return []
    keys = ctx.keys
    guard = "" if owner is None else "=" + owner
    outcomes = yield [
        Lua("delete_session", (base + "session",), (base, guard))
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
