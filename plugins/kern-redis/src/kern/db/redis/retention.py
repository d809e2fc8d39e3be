"""``retention_batch`` on Redis: one bounded batch of a retention rule, read through sorted
sets, never by ``SCAN`` (the rules are in ``kern.retention.rules``).

Where each rule finds its candidates:

- ``idle_sessions``: the index of all sessions ``{sa}:sess`` (score updated_at), the entries
  before the cutoff in (updated_at, session_id) order. Each goes by the ``delete_session``
  script with an idle guard (it checks again, atomically, that the session is stored, was
  last updated before the cutoff and holds no running run), then leaves its indexes, search
  tokens and run claims exactly as ``delete_session`` does.
- ``runs_before``: the index of sessions holding runs ``{ro}:sess`` (score: a lower bound of
  the created_at of the session's oldest run; ``kern.db.redis.keys``), the entries before
  the cutoff, and in each of those sessions its runs by created_at (``r:ct``, in its slot)
  before the cutoff. A candidate is a run; a batch examines at most ``limit`` runs (and
  ``limit`` sessions). A session walked to its end moves in ``{ro}`` to the created_at of
  its oldest run left, so a later pass does not read it again until that run is old.
- ``keep_last_runs``: ``{ro}:sess`` in full, ``limit`` sessions a batch (a session holding
  runs but no session row, written by ``append_run`` alone, is there too; ``{sa}`` lists
  only sessions with a row); in each, its runs by seq (``r:all``) up to ``highest - keep``,
  at most ``CHUNK`` a script.

One session's runs are removed by ONE script in its slot (``lua.RETENTION_RUNS``), which
checks what must stay atomically: a running run, the session's newest run (``runs_before``;
``keep_last_runs`` never reaches it) and a run whose parent, in the same session, is
running. A parent stored in another session is looked up by the plan (its claim, then its
session's ``running`` set) and the runs it does not hold back are named to a second call of
the script. Run-id claims (their own slots) are deleted after their runs.

``{ro}`` is kept as ``kern.db.redis.indexes`` keeps indexes: writers lower a session's score
(``ZADD LT``) before the run is written (in the same script on a single server), so no run
is older than its session's score. Retention raises the score after removing runs: on a
single server in the removing script itself, atomically. On a cluster, by a compare-and-set
on the score it saw (``settle_run_session``), then it reads the session's oldest run again
and lowers the score to it if an older run landed meanwhile; and an append whose run is
older than every run of its session, or that finds the session's ``ro`` mark (retention
found the session empty and is dropping it from ``{ro}``; the mark lasts 10 minutes),
lowers the score once more after its script. A plain turn (a run newer than the session's
oldest) never does, so no turn gets a round trip more.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from kern.db.redis import codec
from kern.db.redis.codec import text
from kern.db.redis.indexes import Ctx, prune
from kern.db.redis.plans import Cmd, Lua, Plan
from kern.db.redis.sessions import delete_sessions
from kern.errors import RetentionError
from kern.retention.rules import RetentionBatch, RetentionRule, RuleKind

#: Runs one ``keep_last_runs`` script examines at most (a long session takes several).
CHUNK = 500

#: An index entry: (member, score).
Entry = tuple[str, int]


def retention_batch(
    ctx: Ctx, rule: RetentionRule, *, limit: int, after: str | None, dry_run: bool
) -> Plan[RetentionBatch]:
    if rule.kind is RuleKind.IDLE_SESSIONS:
        assert rule.cutoff is not None
        return (yield from idle_sessions(ctx, codec.micros(rule.cutoff), limit, after, dry_run))
    if rule.kind is RuleKind.RUNS_BEFORE:
        assert rule.cutoff is not None
        return (yield from runs_before(ctx, codec.micros(rule.cutoff), limit, after, dry_run))
    assert rule.keep is not None
    return (yield from keep_last_runs(ctx, rule.keep, limit, after, dry_run))


# -- cursors -----------------------------------------------------------------------------------
def _encode(*parts: object) -> str:
    return json.dumps(list(parts), separators=(",", ":"))


def _decode(after: str | None, kind: RuleKind, shape: tuple[type, ...]) -> list[Any] | None:
    """The parts of cursor ``after`` (one this rule's batch returned), or None."""
    if after is None:
        return None
    try:
        parts = json.loads(after)
    except (TypeError, ValueError):
        parts = None
    if (
        not isinstance(parts, list)
        or len(parts) != len(shape)
        or not all(p is None or isinstance(p, t) for p, t in zip(parts, shape, strict=True))
    ):
        raise RetentionError(
            f"after={after!r} is not a cursor of a {kind.value} batch on Redis: pass None, "
            "or the after of the batch before (RetentionBatch.after)"
        )
    return parts


# -- reading an index after a cursor ----------------------------------------------------------
def page_after(
    index: str, start: Entry | None, *, inclusive: bool, below: int | None, count: int
) -> Plan[list[Entry]]:
    """At most ``count`` entries of ``index`` after ``start`` (``(member, score)``; itself
    too if ``inclusive``) in the sorted set's order (score, then member bytes), with a
    score below ``below`` (None: any)."""
    top = "+inf" if below is None else f"({below}"
    if start is None:
        (raw,) = yield [
            Cmd("zrangebyscore", index, "-inf", top, start=0, num=count, withscores=True)
        ]
        return [(str(text(m)), int(s)) for m, s in raw]
    member, score = start
    mark = member.encode()
    found: list[Entry] = []
    offset, window = 0, count + 8
    while len(found) < count:
        (raw,) = yield [
            Cmd("zrangebyscore", index, score, top, start=offset, num=window, withscores=True)
        ]
        for m, s in raw:
            name, at = str(text(m)), int(s)
            if at == score and (name.encode() < mark or (name.encode() == mark and not inclusive)):
                continue  # at or before the cursor
            if len(found) < count:
                found.append((name, at))
        if len(raw) < window:
            break
        offset += window
    return found


# -- what a removal leaves elsewhere -----------------------------------------------------------
def _parents_running(ctx: Ctx, parents: Iterable[str]) -> Plan[set[str]]:
    """Which of ``parents`` (run ids held by other sessions) are stored and running."""
    wanted = sorted(set(parents))
    if not wanted:
        return set()
    holders = yield [Cmd("get", ctx.keys.claim(rid)) for rid in wanted]
    held = [(rid, str(text(h))) for rid, h in zip(wanted, holders, strict=True) if h is not None]
    if not held:
        return set()
    scores = yield [Cmd("zscore", base + "r:st:running", rid) for rid, base in held]
    return {rid for (rid, _), score in zip(held, scores, strict=True) if score is not None}


def _elsewhere(
    ctx: Ctx, pending: dict[str, list[tuple[str, str]]], dry_run: bool
) -> Plan[dict[str, list[str]]]:
    """The runs (per session) whose parent is in another session, removed (or counted)
    unless that parent is running; returns those removed."""
    if not pending:
        return {}
    running = yield from _parents_running(
        ctx, (parent for pairs in pending.values() for _, parent in pairs)
    )
    free = {
        sid: [rid for rid, parent in pairs if parent not in running]
        for sid, pairs in pending.items()
    }
    free = {sid: rids for sid, rids in free.items() if rids}
    if not free:
        return {}
    keys = ctx.keys
    outcomes = yield [
        Lua(
            "retention_runs",
            (keys.session_base(sid) + "runs",),
            (keys.session_base(sid), "ids", "1" if dry_run else "0", "", sid, 0, *rids),
        )
        for sid, rids in free.items()
    ]
    return {sid: [str(text(r)) for r in out[1]] for sid, out in zip(free, outcomes, strict=True)}


def _remove_claims(ctx: Ctx, run_ids: list[str]) -> Plan[None]:
    if run_ids:
        yield [Cmd("delete", ctx.keys.claim(rid)) for rid in run_ids]


class _Tally:
    """What a batch removed, and the runs whose parents live in other sessions."""

    def __init__(self) -> None:
        self.removed: list[str] = []
        self.pending: dict[str, list[tuple[str, str]]] = {}

    def add(self, sid: str, outcome: list[Any]) -> None:
        self.removed += [str(text(rid)) for rid in outcome[1]]
        pairs = [(str(text(rid)), str(text(parent))) for rid, parent in outcome[2]]
        if pairs:
            self.pending.setdefault(sid, []).extend(pairs)

    def finish(self, ctx: Ctx, dry_run: bool) -> Plan[int]:
        more = yield from _elsewhere(ctx, self.pending, dry_run)
        self.removed += [rid for rids in more.values() for rid in rids]
        if not dry_run:
            yield from _remove_claims(ctx, self.removed)
        return len(self.removed)


# -- the rules ---------------------------------------------------------------------------------
def idle_sessions(
    ctx: Ctx, cutoff: int, limit: int, after: str | None, dry_run: bool
) -> Plan[RetentionBatch]:
    cursor = _decode(after, RuleKind.IDLE_SESSIONS, (str, int))
    start = None if cursor is None else (cursor[0], cursor[1])
    page = yield from page_after(
        ctx.keys.all_sessions, start, inclusive=False, below=cutoff, count=limit
    )
    sessions = runs = 0
    idle: list[str] = []
    stale: list[tuple[str, str, float]] = []
    if page:
        bases = [ctx.keys.session_base(sid) for sid, _ in page]
        rows = yield [
            cmd
            for base in bases
            for cmd in (
                Cmd("hmget", base + "session", "v", "um"),
                Cmd("zcard", base + "r:st:running"),
                Cmd("hlen", base + "runs"),
            )
        ]
        for n, (sid, score) in enumerate(page):
            (version, updated), busy, held = rows[3 * n : 3 * n + 3]
            if version is None:  # expired (session_ttl) or deleted: a stale entry
                stale.append((ctx.keys.all_sessions, sid, score))
            elif updated is not None and int(updated) < cutoff and not int(busy):
                idle.append(sid)
                runs += int(held)
        sessions = len(idle)
    if not dry_run:
        # The script checks each session again (a turn may have come meanwhile).
        outcomes = yield from delete_sessions(ctx, idle, idle_before=cutoff)
        sessions = sum(int(existed) for existed, _ in outcomes)
        runs = sum(held for _, held in outcomes)
        dead = prune(stale)
        if dead:
            yield dead
    last = None if len(page) < limit else _encode(*page[-1])
    return RetentionBatch(counts={"sessions": sessions, "runs": runs}, after=last)


def runs_before(
    ctx: Ctx, cutoff: int, limit: int, after: str | None, dry_run: bool
) -> Plan[RetentionBatch]:
    keys = ctx.keys
    index = keys.run_sessions
    dry = "1" if dry_run else "0"
    # Where the batch goes on: the session (member, score) and, inside it, the last run
    # examined (created µs, run id), or None when the session was walked to its end.
    cursor = _decode(after, RuleKind.RUNS_BEFORE, (str, int, int, str))
    budget, sessions_left = limit, limit
    tally = _Tally()
    settle: list[tuple[str, int, Any]] = []
    done = False
    while budget > 0 and sessions_left > 0:
        start = None if cursor is None else (cursor[0], cursor[1])
        mid = cursor is not None and cursor[2] is not None
        asked = sessions_left
        page = yield from page_after(index, start, inclusive=mid, below=cutoff, count=asked)
        if not page:
            done = True
            break
        resume: dict[str, tuple[str, str]] = {}
        if mid and cursor is not None and page[0][0] == cursor[0]:
            resume[cursor[0]] = (str(cursor[2]), cursor[3])
        bases = [keys.session_base(sid) for sid, _ in page]
        counts = yield [
            Cmd("zcount", base + "r:ct", resume[sid][0] if sid in resume else "-inf", f"({cutoff}")
            for (sid, _), base in zip(page, bases, strict=True)
        ]
        # Each session gets the runs it holds before the cutoff, while the budget lasts.
        shares: list[tuple[str, int, str, int]] = []
        left = budget
        for (sid, score), base, held in zip(page, bases, counts, strict=True):
            if left == 0:
                break
            take = min(int(held), left)
            shares.append((sid, score, base, take))
            left -= take
        ro = "" if ctx.cluster else index
        outcomes = yield [
            Lua(
                "retention_runs",
                (base + "runs",),
                (base, "before", dry, ro, sid, score, cutoff, *resume.get(sid, ("", "")), take),
            )
            for sid, score, base, take in shares
        ]
        walked_all = True
        for (sid, score, _, _), outcome in zip(shares, outcomes, strict=True):
            tally.add(sid, outcome)
            budget -= int(outcome[0])
            sessions_left -= 1
            if int(outcome[5]):
                cursor = [sid, score, None, None]
                if not dry_run and ctx.cluster:
                    settle.append((sid, score, outcome[6] or None))
                continue
            walked_all = False
            if outcome[3] is not None:
                cursor = [sid, score, int(float(text(outcome[3]))), str(text(outcome[4]))]
            # else: old runs came after it was counted and it had no share: read it again
            break
        if walked_all and len(shares) == len(page) and len(page) < asked:
            done = True  # every session of the index's last page walked to its end
            break
    if settle:
        yield from _settle(ctx, settle)
    removed = yield from tally.finish(ctx, dry_run)
    last = None if done and budget > 0 else _encode(*cursor) if cursor is not None else None
    return RetentionBatch(counts={"runs": removed}, after=last)


def _settle(ctx: Ctx, walked: list[tuple[str, int, Any]]) -> Plan[None]:
    """On a cluster: move each session walked to its end to its oldest run left in
    ``{ro}`` (if its score is still the one seen), then lower it again to a run older than
    that which landed meanwhile."""
    keys = ctx.keys
    index = keys.run_sessions
    yield [
        Lua("settle_run_session", (index,), (sid, seen, "" if oldest is None else text(oldest)))
        for sid, seen, oldest in walked
    ]
    now = yield [
        Cmd("zrange", keys.session_base(sid) + "r:ct", 0, 0, withscores=True)
        for sid, _, _ in walked
    ]
    lower = {}
    for (sid, _, oldest), found in zip(walked, now, strict=True):
        if found and (oldest is None or int(found[0][1]) < int(float(text(oldest)))):
            lower[sid] = int(found[0][1])
    if lower:
        yield [Cmd("zadd", index, lower, lt=True)]


def keep_last_runs(
    ctx: Ctx, keep: int, limit: int, after: str | None, dry_run: bool
) -> Plan[RetentionBatch]:
    keys = ctx.keys
    cursor = _decode(after, RuleKind.KEEP_LAST_RUNS, (str, int))
    start = None if cursor is None else (cursor[0], cursor[1])
    page = yield from page_after(keys.run_sessions, start, inclusive=False, below=None, count=limit)
    dry = "1" if dry_run else "0"
    tally = _Tally()
    pending: dict[str, str] = {sid: "" for sid, _ in page}
    while pending:
        sids = list(pending)
        outcomes = yield [
            Lua(
                "retention_runs",
                (keys.session_base(sid) + "runs",),
                (keys.session_base(sid), "keep", dry, "", sid, 0, keep, pending[sid], CHUNK),
            )
            for sid in sids
        ]
        for sid, outcome in zip(sids, outcomes, strict=True):
            tally.add(sid, outcome)
            if int(outcome[5]):
                del pending[sid]
            else:
                pending[sid] = str(text(outcome[3]))
    removed = yield from tally.finish(ctx, dry_run)
    last = None if len(page) < limit else _encode(*page[-1])
    return RetentionBatch(counts={"runs": removed}, after=last)
