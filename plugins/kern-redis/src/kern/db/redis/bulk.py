"""``import_records``: a page written back as it was exported, in a few steps per page.

Every record keeps what it was given: ids, ``seq``, ``version``, ``created_at`` and
``updated_at`` (index scores are the given ``updated_at`` too, and no writer's token is
kept, so a second import of a page writes the same bytes again), and a memory's or
learning's vector is the one in ``batch.embeddings`` or none. A stored row of the same id is
replaced, and leaves the index entries the new one does not have; but a stored run is never
moved: one given at another (session, seq) than its stored one is refused, as is one at a
seq another run holds (``ValueError`` naming both runs, or both places). Keys and index
entries are those the ordinary write paths make, from their own helpers: ``cas_args``,
``cas_write`` and ``touch`` for sessions, ``place_run`` and ``run_keys_ok`` for runs
(``kern.db.redis.lua``), the ``DocSpec`` entries, vector state sets and user registries for
memories and learnings; with ``session_ttl``, a session's keys and its runs' claims get the
same expiry. The session's run counter ends at its highest seq, if that is higher.

Index entries are written first and stale ones left last, as ``kern.db.redis.indexes``
orders every write, but grouped for the whole page (one ``ZADD`` per index): an import is
not meant to race with writers of the same rows (it is a copy), and a rerun repairs what a
crash cut short. Round trips per page (on a single server a step is one pipeline):

- sessions (3): the index entries; one ``import_session`` script per session (a pipeline
  of per-record scripts: each session is a slot of its own); the stale entries left;
- runs on a single server (1): ONE ``import_runs_local`` script for the whole page, which
  checks every run before its first write (a refusal writes nothing of the page), then
  writes the runs, their claims and the users' ``rs`` sets;
- runs on Redis Cluster (4 or 5), grouped per slot: a check step (the runs at each seq,
  each run id's claim and its stored version in its session; then, for a claim naming
  another session, whether that session holds the run), the users' ``rs`` sets, one
  ``import_runs`` script per session (it checks its group again before writing), then the
  claims. A refusal the check steps find writes nothing; one only a group's script finds
  (a run appended meanwhile at that seq) leaves the groups before it written, which an
  import of the corrected page completes;
- memories and learnings (3): the index entries, one ``import_doc`` script per row (the
  record and its vector share a slot: written together), the stale entries left.

On Redis Cluster a pipeline of scripts is sent script by script (redis-py refuses scripts in
a cluster pipeline), so there the per-record script steps cost a round trip per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kern.db.redis import codec, runs, sessions
from kern.db.redis.codec import text
from kern.db.redis.docs import D, DocSpec, maybe_text, parse_or_none
from kern.db.redis.indexes import Ctx, add_many, register, remove_many
from kern.db.redis.keys import q
from kern.db.redis.plans import Cmd, Lua, Plan
from kern.db.transfer import RecordPage
from kern.records import Embedding, Learning, Memory, Run, Session


def import_records(
    ctx: Ctx, memory_spec: DocSpec[Memory], learning_spec: DocSpec[Learning], batch: RecordPage
) -> Plan[int]:
    records = list(batch.records)
    if not records:
        return 0
    if batch.kind == "sessions":
        yield from import_sessions(ctx, _last_of_each(records, "session_id"))
    elif batch.kind == "runs":
        yield from import_runs(ctx, _last_of_each(records, "run_id"))
    elif batch.kind == "memories":
        rows = _last_of_each(records, "memory_id")
        yield from import_docs(ctx, memory_spec, rows, batch.embeddings)
    else:
        rows = _last_of_each(records, "learning_id")
        yield from import_docs(ctx, learning_spec, rows, batch.embeddings)
    return len(records)


def _last_of_each(records: Sequence[Any], id_field: str) -> list[Any]:
    """One record per id, the last given (as writing them one by one would leave)."""
    return list({getattr(record, id_field): record for record in records}.values())


# -- sessions ----------------------------------------------------------------------------
def import_sessions(ctx: Ctx, found: list[Session]) -> Plan[None]:
    keys = ctx.keys
    joining: list[tuple[str, str, int]] = []
    owned: dict[str, set[str]] = {}
    writes: list[Lua] = []
    entries_of: list[list[str]] = []
    for session in found:
        entries, args = sessions.cas_args(
            ctx, session, None, session.updated_at, version=session.version
        )
        score = codec.micros(session.updated_at)
        joining += [(index, session.session_id, score) for index in entries]
        if session.user_id is not None:
            owned.setdefault(session.user_id, set()).update(entries)
        writes.append(Lua("import_session", (args[0] + "session",), args))
        entries_of.append(entries)
    yield [*add_many(joining), *_registered(ctx, owned)]
    olds = yield writes
    stale: list[tuple[str, str]] = []
    for session, entries, old in zip(found, entries_of, olds, strict=True):
        before = keys.session_entries(*(maybe_text(value) for value in old))
        stale += [(index, session.session_id) for index in set(before) - set(entries)]
    if stale:
        yield remove_many(stale)


def _registered(ctx: Ctx, names: dict[str, set[str]]) -> list[Cmd]:
    """Each user's keys among ``names`` (user id -> keys) recorded in the user's registry."""
    return [cmd for user, keys in sorted(names.items()) for cmd in register(ctx.keys, user, keys)]


# -- runs --------------------------------------------------------------------------------
def _outcome(partial: bool) -> str:
    if partial:
        return (
            "the runs of this batch's other sessions may have been written (import the "
            "corrected batch again)"
        )
    return "nothing of this batch was written"


def seq_taken(session_id: str, seq: Any, holder: Any, run_id: Any, *, partial: bool) -> ValueError:
    return ValueError(
        f"cannot import run {text(run_id)!r} at seq {int(seq)} of session {session_id!r}: "
        f"run {text(holder)!r} holds that seq already (a seq names one run of its session); "
        f"{_outcome(partial)}."
    )


def run_moved(
    ctx: Ctx, run: Run, stored_seq: Any, stored_base: Any, *, partial: bool
) -> ValueError:
    stored_session = ctx.keys.id_in(str(text(stored_base)), "s")
    return ValueError(
        f"cannot import run {run.run_id!r} at seq {run.seq} of session {run.session_id!r}: "
        f"it is stored at seq {int(stored_seq)} of session {stored_session!r}, and an import "
        f"never moves a stored run (its seq is its place in its session); {_outcome(partial)}."
    )


def _refusal(ctx: Ctx, by_id: dict[str, Run], outcome: list[Any], *, partial: bool) -> ValueError:
    """The error of an import script's refusal (``import_check`` in ``kern.db.redis.lua``)."""
    code, seq, other, rid = outcome[:4]
    run = by_id[str(text(rid))]
    if int(code) == -1:
        return run_moved(ctx, run, seq, other, partial=partial)
    return seq_taken(run.session_id, seq, other, rid, partial=partial)


def _check_batch_seqs(found: list[Run]) -> None:
    """Two runs of the batch at one (session, seq) are refused before anything is sent."""
    holders: dict[tuple[str, int], str] = {}
    for run in found:
        assert run.seq is not None  # checked at the door
        holder = holders.setdefault((run.session_id, run.seq), run.run_id)
        if holder != run.run_id:
            raise seq_taken(run.session_id, run.seq, holder, run.run_id, partial=False)


def _run_fields(run: Run) -> tuple[str, ...]:
    """The 7 fields of a run in the import scripts: run_id, seq, JSON, top, status, user,
    created (µs)."""
    rid, body, top, status, user, _, created_us = runs.run_fields(run)
    assert run.seq is not None
    return rid, str(run.seq), codec.run_json(run.seq, body), top, status, user, str(created_us)


def _oldest(found: list[Run]) -> dict[str, int]:
    """Each session's oldest created_at (µs) among ``found``: its score in ``{ro}``."""
    oldest: dict[str, int] = {}
    for run in found:
        at = codec.micros(run.created_at)
        oldest[run.session_id] = min(at, oldest.get(run.session_id, at))
    return oldest


def _by_session(found: list[Run]) -> dict[str, list[Run]]:
    groups: dict[str, list[Run]] = {}
    for run in found:
        groups.setdefault(run.session_id, []).append(run)
    return groups


def import_runs(ctx: Ctx, found: list[Run]) -> Plan[None]:
    _check_batch_seqs(found)
    if ctx.cluster:
        yield from _import_runs_by_slot(ctx, found)
        return
    keys = ctx.keys
    users = sorted({run.user_id for run in found if run.user_id is not None})
    args: list[Any] = [ctx.ttl, keys.run_sessions, len(users)]
    for user in users:
        args += [q(user), keys.user_run_sessions(user), keys.user_registry(user)]
    for sid, group in _by_session(found).items():
        args += [sid, keys.session_base(sid), len(group)]
        for run in group:
            args += [*_run_fields(run), keys.claim(run.run_id)]
    (outcome,) = yield [Lua("import_runs_local", (keys.claim(found[0].run_id),), tuple(args))]
    if int(outcome[0]) != 1:
        raise _refusal(ctx, {run.run_id: run for run in found}, outcome, partial=False)


def _import_runs_by_slot(ctx: Ctx, found: list[Run]) -> Plan[None]:
    keys = ctx.keys
    by_session = _by_session(found)
    bases = [keys.session_base(run.session_id) for run in found]
    # 1. Check: the run at each seq, where each run id is stored now, and at which seq.
    n = len(found)
    placed = list(zip(found, bases, strict=True))
    replies = yield [
        *(Cmd("zrangebyscore", base + "r:all", run.seq, run.seq) for run, base in placed),
        *(Cmd("get", keys.claim(run.run_id)) for run, _ in placed),
        *(Cmd("hget", base + "runs", run.run_id) for run, base in placed),
    ]
    held, claims, stored = replies[:n], replies[n : 2 * n], replies[2 * n :]
    elsewhere: list[tuple[Run, str]] = []
    for run, base, holders, claim, raw in zip(found, bases, held, claims, stored, strict=True):
        if raw is not None and codec.run_seq(raw) != run.seq:
            raise run_moved(ctx, run, codec.run_seq(raw), base, partial=False)
        for holder in holders:
            if text(holder) != run.run_id:
                raise seq_taken(run.session_id, run.seq, holder, run.run_id, partial=False)
        if claim is not None and text(claim) != base:
            elsewhere.append((run, str(text(claim))))
    if elsewhere:  # a claim naming another session: refused if that session holds the run
        there = yield [Cmd("hget", holder + "runs", run.run_id) for run, holder in elsewhere]
        for (run, holder), raw in zip(elsewhere, there, strict=True):
            if raw is not None:
                raise run_moved(ctx, run, codec.run_seq(raw), holder, partial=False)
    # 2. The users' rs sets first, so forget_user finds the runs once they are stored, and
    # the sessions' places among sessions holding runs (retention finds old runs there).
    by_user: dict[str, set[str]] = {}
    for run in found:
        if run.user_id is not None:
            by_user.setdefault(run.user_id, set()).add(run.session_id)
    yield [
        Cmd("zadd", keys.run_sessions, _oldest(found), lt=True),
        *(
            cmd
            for user, sids in sorted(by_user.items())
            for cmd in (
                Cmd("sadd", keys.user_run_sessions(user), *sorted(sids)),
                Cmd("sadd", keys.user_registry(user), keys.user_run_sessions(user)),
            )
        ),
    ]
    # 3. Each session's runs, by one script in its slot (which checks them again).
    groups = []
    for sid, group in by_session.items():
        base = keys.session_base(sid)
        fields = [field for run in group for field in _run_fields(run)]
        groups.append(Lua("import_runs", (base + "runs",), (base, ctx.ttl, len(group), *fields)))
    outcomes = yield groups
    by_id = {run.run_id: run for run in found}
    for outcome in outcomes:
        if int(outcome[0]) != 1:
            raise _refusal(ctx, by_id, outcome, partial=len(by_session) > 1)
    # 4. The claims name the runs' sessions.
    ex = {"ex": ctx.ttl} if ctx.ttl else {}
    yield [Cmd("set", keys.claim(run.run_id), base, **ex) for run, base in placed]


# -- memories and learnings ------------------------------------------------------------------
def import_docs(
    ctx: Ctx, spec: DocSpec[D], found: list[D], embeddings: dict[str, Embedding]
) -> Plan[None]:
    """The entries of every row first (grouped: one ``ZADD`` per index), then one script per
    row, then the entries the rows they replaced had and they have not are left."""
    joining: list[tuple[str, str, int]] = []
    models: dict[tuple[Any, ...], Cmd] = {}
    owned: dict[str, set[str]] = {}
    writes: list[Lua] = []
    rows: list[tuple[str, list[str], str | None]] = []
    for doc in found:
        doc_id = spec.id_of(doc)
        embedding = embeddings.get(doc_id)
        model = None if embedding is None else embedding.model
        score = codec.micros(doc.updated_at)  # type: ignore[attr-defined]
        entries = spec.entries(doc)
        own = [*entries, *spec.states(doc, model)]
        joining += [(index, doc_id, score) for index in own]
        models |= {cmd.args: cmd for cmd in spec.note_model(doc, model)}
        owner = spec.owner(doc)
        if owner is not None:
            owned.setdefault(owner, set()).update(entries)
        json = codec.doc_json(*codec.doc_parts(doc))
        vector = () if embedding is None else (embedding.model, embedding.as_float32())
        record_keys = (spec.record_key(doc_id), spec.vector_key(doc_id))
        writes.append(Lua("import_doc", record_keys, (json, *vector)))
        rows.append((doc_id, own, model))
    yield [*models.values(), *add_many(joining), *_registered(ctx, owned)]
    outcomes = yield writes
    stale: list[tuple[str, str]] = []
    for (doc_id, own, _), (old_json, old_model) in zip(rows, outcomes, strict=True):
        old = parse_or_none(spec, old_json)
        if old is not None:
            left = set(spec.every_entry(old, maybe_text(old_model))) - set(own)
            stale += [(index, doc_id) for index in left]
    if stale:
        yield remove_many(stale)
