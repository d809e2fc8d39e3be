"""Runs: written once, in their session's slot, with a seq the server assigns.

Per session (slot ``{s:<id>}``): ``runs`` (hash run_id -> JSON), ``seq`` (the counter),
sorted sets of run ids by seq: ``r:all``, ``r:top`` (no parent_run_id), ``r:st:<status>``
and ``r:top:st:<status>``, and by created_at (µs): ``r:ct``, which retention reads. The
session's score in ``{ro}`` (sessions holding runs, by their oldest run) is lowered to the
run's created_at if older: in the script on a single server, in the claim's step (before
the run is written) on a cluster, so it adds no round trip. One Lua script checks the run
id, INCRs the counter, stores the run and indexes it: atomic, so concurrent writers in any
number of processes get 1, 2, 3... ``get_last_runs`` reads one of those sets with
``ZREVRANGEBYSCORE … LIMIT 0 n`` and the runs with ``HMGET``, inside one script: a fixed
number of commands, whatever the session's length, for every combination of
``top_level_only`` and ``status``.

A run id is unique across sessions: its claim key ``{r:<run_id>}`` (``SET NX``) names the
session holding it, which is also how ``get_run`` finds a run by id alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kern.db.redis import codec
from kern.db.redis.codec import text
from kern.db.redis.indexes import Ctx, add_to
from kern.db.redis.keys import q, run_index
from kern.db.redis.plans import Cmd, Lua, Plan
from kern.errors import RunFinishedError, RunNotFoundError
from kern.records import Message, Run, RunStatus, new_id


def duplicate(run_id: str) -> ValueError:
    return ValueError(
        f"run {run_id!r} is already stored: runs are written once. Use update_run() to "
        "finish a running run, or give a new run_id."
    )


def run_fields(run: Run) -> tuple[Any, ...]:
    """The run as the scripts take it (``store_run`` in ``kern.db.redis.lua``): run_id, body,
    top-level ('1'/'0'), status, user (quoted, '' if none), created (iso), created (µs)."""
    return (
        run.run_id,
        codec.run_body(run),
        "1" if run.parent_run_id is None else "0",
        RunStatus(run.status).value,
        "" if run.user_id is None else q(run.user_id),
        codec.iso(codec.aware(run.created_at)),
        codec.micros(run.created_at),
    )


def claim(ctx: Ctx, run: Run, base: str) -> Plan[None]:
    """Claim the run id for this session (the claim holds the session's key base); a claim
    of another session that really holds the run refuses the append, a leftover claim (its
    run is not there) is taken over."""
    keys = ctx.keys
    claim_key = keys.claim(run.run_id)
    ex = {"ex": ctx.ttl} if ctx.ttl else {}
    # The session's place among sessions holding runs, before the run exists (retention
    # finds old runs through it): lowered to this run's created_at if older.
    oldest = {run.session_id: codec.micros(run.created_at)}
    user_step = [Cmd("zadd", keys.run_sessions, oldest, lt=True)]
    if run.user_id is not None:
        # Before the run exists, note where the user's runs are (forget_user finds them).
        sessions = keys.user_run_sessions(run.user_id)
        registry = keys.user_registry(run.user_id)
        user_step += [Cmd("sadd", sessions, run.session_id), Cmd("sadd", registry, sessions)]
    claimed, *_ = yield [Cmd("set", claim_key, base, nx=True, **ex), *user_step]
    while not claimed:
        (holder,) = yield [Cmd("get", claim_key)]
        holder = text(holder)
        if holder is None:  # expired or deleted meanwhile
            (claimed,) = yield [Cmd("set", claim_key, base, nx=True, **ex)]
            continue
        if holder == base:
            return  # the session's script tells a stored run from a resent append
        (held,) = yield [Cmd("hexists", holder + "runs", run.run_id)]
        if held:
            raise duplicate(run.run_id)
        (claimed,) = yield [Lua("move_claim", (claim_key,), (holder, base, ctx.ttl))]


def append_run(ctx: Ctx, run: Run) -> Plan[Run]:
    """One script on a single server; on a cluster, claim, script, then the session's
    indexes (three slots, in that order: see ``kern.db.redis.indexes``)."""
    keys, sid = ctx.keys, run.session_id
    base = keys.session_base(sid)
    fields = run_fields(run)
    created_us = fields[-1]
    # ctx.ttl, then this call's token: a resent call is recognised.
    args = (base, *fields, ctx.ttl, new_id())
    if not ctx.cluster:
        names = [base + "runs", keys.claim(run.run_id)]
        if run.user_id is not None:
            names += [keys.user_run_sessions(run.user_id), keys.user_registry(run.user_id)]
        (outcome,) = yield [Lua("append_run_local", tuple(names), (*args, sid, keys.run_sessions))]
        if int(outcome[0]) == -1:
            raise duplicate(run.run_id)
    else:
        yield from claim(ctx, run, base)
        (outcome,) = yield [Lua("append_run", (base + "runs",), args)]
    seq = int(outcome[0])
    if seq == 0:
        raise duplicate(run.run_id)
    if ctx.cluster:
        after: list[Cmd] = []
        if int(outcome[1]) and outcome[2]:
            # The session's updated_at moved: so does its place in the session indexes.
            entries = text(outcome[2]).split("\n")
            after += add_to(entries, sid, created_us, xx=True, gt=True)
        if len(outcome) > 3 and int(outcome[3]):
            # Older than every run of the session: lowered again among sessions holding
            # runs, after the script (retention may have raised it meanwhile).
            after.append(Cmd("zadd", keys.run_sessions, {sid: created_us}, lt=True))
        if after:
            yield after
    return run.model_copy(update={"seq": seq})


def _locate(ctx: Ctx, run_id: str) -> Plan[tuple[str, Any] | None]:
    """``(session base, stored JSON)`` of a run, or None."""
    (holder,) = yield [Cmd("get", ctx.keys.claim(run_id))]
    if holder is None:
        return None
    base = text(holder)
    (raw,) = yield [Cmd("hget", base + "runs", run_id)]
    return None if raw is None else (base, raw)


def get_run(ctx: Ctx, run_id: str) -> Plan[Run | None]:
    found = yield from _locate(ctx, run_id)
    return None if found is None else codec.run_from(found[1])


def get_last_runs(
    ctx: Ctx,
    session_id: str,
    limit: int,
    *,
    before_seq: int | None,
    top_level_only: bool,
    status: RunStatus | str | None,
) -> Plan[list[Run]]:
    if limit <= 0:
        return []
    (raws,) = yield [last_runs_step(ctx, session_id, limit, before_seq, top_level_only, status)]
    return runs_from(raws)


def last_runs_step(
    ctx: Ctx,
    session_id: str,
    limit: int,
    before_seq: int | None,
    top_level_only: bool,
    status: RunStatus | str | None,
) -> Lua:
    """The script reading the newest ``limit`` runs from one seq index (see the module doc)."""
    base = ctx.keys.session_base(session_id)
    index = run_index(top_level_only, None if status is None else RunStatus(status).value)
    top = "+inf" if before_seq is None else f"({int(before_seq)}"
    return Lua("last_runs", (base + "runs",), (base, index, top, int(limit)))


def runs_from(raws: Sequence[Any]) -> list[Run]:
    """The ``last_runs`` script's answer (newest first) as runs, oldest first."""
    return [codec.run_from(raw) for raw in reversed(raws) if raw is not None]


def update_run(
    ctx: Ctx,
    run_id: str,
    *,
    status: RunStatus | str,
    output: object,
    messages: Sequence[object] | None,
    metrics: dict[str, object] | None,
) -> Plan[Run]:
    new_status = RunStatus(status)
    changes: dict[str, Any] = {"status": new_status}
    if output is not None:
        changes["output"] = codec.checked_json(output, "output")
    if messages is not None:
        changes["messages"] = [Message.model_validate(m) for m in messages]
    if metrics is not None:
        changes["metrics"] = codec.checked_metrics(metrics)
    while True:  # compare-and-set on the stored JSON; a concurrent change means read again
        found = yield from _locate(ctx, run_id)
        if found is None:
            raise RunNotFoundError(
                f"no run {run_id!r} is stored: append_run() it before updating it."
            )
        base, raw = found
        stored = codec.run_from(raw)
        if stored.status != RunStatus.RUNNING:
            raise RunFinishedError(
                f"run {run_id!r} is already {stored.status.value!r}: only a 'running' run can "
                "be updated. Append a new run instead."
            )
        updated = stored.model_copy(update=changes)
        assert stored.seq is not None
        new_json = codec.run_json(stored.seq, codec.run_body(updated))
        (done,) = yield [
            Lua(
                "update_run",
                (base + "runs",),
                (
                    base,
                    run_id,
                    raw,
                    new_json,
                    stored.seq,
                    "1" if stored.parent_run_id is None else "0",
                    stored.status.value,
                    new_status.value,
                    ctx.ttl,
                ),
            )
        ]
        if int(done) == 1:
            if ctx.ttl:  # the claim lives as long as the run's last write
                yield [Cmd("expire", ctx.keys.claim(run_id), ctx.ttl)]
            return updated
        if int(done) == 0:
            raise RunNotFoundError(f"run {run_id!r} was deleted while it was being updated.")
