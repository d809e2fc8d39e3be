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
- Searches read only candidates: documents of the scope that share a word with the query
  (``kern.db.mongo.search``).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from kern.db.mongo import codec, search
from kern.db.mongo.calls import Call, Op, Pause
from kern.db.mongo.schema import (
    LEARNINGS,
    MEMORIES,
    RUNS,
    SCHEMA_VERSIONS,
    SESSIONS,
    pending,
    target_versions,
)
from kern.errors import (
    KernError,
    RunFinishedError,
    RunNotFoundError,
    VersionConflictError,
)
from kern.records import (
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


def _eq(**fields: Any) -> dict[str, Any]:
    """An equality filter on every field that is not ``None`` (enums by their value)."""
    return {
        name: {"$eq": getattr(value, "value", value)}
        for name, value in fields.items()
        if value is not None
    }


def _newest_first(limit: int, offset: int) -> dict[str, Any]:
    return {"sort": [("updated_at_us", DESCENDING)], "skip": max(offset, 0), "limit": limit}


def _backoff(attempt: int) -> Pause | None:
    """No wait for the first few retries; then a short, jittered, growing one."""
    if attempt < 3:
        return None
    return Pause(random.uniform(0, min(0.05, 0.0005 * 2 ** min(attempt, 10))))


# -- lifecycle --------------------------------------------------------------------------
def create_tables() -> Op[None]:
    """Bring every collection to its target schema version (indexes), idempotently.

    Safe when several processes run it at once: creating an index that exists is a no-op,
    and the version records are plain upserts of the same values.
    """
    stored = yield Call(SCHEMA_VERSIONS, "find", ({},), {"projection": {"version": 1}})
    current = {doc["_id"]: doc.get("version", 0) for doc in stored}
    for name, target in target_versions().items():
        if current.get(name, 0) >= target:
            continue
        for version in pending(name, current.get(name, 0)):
            for index in version.indexes:
                yield Call(name, "create_index", (list(index.keys),), index.options())
        with contextlib.suppress(DuplicateKeyError):  # another process recorded it just now
            yield Call(
                SCHEMA_VERSIONS,
                "update_one",
                ({"_id": name}, {"$set": {"version": target, "applied_at": utcnow()}}),
                {"upsert": True},
            )


def forget_user(user_id: str) -> Op[dict[str, int]]:
    """Runs first and the sessions last, so that an interrupted call can simply be repeated.

    The user's sessions are emptied one by one (``{session_id: {$eq}}`` on the history
    index): cheap on every server, and on a sharded cluster each delete goes to one shard.
    """
    owned = yield Call(SESSIONS, "find", (_eq(user_id=user_id),), {"projection": {"_id": 1}})
    session_ids = [doc["_id"] for doc in owned]
    counts = {"sessions": 0, "runs": 0, "memories": 0, "learnings": 0}
    deletes = [(RUNS, "runs", _eq(user_id=user_id))]
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
    return None if doc is None else codec.session_from(doc)


def _stored_version(session_id: str) -> Op[int | None]:
    doc = yield Call(SESSIONS, "find_one", ({"_id": session_id},), {"projection": {"version": 1}})
    return None if doc is None else doc["version"]


def upsert_session(session: Session, expected_version: int | None) -> Op[Session]:
    now = utcnow()
    version = (expected_version or 0) + 1
    sid = session.session_id
    fields = codec.session_fields(session)
    fields["version"] = version
    codec.stamp(fields, "updated_at", now)
    if expected_version is None:
        doc = {"_id": sid, **fields}
        codec.stamp(doc, "created_at", session.created_at)
        try:
            yield Call(SESSIONS, "insert_one", (doc,))
        except DuplicateKeyError:
            actual = yield from _stored_version(sid)
            raise VersionConflictError(sid, None, actual) from None
        return session.model_copy(update={"version": version, "updated_at": now})

    stored = yield Call(
        SESSIONS,
        "find_one_and_update",
        ({"_id": sid, "version": {"$eq": expected_version}}, {"$set": fields}),
        {"projection": {"created_at_us": 1}, "return_document": ReturnDocument.AFTER},
    )
    if stored is None:
        actual = yield from _stored_version(sid)
        if actual == expected_version:
            raise KernError(
                f"the server did not apply the update of session {sid!r} (version "
                f"{expected_version}): nothing was written; try again."
            )
        raise VersionConflictError(sid, expected_version, actual)
    created = codec.read_stamp(stored, "created_at")
    return session.model_copy(update={"version": version, "updated_at": now, "created_at": created})


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


def delete_session(session_id: str) -> Op[bool]:
    yield Call(RUNS, "delete_many", (_eq(session_id=session_id),))
    done = yield Call(SESSIONS, "delete_one", ({"_id": session_id},))
    return done.deleted_count > 0


# -- runs -------------------------------------------------------------------------------
def append_run(run: Run) -> Op[Run]:
    sid = run.session_id
    doc = codec.run_doc(run, 0)
    for attempt in range(APPEND_ATTEMPTS):
        last = yield Call(
            RUNS,
            "find_one",
            (_eq(session_id=sid),),
            {"projection": {"seq": 1}, "sort": [("seq", DESCENDING)]},
        )
        seq = (last["seq"] if last else 0) + 1
        doc["seq"] = seq
        try:
            yield Call(RUNS, "insert_one", (doc,))
        except DuplicateKeyError:
            taken = yield Call(RUNS, "find_one", ({"_id": run.run_id},), {"projection": {"_id": 1}})
            if taken is not None:
                raise ValueError(
                    f"run {run.run_id!r} is already stored: runs are written once. Use "
                    "update_run() to finish a running run, or give a new run_id."
                ) from None
            pause = _backoff(attempt)  # another writer took this seq: read the new highest
            if pause is not None:
                yield pause
            continue
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


def get_run(run_id: str) -> Op[Run | None]:
    doc = yield Call(RUNS, "find_one", ({"_id": run_id},))
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
    query = _eq(session_id=session_id)
    if before_seq is not None:
        query["seq"] = {"$lt": before_seq}
    if top_level_only:
        query["parent_run_id"] = None
    if status is not None:
        query["status"] = {"$eq": RunStatus(status).value}
    # Newest first through the {session_id, seq} index, stopping after ``limit``.
    docs = yield Call(RUNS, "find", (query,), {"sort": [("seq", DESCENDING)], "limit": limit})
    return [codec.run_from(doc) for doc in reversed(docs)]


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
    doc = yield Call(
        RUNS,
        "find_one_and_update",
        ({"_id": run_id, "status": {"$eq": RunStatus.RUNNING.value}}, {"$set": changes}),
        {"return_document": ReturnDocument.AFTER},
    )
    if doc is not None:
        return codec.run_from(doc)
    current = yield Call(RUNS, "find_one", ({"_id": run_id},), {"projection": {"status": 1}})
    if current is None:
        raise RunNotFoundError(f"no run {run_id!r} is stored: append_run() it before updating it.")
    if current["status"] != RunStatus.RUNNING.value:
        raise RunFinishedError(
            f"run {run_id!r} is already {current['status']!r}: only a 'running' run can be "
            "updated. Append a new run instead."
        )
    raise KernError(f"the server did not apply the update of run {run_id!r}; try again.")


# -- memories and learnings -------------------------------------------------------------
def _upsert(
    collection: str, record_id: str, fields: dict[str, Any], created: datetime
) -> Op[tuple[datetime, datetime]]:
    """Insert or replace by ``_id``, keeping a stored ``created_at``.

    Returns the new ``updated_at`` and the ``created_at`` the stored document has.
    """
    now = utcnow()
    codec.stamp(fields, "updated_at", now)
    update = {"$set": fields, "$setOnInsert": codec.stamp({}, "created_at", created)}
    call = Call(collection, "update_one", ({"_id": record_id}, update), {"upsert": True})
    try:
        done = yield call
    except DuplicateKeyError:
        done = yield call  # two upserts of one new id raced: this one now updates
    if done.upserted_id is not None:
        return now, created
    stored = yield Call(
        collection, "find_one", ({"_id": record_id},), {"projection": {"created_at_us": 1}}
    )
    return now, created if stored is None else codec.read_stamp(stored, "created_at")


def upsert_memory(memory: Memory) -> Op[Memory]:
    fields = codec.memory_fields(memory)
    now, created = yield from _upsert(MEMORIES, memory.memory_id, fields, memory.created_at)
    return memory.model_copy(update={"updated_at": now, "created_at": created})


def get_memory(memory_id: str) -> Op[Memory | None]:
    doc = yield Call(MEMORIES, "find_one", ({"_id": memory_id},))
    return None if doc is None else codec.memory_from(doc)


def list_memories(
    user_id: str, *, agent_id: str | None, limit: int, offset: int
) -> Op[list[Memory]]:
    if limit <= 0:
        return []
    query = _eq(user_id=user_id, agent_id=agent_id)
    docs = yield Call(MEMORIES, "find", (query,), _newest_first(limit, offset))
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
        {"limit": search.CANDIDATES},
    )
    ranked = search.rank([(doc, doc["terms"], doc["updated_at_us"]) for doc in docs], terms, limit)
    return [ScoredMemory(memory=codec.memory_from(doc), score=score) for doc, score in ranked]


def delete_memory(memory_id: str) -> Op[bool]:
    done = yield Call(MEMORIES, "delete_one", ({"_id": memory_id},))
    return done.deleted_count > 0


def upsert_learning(learning: Learning) -> Op[Learning]:
    fields = codec.learning_fields(learning)
    now, created = yield from _upsert(LEARNINGS, learning.learning_id, fields, learning.created_at)
    return learning.model_copy(update={"updated_at": now, "created_at": created})


def get_learning(learning_id: str) -> Op[Learning | None]:
    doc = yield Call(LEARNINGS, "find_one", ({"_id": learning_id},))
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
    docs = yield Call(LEARNINGS, "find", (query,), _newest_first(limit, offset))
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
        {"limit": search.CANDIDATES},
    )
    ranked = search.rank([(doc, doc["terms"], doc["updated_at_us"]) for doc in docs], terms, limit)
    return [ScoredLearning(learning=codec.learning_from(doc), score=score) for doc, score in ranked]


def delete_learning(learning_id: str) -> Op[bool]:
    done = yield Call(LEARNINGS, "delete_one", ({"_id": learning_id},))
    return done.deleted_count > 0
