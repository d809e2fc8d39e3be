"""``commit_turn``: a turn's run and its session, written by ONE script in the session's slot.

The session hash and the run (``runs``, ``seq`` and the run's seq indexes) share the
session's hash tag ``{s:<session_id>}``, so one Lua script (``lua.COMMIT_TURN``, composed of
the pieces ``upsert_session`` and ``append_run`` use: ``cas_read``/``cas_write``,
``store_run``, ``follow_run``) writes both or neither: Redis runs a script atomically, and
the script makes every check before its first write, so no error stops it halfway (Redis
would not undo the writes before it). There is no moment at which a crash, a lost
connection or a script error leaves a session counting a turn whose run is not stored.

What lives in other slots is bookkeeping that points at the turn, never the turn itself:
the run id's claim ``{r:<run_id>}`` (how ``get_run`` finds a run by id), the user's
``{u:<user_id>}:rs`` set (how ``forget_user`` finds sessions holding the user's runs) and the
session indexes (``list_sessions``).

- On a single server a script may reach any key, so ``lua.COMMIT_TURN_LOCAL`` writes those
  too: the whole commit is one script, one round trip (plus loading the script once).
- On Redis Cluster no script may span slots. The bookkeeping is written around the script in
  the order ``kern.db.redis.indexes`` keeps everywhere: claim the run id and join the new
  indexes first (a retry finds its own claim; a crash leaves at worst a claim with no run or
  an extra index entry, which readers skip and writers take over), then the script, then
  the indexes follow the stored session. Three round trips.

Idempotent on the run id: a run id already stored in this session means the turn was
committed (a retry after a lost reply): nothing is written and the stored run and session are
returned. A run id held by another session raises ``ValueError``, as ``append_run`` does.
"""

from __future__ import annotations

from kern.db.redis import codec, runs, sessions
from kern.db.redis.codec import text
from kern.db.redis.indexes import Ctx, add_to
from kern.db.redis.plans import Cmd, Lua, Plan, Step, together
from kern.records import Run, RunStatus, Session, utcnow


def read_turn(
    ctx: Ctx,
    session_id: str,
    limit: int,
    *,
    top_level_only: bool,
    status: RunStatus | None,
) -> Plan[tuple[Session | None, list[Run]]]:
    """The session hash and the ``last_runs`` script in one pipeline: both live in the
    session's slot, so this is one round trip to one server, cluster or not."""
    if limit <= 0:
        (fields,) = yield [sessions.read_step(ctx, session_id)]
        return sessions.parse(fields), []
    fields, raws = yield [
        sessions.read_step(ctx, session_id),
        runs.last_runs_step(ctx, session_id, limit, None, top_level_only, status),
    ]
    return sessions.parse(fields), runs.runs_from(raws)


def _one(step: Step) -> Plan[None]:
    yield step


def _registry_args(ctx: Ctx, run: Run, session: Session, entries: list[str]) -> tuple[str, ...]:
    """ARGV 22-25 of ``commit_turn_local``: the run's user's ``rs`` set and registry, the
    session owner's registry and the owner-slot index keys to record in it."""
    keys = ctx.keys
    rs = registry = owner_registry = ""
    if run.user_id is not None:
        rs, registry = keys.user_run_sessions(run.user_id), keys.user_registry(run.user_id)
    owned: list[str] = []
    if session.user_id is not None:
        owner_registry = keys.user_registry(session.user_id)
        base = keys.user_base(session.user_id)
        owned = sorted({name for name in entries if name.startswith(base)})
    return rs, registry, owner_registry, "\n".join(owned)


def commit_turn(
    ctx: Ctx, run: Run, session: Session, expected_version: int | None
) -> Plan[tuple[Run, Session]]:
    sid = session.session_id
    if run.session_id != sid:
        raise ValueError(
            f"commit_turn() stores a run with its own session: run.session_id is "
            f"{run.session_id!r} but session.session_id is {sid!r}; nothing was written."
        )
    keys = ctx.keys
    now = utcnow()
    now_us = codec.micros(now)
    version = (expected_version or 0) + 1
    entries, cas = sessions.cas_args(ctx, session, expected_version, now)
    base = cas[0]
    args = (*cas, *runs.run_fields(run))
    if not ctx.cluster:
        extra = (sid, *_registry_args(ctx, run, session, entries), keys.run_sessions)
        script = Lua(
            "commit_turn_local", (base + "session", keys.claim(run.run_id)), (*args, *extra)
        )
        (outcome,) = yield [script]
    else:
        # 1. The run id's claim (and the run's user's rs set), and the new session indexes.
        joining = sessions.join_indexes(ctx, session, entries, expected_version, now_us)
        yield from together(runs.claim(ctx, run, base), _one(joining))
        # 2. The turn, in the session's slot.
        (outcome,) = yield [Lua("commit_turn", (base + "session",), args)]
    code = int(outcome[0])
    if code == 2:  # committed before: the stored turn, nothing written
        _, raw_run, stored_version, created, updated, rest = outcome
        return codec.run_from(raw_run), codec.session_from(stored_version, created, updated, rest)
    if code == -1:
        raise runs.duplicate(run.run_id)
    if code == 0:
        raise sessions.conflict(sid, expected_version, outcome)
    _, seq, created, updated, updated_us, *old = outcome
    old, lowers = old[:3], old[3:]
    score = int(updated_us)
    if ctx.cluster and lowers and int(lowers[0]):
        # A run older than every run of the session (never a plain turn's): lowered again
        # among sessions holding runs, after the script (``kern.db.redis.retention``).
        yield [Cmd("zadd", keys.run_sessions, {sid: codec.micros(run.created_at)}, lt=True)]
    if ctx.cluster:
        # 3. The session's place in its indexes follows the stored session.
        if expected_version is not None:
            yield from sessions.settle_indexes(ctx, sid, entries, version, score, old)
        elif score != now_us:  # a create whose run is newer than now: the session moved
            yield add_to(entries, sid, score, gt=True)
    stored_run = run.model_copy(update={"seq": int(seq)})
    stored_session = session.model_copy(
        update={
            "version": version,
            "created_at": codec.parse_time(created),
            "updated_at": codec.parse_time(text(updated)),
        }
    )
    return stored_run, stored_session
