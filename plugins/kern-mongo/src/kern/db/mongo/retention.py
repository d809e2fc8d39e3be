"""``retention_batch`` as a Mongo plan: one bounded batch of a retention rule.

``kern.retention.steps`` calls it until a rule is done; ``kern.retention.rules`` has the
rules every backend keeps. Here, how MongoDB keeps them.

Candidates, read in the order of an index and continued by keyset (never ``skip``):

- ``idle_sessions``: sessions with ``updated_at_us < cutoff`` in (updated_at, _id) order,
  through the ``{updated_at_us}`` index (``updated``). A batch reads ``limit + 1``
  sessions in index order: the one more says whether the batch ends inside a group of
  sessions updated in the same microsecond; if it does, that group is read whole by its
  time (an equality on the index) and taken in ``_id`` order, and the cursor holds the
  last ``_id`` taken. (An index of ``{updated_at_us, _id}`` would spare that read, but
  nx-27017 cannot index ``_id`` beside another field, nor read a range of ``_id`` through
  an index.) Each candidate's runs are read by ``{session_id: $eq}`` (the history index);
  a session holding a ``running`` run, a run of an unfinished commit (``pending``) or a
  ``pending_run`` itself is kept. The others go with all of their runs.
- ``runs_before``: runs with ``created_at_us < cutoff`` in (created_at, session_id, seq)
  order, through ``{created_at_us, session_id, seq}`` (``created``, runs' schema version
  3): a unique order, since ``{session_id, seq}`` is unique, and each part of the keyset
  (the rest of the cursor's session at its time, the sessions after it at that time, the
  times after it) is one range of that index.
- ``keep_last_runs``: sessions with runs, from the highest ``session_id`` down, through
  the ``{session_id, seq}`` index: one ``find_one`` walking it backwards gives the next
  session and its highest seq at once. Runs whose session document was never written (an
  ``append_run`` alone) are kept to the rule too.

Kept whatever the rule (``kern.retention.rules``): a ``running`` run; a run whose parent
run is stored and ``running`` (one ``_id $in`` read per batch); a run of an unfinished
commit (``pending``, ``kern.db.mongo.ops``); and, for ``runs_before``, a session's highest
settled run (no settled run of its session has a higher seq: one indexed ``find_one`` per
session): ``append_run`` numbers the next run after the highest stored seq, so the seq
goes on. ``keep_last_runs`` counts from the highest settled seq for the same reason.

Writes: ``delete_many({_id: {$in: ids}, status: {$ne: running}, pending: absent})`` in
chunks, runs before their sessions (as ``delete_session``), and sessions only while still
idle and without a pending commit: a run that became running or a session written since it
was read stays. The counts are the server's ``deleted_count``: exactly what was removed. A
dry run makes the same reads and counts what it would delete.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from pymongo import ASCENDING, DESCENDING

from kern.db.mongo import codec
from kern.db.mongo.calls import Call, Op
from kern.db.mongo.schema import RUNS, SESSIONS
from kern.errors import RetentionError
from kern.records import RunStatus
from kern.retention.rules import RetentionBatch, RetentionRule, RuleKind

Doc = dict[str, Any]

#: Ids per ``delete_many`` / ``$in`` read: far below the 16 MiB of a command.
CHUNK = 5_000
RUNNING = RunStatus.RUNNING.value
#: What a candidate run is read with: what its protections need.
RUN_FIELDS: Doc = {
    "session_id": 1,
    "seq": 1,
    "status": 1,
    "parent_run_id": 1,
    "pending": 1,
    "created_at_us": 1,
}
#: The parts of each rule's cursor key: (updated_at_us, _id or None); (created_at_us,
#: session_id, seq); (session_id).
KEY_LENGTHS = {RuleKind.IDLE_SESSIONS: 2, RuleKind.RUNS_BEFORE: 3, RuleKind.KEEP_LAST_RUNS: 1}
#: A run's order for ``runs_before``: the ``created`` index.
RUN_ORDER = [("created_at_us", ASCENDING), ("session_id", ASCENDING), ("seq", ASCENDING)]


def retention_batch(
    rule: RetentionRule, *, limit: int, after: str | None, dry_run: bool
) -> Op[RetentionBatch]:
    key = None if after is None else _read_cursor(rule.kind, after)
    if rule.kind is RuleKind.IDLE_SESSIONS:
        assert rule.cutoff is not None
        return (yield from _idle_sessions(codec.to_us(rule.cutoff), key, limit, dry_run))
    if rule.kind is RuleKind.RUNS_BEFORE:
        assert rule.cutoff is not None
        return (yield from _runs_before(codec.to_us(rule.cutoff), key, limit, dry_run))
    assert rule.keep is not None
    return (yield from _keep_last_runs(rule.keep, key, limit, dry_run))


# -- cursors ----------------------------------------------------------------------------------
def _cursor(kind: RuleKind, *key: Any) -> str:
    return json.dumps([kind.value, *key], separators=(",", ":"))


def _read_cursor(kind: RuleKind, after: str) -> list[Any]:
    try:
        parsed = json.loads(after)
    except (TypeError, ValueError):
        parsed = None
    if (
        not isinstance(parsed, list)
        or len(parsed) != 1 + KEY_LENGTHS[kind]
        or parsed[0] != kind.value
    ):
        raise RetentionError(
            f"after={after!r} is not a cursor of a {kind.value} batch on MongoDB: pass the "
            "after= of the previous batch of the same rule, or None to start."
        )
    return parsed[1:]


# -- idle sessions ------------------------------------------------------------------------------
def _idle_sessions(
    cutoff: int, key: list[Any] | None, limit: int, dry_run: bool
) -> Op[RetentionBatch]:
    sessions, last = yield from _idle_candidates(cutoff, key, limit)
    gone_sessions: list[str] = []
    gone_runs: list[str] = []
    for session in sessions:
        if session.get("pending_run") is not None:
            continue
        runs = yield Call(
            RUNS,
            "find",
            ({"session_id": {"$eq": session["_id"]}},),
            {"projection": {"status": 1, "pending": 1}},
        )
        if any(run["status"] == RUNNING or "pending" in run for run in runs):
            continue
        gone_sessions.append(session["_id"])
        gone_runs += [run["_id"] for run in runs]
    if dry_run:
        counts = {"sessions": len(gone_sessions), "runs": len(gone_runs)}
    else:
        runs_removed = yield from _delete_runs(gone_runs)  # runs first, as delete_session
        still_idle = {"updated_at_us": {"$lt": cutoff}, "pending_run": {"$exists": False}}
        sessions_removed = yield from _delete(SESSIONS, gone_sessions, still_idle)
        counts = {"sessions": sessions_removed, "runs": runs_removed}
    cursor = None if len(sessions) < limit else _cursor(RuleKind.IDLE_SESSIONS, *last)
    return RetentionBatch(counts=counts, after=cursor)


def _idle_candidates(
    cutoff: int, key: list[Any] | None, limit: int
) -> Op[tuple[list[Doc], list[Any]]]:
    """Up to ``limit`` sessions updated before ``cutoff``, after ``key`` in (updated_at,
    _id) order, and the key of the last one (``[updated_at_us, _id or None]``; None: every
    session updated at that time is among those taken)."""
    fields = {"updated_at_us": 1, "pending_run": 1}
    taken: list[Doc] = []
    bound: Doc = {"$lt": cutoff}
    if key is not None:
        at, last_id = key
        bound["$gt"] = at
        if last_id is not None:  # the cursor stands inside a group of one time
            group = yield from _same_time(at, fields)
            rest = [doc for doc in group if doc["_id"] > last_id]
            taken = rest[:limit]
            if len(rest) > limit:
                return taken, [at, taken[-1]["_id"]]
    wanted = limit - len(taken)
    if wanted == 0:
        return taken, [taken[-1]["updated_at_us"], None]
    docs = yield Call(
        SESSIONS,
        "find",
        ({"updated_at_us": bound},),
        {"sort": [("updated_at_us", ASCENDING)], "limit": wanted + 1, "projection": fields},
    )
    order = _session_order
    if len(docs) <= wanted or docs[wanted]["updated_at_us"] != docs[wanted - 1]["updated_at_us"]:
        taken += sorted(docs[:wanted], key=order)
        last = taken[-1] if taken else None
        return taken, [None if last is None else last["updated_at_us"], None]
    # The batch ends inside a group of one time: the group is taken in _id order.
    at = docs[wanted - 1]["updated_at_us"]
    taken += sorted((doc for doc in docs if doc["updated_at_us"] < at), key=order)
    group = yield from _same_time(at, fields)
    taken += group[: limit - len(taken)]
    return taken, [at, taken[-1]["_id"]]


def _same_time(at: int, fields: Doc) -> Op[list[Doc]]:
    """The sessions updated at ``at`` (one equality on the ``updated`` index), by ``_id``."""
    docs = yield Call(SESSIONS, "find", ({"updated_at_us": {"$eq": at}},), {"projection": fields})
    return sorted(docs, key=lambda doc: doc["_id"])


def _session_order(doc: Doc) -> tuple[int, str]:
    return doc["updated_at_us"], doc["_id"]


# -- runs before a time -------------------------------------------------------------------------
def _runs_before(
    cutoff: int, key: list[Any] | None, limit: int, dry_run: bool
) -> Op[RetentionBatch]:
    runs = yield from _runs_after(cutoff, key, limit)
    going = [run for run in runs if not _kept_itself(run)]
    going = yield from _without_children_of_running(going)
    # The highest settled run of each session stays: only the highest candidate of a
    # session can be it, and it is if no settled run of the session has a higher seq.
    highest: dict[str, int] = {}
    for run in going:
        highest[run["session_id"]] = max(run["seq"], highest.get(run["session_id"], 0))
    newest: set[tuple[str, int]] = set()
    for session_id, seq in highest.items():
        above = yield Call(
            RUNS,
            "find_one",
            (
                {
                    "session_id": {"$eq": session_id},
                    "seq": {"$gt": seq},
                    "pending": {"$exists": False},
                },
            ),
            {"projection": {"_id": 1}},
        )
        if above is None:
            newest.add((session_id, seq))
    ids = [run["_id"] for run in going if (run["session_id"], run["seq"]) not in newest]
    removed = len(ids) if dry_run else (yield from _delete_runs(ids))
    cursor = None
    if len(runs) == limit:
        last = runs[-1]
        cursor = _cursor(RuleKind.RUNS_BEFORE, *(last[field] for field, _ in RUN_ORDER))
    return RetentionBatch(counts={"runs": removed}, after=cursor)


def _runs_after(cutoff: int, key: list[Any] | None, limit: int) -> Op[list[Doc]]:
    """Up to ``limit`` runs created before ``cutoff``, after ``key`` (created_at_us,
    session_id, seq) in that order: each part one range of the ``created`` index."""
    ranges: list[Doc] = []
    if key is None:
        ranges.append({"created_at_us": {"$lt": cutoff}})
    else:
        at, session_id, seq = key
        ranges += [
            {
                "created_at_us": {"$eq": at},
                "session_id": {"$eq": session_id},
                "seq": {"$gt": seq},
            },
            {"created_at_us": {"$eq": at}, "session_id": {"$gt": session_id}},
            {"created_at_us": {"$gt": at, "$lt": cutoff}},
        ]
    found: list[Doc] = []
    for query in ranges:
        docs = yield Call(
            RUNS,
            "find",
            (query,),
            {"sort": RUN_ORDER, "limit": limit - len(found), "projection": RUN_FIELDS},
        )
        found += docs
        if len(found) >= limit:
            break
    return found


# -- each session's last runs -------------------------------------------------------------------
def _keep_last_runs(
    keep: int, key: list[Any] | None, limit: int, dry_run: bool
) -> Op[RetentionBatch]:
    examined = 0
    below = None if key is None else key[0]
    going: list[Doc] = []
    while examined < limit:
        sessions: Doc = {"$gte": ""} if below is None else {"$lt": below}
        top = yield Call(
            RUNS,
            "find_one",
            ({"session_id": sessions},),
            {
                "sort": [("session_id", DESCENDING), ("seq", DESCENDING)],
                "projection": {"session_id": 1, "seq": 1, "pending": 1},
            },
        )
        if top is None:
            break
        examined += 1
        below = session_id = top["session_id"]
        highest = top["seq"]
        if "pending" in top:  # count from the highest settled run
            settled = yield Call(
                RUNS,
                "find_one",
                ({"session_id": {"$eq": session_id}, "pending": {"$exists": False}},),
                {"sort": [("seq", DESCENDING)], "projection": {"seq": 1}},
            )
            if settled is None:
                continue
            highest = settled["seq"]
        if highest - keep < 1:
            continue
        runs = yield Call(
            RUNS,
            "find",
            ({"session_id": {"$eq": session_id}, "seq": {"$lte": highest - keep}},),
            {"projection": RUN_FIELDS},
        )
        going += [run for run in runs if not _kept_itself(run)]
    going = yield from _without_children_of_running(going)
    ids = [run["_id"] for run in going]
    removed = len(ids) if dry_run else (yield from _delete_runs(ids))
    cursor = None if examined < limit else _cursor(RuleKind.KEEP_LAST_RUNS, below)
    return RetentionBatch(counts={"runs": removed}, after=cursor)


# -- what every rule keeps, and the deletes -----------------------------------------------------
def _kept_itself(run: Doc) -> bool:
    """A running run, or one of an unfinished commit."""
    return run["status"] == RUNNING or "pending" in run


def _without_children_of_running(runs: list[Doc]) -> Op[list[Doc]]:
    """``runs`` but those whose parent run is stored and running (``_id $in``, chunked)."""
    parents = sorted({run["parent_run_id"] for run in runs if run.get("parent_run_id")})
    running: set[str] = set()
    for chunk in _chunks(parents):
        docs = yield Call(
            RUNS,
            "find",
            ({"_id": {"$in": chunk}, "status": {"$eq": RUNNING}},),
            {"projection": {"_id": 1}},
        )
        running.update(doc["_id"] for doc in docs)
    return [run for run in runs if run.get("parent_run_id") not in running]


def _delete_runs(ids: list[str]) -> Op[int]:
    """Delete the runs ``ids`` that are still neither running nor pending."""
    return (
        yield from _delete(RUNS, ids, {"status": {"$ne": RUNNING}, "pending": {"$exists": False}})
    )


def _delete(collection: str, ids: list[str], guard: Doc) -> Op[int]:
    removed = 0
    for chunk in _chunks(ids):
        done = yield Call(collection, "delete_many", ({"_id": {"$in": chunk}, **guard},))
        removed += done.deleted_count
    return removed


def _chunks(items: Iterable[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


__all__ = ["retention_batch"]
