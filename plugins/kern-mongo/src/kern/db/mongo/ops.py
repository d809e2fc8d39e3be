"""The storage contract as generators of MongoDB calls (see ``kern.db.mongo.calls``).

Filters compare with ``{"$eq": value}`` rather than a bare value. On MongoDB the two mean
the same thing; nx-27017 (the wire-compatible test server) turns a bare value into an
"equal, or an array containing it" test that no index can serve, and ``$eq`` into one that
its expression indexes do.

How the contract's guarantees are kept:

- ``append_run``: the next seq is the session's highest plus one (one indexed read), and
  the unique ``{session_id, seq}`` index decides between concurrent writers: the loser gets
  a duplicate-key error, reads the new highest and tries again. No transaction, no counter
  document, no gap: a writer that dies between the read and the insert leaves nothing.
- ``upsert_session``: create is an insert (the unique ``_id`` refuses a second creator);
  update is one ``find_one_and_update`` whose filter holds the expected ``version``.
- ``commit_turn``: in one multi-document transaction where the server has them (replica
  set, mongos); elsewhere (a standalone server, nx-27017) by the pending-commit protocol
  below, which no crash between two calls can leave half visible.
- Searches read only candidates: documents of the scope that share a word with the query
  (``kern.db.mongo.search``).

The pending-commit protocol (``commit_turn`` without a transaction)
--------------------------------------------------------------------
1. Read the session's highest seq (the ``{session_id, seq}`` index).
2. Insert the run with the next seq and a ``pending`` marker: ``{t: <token of this
   attempt>, e: <expected version>, user_id: <the session's user>}``. A run with a marker
   is invisible to every read until its commit is known to have applied.
3. Write the session compare-and-set (``{_id, version: e, pending_run: absent}``, or an
   insert when creating it) with its new state, ``version = e + 1`` and ``pending_run:
   <run_id>``. This write is the commit point: the turn is stored once it is applied.
   If it cannot apply, the run is deleted and ``VersionConflictError`` raised.
4. Clear the run's marker, then 5. the session's ``pending_run``: one client-level
   ``bulkWrite`` (ordered) where the server has it (MongoDB 8.0+, nx-27017), else two
   updates. A connection lost here does not fail the call: the turn is stored.

Round trips: 4 with bulkWrite or in a transaction (find, insert, findAndModify, and
bulkWrite or commitTransaction), 5 otherwise; ``upsert_session`` + ``append_run`` took 4.

Whoever meets a marker settles it, idempotently (``_settle``), from the session document
alone: if the session's ``pending_run`` names the run, the commit applied: clear both
markers (steps 4 and 5) and show the run. Otherwise, if the session is still where the
commit expects it (at version ``e``, or absent for a create), the commit may still apply:
the run stays invisible, as the session still shows the state from before it. Otherwise it
can never apply: the run is deleted. This is sound because a session carrying
``pending_run`` cannot be written again until that commit is settled (every
compare-and-set requires ``pending_run`` to be absent, and settles it first when it is
not): so "``pending_run`` names the run" is true from the commit point until the run's own
marker is cleared. The reads that settle: ``get_session`` (a ``pending_run``),
``get_run``, ``get_last_runs`` and ``update_run`` (a marked run), and the next commit or
``upsert_session`` of the session. A run's marker holds the session's ``user_id`` (indexed)
so that ``forget_user`` also deletes an interrupted commit of a session never created.

A commit that did not reach step 3 and whose writer is gone stays invisible (and in the
way of nothing: its seq is simply skipped) until the session moves on, and is deleted by
the next read that meets it, or by the next commit when it was the session's last run. The
one case left open: a writer stalled between steps 2 and 3 while its session is deleted,
created again and brought back to the version it expects; then its session write applies
to the new session with the run already deleted (upsert_session has the same exposure: a
version is only unique within one life of a session).
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import DESCENDING, ReturnDocument
from pymongo.errors import ConnectionFailure, DocumentTooLarge, DuplicateKeyError, OperationFailure

from kern.db.mongo import codec, search
from kern.db.mongo.calls import Bulk, Call, Op, Pause, Transaction
from kern.db.mongo.schema import (
    LEARNINGS,
    MEMORIES,
    RUNS,
    SCHEMA_VERSIONS,
    SESSIONS,
    IndexSpec,
    index_gaps,
    required_indexes,
    target_versions,
)
from kern.errors import (
    KernError,
    RunFinishedError,
    RunNotFoundError,
    VersionConflictError,
)
from kern.records import (
    Embedding,
    Learning,
    LearningStatus,
    Memory,
    Run,
    RunStatus,
    ScoredLearning,
    ScoredMemory,
    Session,
    SessionType,
    utcnow,
)

#: Attempts of one append before giving up (each failed attempt means another writer's
#: append to the same session succeeded).
APPEND_ATTEMPTS = 1000
#: Server error codes for "the document would exceed 16 MiB" (BSONObjectTooLarge, and the
#: results of an update or upsert that grew too large).
TOO_LARGE_CODES = frozenset({10334, 17419, 17420})
#: "Transaction numbers are only allowed on a replica set member or mongos".
ILLEGAL_OPERATION = 20
#: Settling a session's pending commit takes at most this many rounds (each round one
#: that another writer finished first).
SETTLE_ROUNDS = 20


def _eq(**fields: Any) -> dict[str, Any]:
    """An equality filter on every field that is not ``None`` (enums by their value)."""
    return {
        name: {"$eq": getattr(value, "value", value)}
        for name, value in fields.items()
        if value is not None
    }


def _newest_first(limit: int, offset: int) -> dict[str, Any]:
    return {"sort": [("updated_at_us", DESCENDING)], "skip": max(offset, 0), "limit": limit}


def _records_newest_first(limit: int, offset: int) -> dict[str, Any]:
    """``_newest_first`` for memories and learnings: their records, without the vector."""
    return {**_newest_first(limit, offset), "projection": codec.RECORD}


def _backoff(attempt: int) -> Pause | None:
    """No wait for the first few retries; then a short, jittered, growing one."""
    if attempt < 3:
        return None
    return Pause(random.uniform(0, min(0.05, 0.0005 * 2 ** min(attempt, 10))))


def _too_large(exc: Exception) -> bool:
    """True for pymongo's or the server's "document larger than 16 MiB" errors."""
    if isinstance(exc, DocumentTooLarge):
        return True
    return isinstance(exc, OperationFailure) and exc.code in TOO_LARGE_CODES


# -- lifecycle --------------------------------------------------------------------------
def create_tables() -> Op[None]:
    """Bring every collection to its target schema version, idempotently.

    The indexes are checked, not taken on trust from the version record: each collection's
    indexes are listed (one command per collection) and every required one that is missing
    (dropped by hand, lost in a restore) is created again, the unique ``{session_id, seq}``
    one included. Safe when several processes run it at once: creating an index that
    exists is a no-op, and the version records are plain upserts of the same values.
    """
    stored = yield Call(SCHEMA_VERSIONS, "find", ({},), {"projection": {"version": 1}})
    current = {doc["_id"]: doc.get("version", 0) for doc in stored}
    for name, target in target_versions().items():
        if required_indexes(name):
            existing = yield Call(name, "index_information")
            absent, not_unique = index_gaps(name, existing)
            if not_unique:
                raise KernError(
                    f"the index on {', '.join(not_unique[0].fields)} of kern's {name} collection "
                    "is not unique, and kern relies on it being unique (two writers must "
                    f"never share a seq). Drop that index (db.<prefix>{name}.dropIndex"
                    "(...)) and open the database again: kern creates it as it should be."
                )
            for index in absent:
                yield from _create_index(name, index)
        if name == SESSIONS and current.get(name, 0) < 2:
            yield from _backfill_session_terms()
        if current.get(name, 0) < target:
            with contextlib.suppress(DuplicateKeyError):  # another process recorded it just now
                yield Call(
                    SCHEMA_VERSIONS,
                    "update_one",
                    ({"_id": name}, {"$set": {"version": target, "applied_at": utcnow()}}),
                    {"upsert": True},
                )


def _create_index(collection: str, index: IndexSpec) -> Op[None]:
    try:
        yield Call(collection, "create_index", (list(index.keys),), index.options())
    except OperationFailure as exc:
        # MongoDB says E11000 (duplicate key); nx-27017 passes SQLite's message on.
        if index.unique and (exc.code == 11000 or "UNIQUE constraint" in str(exc)):
            fields = ", ".join(index.fields)
            group = ", ".join(f'{field}: "${field}"' for field in index.fields)
            raise KernError(
                f"kern's unique index on {fields} of its {collection} collection is missing "
                f"and cannot be built again: some documents share a ({fields}), written "
                f"while the index was missing. Find them with db.<prefix>{collection}"
                f".aggregate([{{$group: {{_id: {{{group}}}, n: {{$sum: 1}}}}}}, "
                "{$match: {n: {$gt: 1}}}]), renumber or delete the duplicates, and open the "
                "database again."
            ) from exc
        raise


def forget_user(user_id: str) -> Op[dict[str, int]]:
    """Runs first and the sessions last, so that an interrupted call can simply be repeated.

    The user's sessions are emptied one by one (``{session_id: {$eq}}`` on the history
    index): cheap on every server, and on a sharded cluster each delete goes to one shard.
    An interrupted ``commit_turn`` of a session that was never written holds the user's
    session (id, user) only in its run's pending marker: those runs go too.
    """
    owned = yield Call(SESSIONS, "find", (_eq(user_id=user_id),), {"projection": {"_id": 1}})
    session_ids = [doc["_id"] for doc in owned]
    counts = {"sessions": 0, "runs": 0, "memories": 0, "learnings": 0}
    deletes = [
        (RUNS, "runs", _eq(user_id=user_id)),
        (RUNS, "runs", {"pending.user_id": {"$eq": user_id}}),
    ]
    # Rows tied to the user's sessions go with them, even if they lack the user_id.
    for sid in session_ids:
        deletes.append((RUNS, "runs", _eq(session_id=sid)))
        deletes.append((LEARNINGS, "learnings", _eq(session_id=sid)))
    deletes += [
        (LEARNINGS, "learnings", _eq(user_id=user_id)),
        (MEMORIES, "memories", _eq(user_id=user_id)),
        (SESSIONS, "sessions", _eq(user_id=user_id)),
    ]
    for collection, table, query in deletes:
        done = yield Call(collection, "delete_many", (query,))
        counts[table] += done.deleted_count
    return counts


# -- sessions ---------------------------------------------------------------------------
def get_session(session_id: str) -> Op[Session | None]:
    doc = yield Call(SESSIONS, "find_one", ({"_id": session_id},))
    if doc is None:
        return None
    if doc.get("pending_run") is not None:  # its commit applied: finish it
        yield from _finalize(session_id, doc["pending_run"])
    return codec.session_from(doc)


def _stored_version(session_id: str) -> Op[int | None]:
    doc = yield Call(SESSIONS, "find_one", ({"_id": session_id},), {"projection": {"version": 1}})
    return None if doc is None else doc["version"]


@dataclass
class _SessionWrite:
    """A compare-and-set write of ``session`` at ``expected`` (``upsert_session`` and
    ``commit_turn``): the fields to store, and the record returned once it is stored."""

    session: Session
    expected: int | None
    now: datetime
    fields: dict[str, Any]

    @classmethod
    def of(cls, session: Session, expected: int | None) -> _SessionWrite:
        now = utcnow()
        fields = codec.session_fields(session)
        fields["version"] = (expected or 0) + 1
        codec.stamp(fields, "updated_at", now)
        write = cls(session, expected, now, fields)
        codec.check_size(write.new_doc(), f"session {session.session_id!r}", codec.FIX_SESSION)
        return write

    @property
    def session_id(self) -> str:
        return self.session.session_id

    def new_doc(self, **extra: Any) -> dict[str, Any]:
        """The document that creates the session (``expected`` None)."""
        doc = {"_id": self.session_id, **self.fields, **extra}
        return codec.stamp(doc, "created_at", self.session.created_at)

    def cas_filter(self) -> dict[str, Any]:
        """Matches the stored session if it is at ``expected`` and no commit is pending."""
        return {
            "_id": self.session_id,
            "version": {"$eq": self.expected},
            "pending_run": {"$exists": False},
        }

    def stored(self, created: datetime) -> Session:
        return self.session.model_copy(
            update={
                "version": self.fields["version"],
                "updated_at": self.now,
                "created_at": created,
            }
        )


def _cas(write: _SessionWrite, pending_run: str | None) -> Op[Session | None]:
    """Apply ``write`` compare-and-set (with ``pending_run`` set, if given); the stored
    session, or None if the stored one is not at ``write.expected`` (nothing written).

    A commit still pending on the session is settled first. When the stored session already
    names ``pending_run`` (a retry of the same turn wrote it), that is what is returned.
    """
    sid = write.session_id
    extra = {} if pending_run is None else {"pending_run": pending_run}
    unexplained = 0
    for _ in range(SETTLE_ROUNDS):
        try:
            if write.expected is None:
                try:
                    yield Call(SESSIONS, "insert_one", (write.new_doc(**extra),))
                    return write.stored(write.session.created_at)
                except DuplicateKeyError:
                    stored = None
            else:
                stored = yield Call(
                    SESSIONS,
                    "find_one_and_update",
                    (write.cas_filter(), {"$set": {**write.fields, **extra}}),
                    {"projection": {"created_at_us": 1}, "return_document": ReturnDocument.AFTER},
                )
        except (DocumentTooLarge, OperationFailure) as exc:
            if _too_large(exc):
                raise codec.DocumentTooLargeError(
                    f"session {sid!r}", None, codec.FIX_SESSION
                ) from None
            raise
        if stored is not None:
            return write.stored(codec.read_stamp(stored, "created_at"))
        current = yield Call(SESSIONS, "find_one", ({"_id": sid},))
        if current is None:
            if write.expected is None:
                continue  # deleted since the insert failed: try again
            return None
        if pending_run is not None and current.get("pending_run") == pending_run:
            return codec.session_from(current)
        if write.expected is None or current["version"] != write.expected:
            return None
        if current.get("pending_run") is not None:
            yield from _finalize(sid, current["pending_run"])  # then try again
            continue
        # Matches now: another writer settled a pending commit in between, or the server
        # failed to apply the update (nx-27017 reports some errors as "no document").
        unexplained += 1
        if unexplained >= 3:
            raise KernError(
                f"the server did not apply the update of session {sid!r} (version "
                f"{write.expected}): nothing was written; try again."
            )
    raise KernError(
        f"could not write session {sid!r}: other writers kept changing it. Nothing was "
        "written; try again."
    )


def upsert_session(session: Session, expected_version: int | None) -> Op[Session]:
    write = _SessionWrite.of(session, expected_version)
    stored = yield from _cas(write, None)
    if stored is None:
        actual = yield from _stored_version(session.session_id)
        raise VersionConflictError(session.session_id, expected_version, actual)
    return stored


def list_sessions(
    *,
    user_id: str | None,
    component_id: str | None,
    session_type: SessionType | None,
    limit: int,
    offset: int,
) -> Op[list[Session]]:
    if limit <= 0:
        return []
    query = _eq(user_id=user_id, component_id=component_id, session_type=session_type)
    docs = yield Call(SESSIONS, "find", (query,), _newest_first(limit, offset))
    return [codec.session_from(doc) for doc in docs]


def search_sessions(user_id: str, query: str, *, limit: int) -> Op[list[Session]]:
    """The user's sessions sharing a word with ``query`` (the ``{user_id, terms}`` index),
    at most ``search.CANDIDATES`` of them, ranked here as memories are (BM25)."""
    terms = search.query_terms(query)
    if limit <= 0 or not terms:
        return []
    docs = yield Call(
        SESSIONS,
        "find",
        ({"user_id": {"$eq": user_id}, "terms": {"$in": terms}},),
        {"limit": search.CANDIDATES},
    )
    candidates = [(doc, doc.get("terms") or [], doc["updated_at_us"]) for doc in docs]
    return [codec.session_from(doc) for doc, _ in search.rank(candidates, terms, limit)]


def _backfill_session_terms() -> Op[None]:
    """Schema version 2 of sessions: the sessions stored before it get their ``terms``
    (idempotent: only documents without the field are read, in batches)."""
    while True:
        docs = yield Call(
            SESSIONS,
            "find",
            ({"terms": {"$exists": False}},),
            {"projection": {"name": 1, "summary": 1}, "limit": 500},
        )
        if not docs:
            return
        updates = []
        for doc in docs:
            terms = codec.session_terms(doc.get("name"), doc.get("summary"))
            unset = {"_id": doc["_id"], "terms": {"$exists": False}}
            updates.append(Call(SESSIONS, "update_one", (unset, {"$set": {"terms": terms}})))
        yield Bulk(tuple(updates))


def delete_session(session_id: str) -> Op[bool]:
    yield Call(RUNS, "delete_many", (_eq(session_id=session_id),))
    done = yield Call(SESSIONS, "delete_one", ({"_id": session_id},))
    return bool(done.deleted_count)


# -- pending commits ----------------------------------------------------------------------
def _finalize(session_id: str, run_id: str) -> Op[None]:
    """Finish a commit whose session write applied: clear the run's marker (the run is
    then visible on its own), then the session's ``pending_run`` (which lets the session
    be written again). Idempotent; safe to run by anyone, any number of times."""
    yield Bulk(
        (
            Call(
                RUNS,
                "update_one",
                ({"_id": run_id, "pending": {"$exists": True}}, {"$unset": {"pending": ""}}),
            ),
            Call(
                SESSIONS,
                "update_one",
                (
                    {"_id": session_id, "pending_run": {"$eq": run_id}},
                    {"$unset": {"pending_run": ""}},
                ),
            ),
        )
    )


def _may_still_apply(marker: dict[str, Any], session: dict[str, Any] | None) -> bool:
    """Whether the session write of a pending commit could still apply to ``session``."""
    expected = marker.get("e")
    if expected is None:
        return session is None
    return session is not None and session["version"] == expected


def _settle(doc: dict[str, Any]) -> Op[dict[str, Any] | None]:
    """The run document ``doc`` (which has a pending marker) as the contract shows it now:
    without its marker if its commit applied (the commit is then finished), None if not,
    yet or ever (a commit that can never apply is deleted). One indexed read of the
    session, and writes only when there is something to finish or delete."""
    run_id, session_id, marker = doc["_id"], doc["session_id"], doc["pending"]
    session = yield Call(
        SESSIONS,
        "find_one",
        ({"_id": session_id},),
        {"projection": {"version": 1, "pending_run": 1}},
    )
    if session is not None and session.get("pending_run") == run_id:
        yield from _finalize(session_id, run_id)
        return {key: value for key, value in doc.items() if key != "pending"}
    if _may_still_apply(marker, session):
        return None  # invisible, as the session still shows the state before it
    done = yield Call(RUNS, "delete_one", ({"_id": run_id, "pending.t": {"$eq": marker["t"]}},))
    if done.deleted_count:
        return None
    # Changed since it was read: finished by its writer (or taken over by a retry).
    again = yield Call(RUNS, "find_one", ({"_id": run_id},))
    return None if again is None or "pending" in again else again


def _highest(session_id: str) -> Call:
    """The session's run with the highest seq (seq, and its marker if pending)."""
    return Call(
        RUNS,
        "find_one",
        (_eq(session_id=session_id),),
        {"projection": {"seq": 1, "session_id": 1, "pending": 1}, "sort": [("seq", DESCENDING)]},
    )


# -- runs -------------------------------------------------------------------------------
class Transactions:
    """Whether ``commit_turn`` runs in a multi-document transaction; one per db object.

    Set at first use from the server kern found (a replica-set primary or a mongos: yes; a
    standalone server or nx-27017: no), and turned off for good if the server refuses one.
    """

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled


def _check_run_size(doc: dict[str, Any], run_id: str) -> None:
    codec.check_size(doc, f"run {run_id!r}", codec.FIX_RUN)


def _run_too_large(run_id: str) -> codec.DocumentTooLargeError:
    return codec.DocumentTooLargeError(f"run {run_id!r}", None, codec.FIX_RUN)


def _already_stored(run_id: str) -> ValueError:
    return ValueError(
        f"run {run_id!r} is already stored: runs are written once. Use update_run() to "
        "finish a running run, or give a new run_id."
    )


def append_run(run: Run) -> Op[Run]:
    sid = run.session_id
    doc = codec.run_doc(run, 0)
    _check_run_size(doc, run.run_id)
    for attempt in range(APPEND_ATTEMPTS):
        last = yield _highest(sid)
        seq = (last["seq"] if last else 0) + 1
        doc["seq"] = seq
        try:
            yield Call(RUNS, "insert_one", (doc,))
        except DuplicateKeyError:
            taken = yield Call(
                RUNS,
                "find_one",
                ({"_id": run.run_id},),
                {"projection": {"session_id": 1, "pending": 1}},
            )
            if taken is not None and "pending" in taken:
                yield from _settle(taken)  # an interrupted commit may leave the id free
                taken = yield Call(
                    RUNS, "find_one", ({"_id": run.run_id},), {"projection": {"_id": 1}}
                )
            if taken is not None:
                raise _already_stored(run.run_id) from None
            pause = _backoff(attempt)  # another writer took this seq: read the new highest
            if pause is not None:
                yield pause
            continue
        except DocumentTooLarge:
            raise _run_too_large(run.run_id) from None
        yield Call(
            SESSIONS,
            "update_one",
            (
                {"_id": sid, "updated_at_us": {"$lt": doc["created_at_us"]}},
                {"$set": {"updated_at": doc["created_at"], "updated_at_us": doc["created_at_us"]}},
            ),
        )
        return run.model_copy(update={"seq": seq})
    raise KernError(
        f"could not append to session {sid!r}: {APPEND_ATTEMPTS} attempts each lost the "
        "race for the next seq to another writer. Nothing was written; try again."
    )


def commit_turn(
    run: Run, session: Session, expected_version: int | None, transactions: Transactions
) -> Op[tuple[Run, Session]]:
    """``BaseDb.commit_turn``: in a transaction if ``transactions.enabled``, else by the
    pending-commit protocol (module doc). Both check the sizes before anything is sent."""
    if run.session_id != session.session_id:
        raise ValueError(
            f"run {run.run_id!r} names session {run.session_id!r}, but the session written "
            f"with it is {session.session_id!r}: a turn's run belongs to the session it "
            "changes (run.session_id must be session.session_id). Nothing was written."
        )
    write = _SessionWrite.of(session, expected_version)
    doc = codec.run_doc(run, 0)
    marker = {"t": uuid.uuid4().hex, "e": expected_version, "user_id": session.user_id}
    _check_run_size({**doc, "pending": marker}, run.run_id)
    if transactions.enabled:
        done = yield from _commit_in_transaction(run, doc, write, transactions)
        if done is not None:
            return done
    return (yield from _commit_with_marker(run, {**doc, "pending": marker}, write))


#: ``_adopt`` found the run gone or changed: look again.
_AGAIN = object()


def _commit_with_marker(
    run: Run, doc: dict[str, Any], write: _SessionWrite
) -> Op[tuple[Run, Session]]:
    run_id, sid = run.run_id, write.session_id
    last: dict[str, Any] | None = None
    for attempt in range(APPEND_ATTEMPTS):
        last = yield _highest(sid)
        doc["seq"] = (last["seq"] if last else 0) + 1
        try:
            yield Call(RUNS, "insert_one", (doc,))
            break
        except DuplicateKeyError:
            existing = yield Call(RUNS, "find_one", ({"_id": run_id},))
            if existing is None:  # another writer took this seq
                pause = _backoff(attempt)
                if pause is not None:
                    yield pause
                continue
        except DocumentTooLarge:
            raise _run_too_large(run_id) from None
        outcome = yield from _adopt(existing, doc, write)
        if isinstance(outcome, tuple):
            return outcome  # a retry of a stored turn: nothing written
        if outcome is not _AGAIN:
            break  # this call now carries that run's commit
    else:
        raise KernError(
            f"could not commit the turn to session {sid!r}: {APPEND_ATTEMPTS} attempts each "
            "lost the race for the next seq to another writer. Nothing was written; try again."
        )
    stored = yield from _cas(write, run_id)
    if stored is None:
        yield Call(
            RUNS, "delete_one", ({"_id": run_id, "pending.t": {"$eq": doc["pending"]["t"]}},)
        )
        actual = yield from _stored_version(sid)
        raise VersionConflictError(sid, write.expected, actual)
    try:
        yield from _finalize(sid, run_id)
        if last is not None and "pending" in last and last["_id"] != run_id:
            yield from _settle(last)  # a commit interrupted before this one: now it never applies
    except ConnectionFailure:
        pass  # the turn is stored (step 3); whoever reads it next finishes the commit
    return run.model_copy(update={"seq": doc["seq"]}), stored


def _adopt(
    existing: dict[str, Any], doc: dict[str, Any], write: _SessionWrite
) -> Op[tuple[Run, Session] | object]:
    """``commit_turn`` found its run_id stored (``existing``): a retry of the same turn.

    A run whose commit applied is returned with the stored session, nothing written. A
    pending run that may still apply (its writer died before its session write) is taken
    over: this call's run and marker replace it in its seq, and ``doc["seq"]`` is set to
    it (returns None: go on with the session write). ``_AGAIN``: look again.
    """
    run_id, sid = existing["_id"], write.session_id
    if existing["session_id"] != sid:
        raise ValueError(
            f"run {run_id!r} is already stored in another session: runs are written once. "
            "Give this turn a new run_id."
        )
    if "pending" in existing:
        settled = yield from _settle(existing)
        if settled is None:
            fields = {key: value for key, value in doc.items() if key != "_id"}
            fields["seq"] = existing["seq"]
            old = existing["pending"]["t"]
            took = yield Call(
                RUNS, "update_one", ({"_id": run_id, "pending.t": {"$eq": old}}, {"$set": fields})
            )
            if not took.matched_count:
                return _AGAIN
            doc["seq"] = existing["seq"]
            return None
        existing = settled
    stored = yield from get_session(sid)
    if stored is None:
        raise _already_stored(run_id)
    return codec.run_from(existing), stored


def _commit_in_transaction(
    run: Run, doc: dict[str, Any], write: _SessionWrite, transactions: Transactions
) -> Op[tuple[Run, Session] | None]:
    """The run insert and the session write in one transaction. None: not done here (the
    run_id is stored already, or the server refused transactions): use the protocol."""
    sid = write.session_id
    for attempt in range(APPEND_ATTEMPTS):
        yield Transaction("start")
        try:
            last = yield _highest(sid)
            doc["seq"] = (last["seq"] if last else 0) + 1
            try:
                yield Call(RUNS, "insert_one", (doc,))
            except DuplicateKeyError:
                yield Transaction("abort")
                taken = yield Call(
                    RUNS, "find_one", ({"_id": run.run_id},), {"projection": {"_id": 1}}
                )
                if taken is not None:
                    return None  # a retry: the protocol's path answers it
                pause = _backoff(attempt)
                if pause is not None:
                    yield pause
                continue
            if write.expected is None:
                try:
                    yield Call(SESSIONS, "insert_one", (write.new_doc(),))
                    stored: Session | None = write.stored(write.session.created_at)
                except DuplicateKeyError:
                    stored = None
            else:
                found = yield Call(
                    SESSIONS,
                    "find_one_and_update",
                    (write.cas_filter(), {"$set": write.fields}),
                    {"projection": {"created_at_us": 1}, "return_document": ReturnDocument.AFTER},
                )
                stored = (
                    None if found is None else write.stored(codec.read_stamp(found, "created_at"))
                )
            if stored is None:
                yield Transaction("abort")
                current = yield Call(
                    SESSIONS,
                    "find_one",
                    ({"_id": sid},),
                    {"projection": {"version": 1, "pending_run": 1}},
                )
                if (
                    current is not None
                    and current["version"] == write.expected
                    and current.get("pending_run") is not None
                ):
                    yield from _finalize(sid, current["pending_run"])  # left by the protocol
                    continue
                actual = None if current is None else current["version"]
                raise VersionConflictError(sid, write.expected, actual)
            yield Transaction("commit")
        except DocumentTooLarge:
            yield Transaction("abort")
            raise _run_too_large(run.run_id) from None
        except OperationFailure as exc:
            yield Transaction("abort")
            if exc.code == ILLEGAL_OPERATION:  # no transactions here after all
                transactions.enabled = False
                return None
            if _too_large(exc):
                raise codec.DocumentTooLargeError(
                    f"session {sid!r}", None, codec.FIX_SESSION
                ) from None
            if exc.has_error_label("TransientTransactionError"):
                pause = _backoff(attempt)
                if pause is not None:
                    yield pause
                continue
            raise
        return run.model_copy(update={"seq": doc["seq"]}), stored
    raise KernError(
        f"could not commit the turn to session {sid!r}: {APPEND_ATTEMPTS} transactions each "
        "conflicted with another writer. Nothing was written; try again."
    )


def get_run(run_id: str) -> Op[Run | None]:
    doc = yield Call(RUNS, "find_one", ({"_id": run_id},))
    if doc is not None and "pending" in doc:
        doc = yield from _settle(doc)
    return None if doc is None else codec.run_from(doc)


def get_last_runs(
    session_id: str,
    limit: int,
    *,
    before_seq: int | None,
    top_level_only: bool,
    status: RunStatus | None,
) -> Op[list[Run]]:
    if limit <= 0:
        return []
    query = _history_query(session_id, top_level_only, status)
    # Newest first through the {session_id, seq} index, stopping after ``limit``: one find,
    # unless runs of unfinished commits were among them (then the next ones below).
    found: list[dict[str, Any]] = []
    below = before_seq
    while len(found) < limit:
        if below is not None:
            query["seq"] = {"$lt": below}
        wanted = limit - len(found)
        docs = yield Call(RUNS, "find", (query,), {"sort": [("seq", DESCENDING)], "limit": wanted})
        for doc in docs:
            if "pending" in doc:
                doc = yield from _settle(doc)
            if doc is not None:
                found.append(doc)
        if len(docs) < wanted:
            break
        below = docs[-1]["seq"]
    return [codec.run_from(doc) for doc in reversed(found)]


def read_turn(
    session_id: str,
    limit: int,
    *,
    top_level_only: bool,
    status: RunStatus | None,
) -> Op[tuple[Session | None, list[Run]]]:
    """The session and its newest ``limit`` runs in ONE command: an aggregate on the session
    by ``_id`` with ``$unionWith`` of the runs' history query (the ``{session_id, seq}``
    index, newest first, limited). Documents of an unfinished commit (a ``pending_run`` on
    the session, a ``pending`` run) are settled by the two reads this replaces."""
    if limit <= 0:
        return (yield from get_session(session_id)), []
    history = [
        {"$match": _history_query(session_id, top_level_only, status)},
        {"$sort": {"seq": DESCENDING}},
        {"$limit": limit},
    ]
    pipeline = [
        {"$match": {"_id": session_id}},
        {"$unionWith": {"coll": RUNS, "pipeline": history}},
    ]
    docs = yield Call(SESSIONS, "aggregate", (pipeline,))
    found = [doc for doc in docs if "seq" in doc]
    session_docs = [doc for doc in docs if "seq" not in doc]
    unsettled = any("pending" in doc for doc in found) or any(
        doc.get("pending_run") is not None for doc in session_docs
    )
    if unsettled:
        session = yield from get_session(session_id)
        runs = yield from get_last_runs(
            session_id, limit, before_seq=None, top_level_only=top_level_only, status=status
        )
        return session, runs
    session = codec.session_from(session_docs[0]) if session_docs else None
    return session, [codec.run_from(doc) for doc in reversed(found)]


def _history_query(
    session_id: str, top_level_only: bool, status: RunStatus | None
) -> dict[str, Any]:
    query = _eq(session_id=session_id)
    if top_level_only:
        query["parent_run_id"] = None
    if status is not None:
        query["status"] = {"$eq": RunStatus(status).value}
    return query


def update_run(
    run_id: str,
    *,
    status: RunStatus,
    output: object,
    messages: Sequence[object] | None,
    metrics: dict[str, object] | None,
) -> Op[Run]:
    changes: dict[str, Any] = {"status": RunStatus(status).value}
    if output is not None:
        changes["output"] = codec.put_json(codec.checked_json(output, "output"))
    if messages is not None:
        changes["messages"] = codec.put_messages(messages)
    if metrics is not None:
        changes["metrics"] = codec.put_json(codec.checked_json(metrics, "metrics", obj=True))
    _check_run_size(changes, run_id)
    for _ in range(2):
        try:
            doc = yield Call(
                RUNS,
                "find_one_and_update",
                (
                    {
                        "_id": run_id,
                        "status": {"$eq": RunStatus.RUNNING.value},
                        "pending": {"$exists": False},
                    },
                    {"$set": changes},
                ),
                {"return_document": ReturnDocument.AFTER},
            )
        except (DocumentTooLarge, OperationFailure) as exc:
            if _too_large(exc):
                raise _run_too_large(run_id) from None
            raise
        if doc is not None:
            return codec.run_from(doc)
        current = yield Call(
            RUNS,
            "find_one",
            ({"_id": run_id},),
            {"projection": {"status": 1, "session_id": 1, "pending": 1}},
        )
        if current is not None and "pending" in current:
            current = yield from _settle(current)
            if current is not None:
                continue  # its commit is finished now: update it
        if current is None:
            raise RunNotFoundError(
                f"no run {run_id!r} is stored: append_run() it before updating it."
            )
        if current["status"] != RunStatus.RUNNING.value:
            raise RunFinishedError(
                f"run {run_id!r} is already {current['status']!r}: only a 'running' run can "
                "be updated. Append a new run instead."
            )
        break
    raise KernError(f"the server did not apply the update of run {run_id!r}; try again.")


# -- memories and learnings -------------------------------------------------------------
def _upsert(
    collection: str,
    record_id: str,
    fields: dict[str, Any],
    created: datetime,
    embedding: Embedding | None,
) -> Op[tuple[datetime, datetime]]:
    """Insert or replace by ``_id``, keeping a stored ``created_at``; the vector in the same
    update: ``embedding``'s, or none (a stored one is removed: it described the old row).

    Returns the new ``updated_at`` and the ``created_at`` the stored document has.
    """
    now = utcnow()
    codec.stamp(fields, "updated_at", now)
    update: dict[str, Any] = {"$setOnInsert": codec.stamp({}, "created_at", created)}
    if embedding is None:
        update |= {"$set": fields, "$unset": codec.NO_VECTOR}
    else:
        fields |= codec.vector_fields(embedding)
        update["$set"] = fields
    what = f"{collection[:-1]} {record_id!r}"
    codec.check_size(
        {"_id": record_id, **fields, **update["$setOnInsert"]}, what, codec.FIX_CONTENT
    )
    call = Call(collection, "update_one", ({"_id": record_id}, update), {"upsert": True})
    try:
        try:
            done = yield call
        except DuplicateKeyError:
            done = yield call  # two upserts of one new id raced: this one now updates
    except (DocumentTooLarge, OperationFailure) as exc:
        if _too_large(exc):
            raise codec.DocumentTooLargeError(what, None, codec.FIX_CONTENT) from None
        raise
    if done.upserted_id is not None:
        return now, created
    stored = yield Call(
        collection, "find_one", ({"_id": record_id},), {"projection": {"created_at_us": 1}}
    )
    return now, created if stored is None else codec.read_stamp(stored, "created_at")


def upsert_memory(memory: Memory, embedding: Embedding | None) -> Op[Memory]:
    fields = codec.memory_fields(memory)
    now, created = yield from _upsert(
        MEMORIES, memory.memory_id, fields, memory.created_at, embedding
    )
    return memory.model_copy(update={"updated_at": now, "created_at": created})


def get_memory(memory_id: str) -> Op[Memory | None]:
    doc = yield Call(MEMORIES, "find_one", ({"_id": memory_id},), {"projection": codec.RECORD})
    return None if doc is None else codec.memory_from(doc)


def list_memories(
    user_id: str, *, agent_id: str | None, limit: int, offset: int
) -> Op[list[Memory]]:
    if limit <= 0:
        return []
    query = _eq(user_id=user_id, agent_id=agent_id)
    docs = yield Call(MEMORIES, "find", (query,), _records_newest_first(limit, offset))
    return [codec.memory_from(doc) for doc in docs]


def search_memories(
    user_id: str, query: str, *, agent_id: str | None, limit: int
) -> Op[list[ScoredMemory]]:
    terms = search.query_terms(query)
    if limit <= 0 or not terms:
        return []
    scope = _eq(user_id=user_id, agent_id=agent_id)
    docs = yield Call(
        MEMORIES,
        "find",
        ({**scope, "terms": {"$in": terms}},),
        {"limit": search.CANDIDATES, "projection": codec.RECORD},
    )
    ranked = search.rank([(doc, doc["terms"], doc["updated_at_us"]) for doc in docs], terms, limit)
    return [ScoredMemory(memory=codec.memory_from(doc), score=score) for doc, score in ranked]


def recall_memories(
    user_id: str, query: str, *, agent_id: str | None, limit: int, recent: int
) -> Op[tuple[list[ScoredMemory], list[Memory]]]:
    """``BaseDb.recall_memories`` as one plan: the ranked search (none for an empty query)
    and the ``recent`` newest, so a turn's recall checks the db's readiness once."""
    ranked: list[ScoredMemory] = []
    if query:
        ranked = yield from search_memories(user_id, query, agent_id=agent_id, limit=limit)
    newest: list[Memory] = []
    if recent:
        newest = yield from list_memories(user_id, agent_id=agent_id, limit=recent, offset=0)
    return ranked, newest


def delete_memory(memory_id: str) -> Op[bool]:
    done = yield Call(MEMORIES, "delete_one", ({"_id": memory_id},))
    return bool(done.deleted_count)


def upsert_learning(learning: Learning, embedding: Embedding | None) -> Op[Learning]:
    fields = codec.learning_fields(learning)
    now, created = yield from _upsert(
        LEARNINGS, learning.learning_id, fields, learning.created_at, embedding
    )
    return learning.model_copy(update={"updated_at": now, "created_at": created})


def get_learning(learning_id: str) -> Op[Learning | None]:
    doc = yield Call(LEARNINGS, "find_one", ({"_id": learning_id},), {"projection": codec.RECORD})
    return None if doc is None else codec.learning_from(doc)


def query_learnings(
    *,
    kind: str | None,
    namespace: str | None,
    user_id: str | None,
    session_id: str | None,
    entity_id: str | None,
    status: LearningStatus | None,
    limit: int,
    offset: int,
) -> Op[list[Learning]]:
    if limit <= 0:
        return []
    query = _eq(
        kind=kind,
        namespace=namespace,
        user_id=user_id,
        session_id=session_id,
        entity_id=entity_id,
        status=status,
    )
    docs = yield Call(LEARNINGS, "find", (query,), _records_newest_first(limit, offset))
    return [codec.learning_from(doc) for doc in docs]


def search_learnings(
    query: str,
    *,
    kind: str | None,
    namespace: str | None,
    user_id: str | None,
    status: LearningStatus | None,
    limit: int,
) -> Op[list[ScoredLearning]]:
    terms = search.query_terms(query)
    if limit <= 0 or not terms:
        return []
    scope = _eq(kind=kind, namespace=namespace, user_id=user_id, status=status)
    docs = yield Call(
        LEARNINGS,
        "find",
        ({"terms": {"$in": terms}, **scope},),
        {"limit": search.CANDIDATES, "projection": codec.RECORD},
    )
    ranked = search.rank([(doc, doc["terms"], doc["updated_at_us"]) for doc in docs], terms, limit)
    return [ScoredLearning(learning=codec.learning_from(doc), score=score) for doc, score in ranked]


def delete_learning(learning_id: str) -> Op[bool]:
    done = yield Call(LEARNINGS, "delete_one", ({"_id": learning_id},))
    return bool(done.deleted_count)
