"""``export_records`` / ``import_records`` as Mongo plans: keyset pages out, bulk writes in.

Export. Each kind is read in the order of an index, by keyset (never ``skip``, whose cost
grows with the offset): sessions, memories and learnings by ``_id``, runs by the unique
``{session_id, seq}`` index. A page of runs takes at most two finds, each one range of that
index: the rest of the session the cursor stands in (``session_id $eq, seq $gt``), then the
sessions after it (``session_id $gt``). The ``$or`` of the two would be one find, but
nx-27017 reads an ``$or`` by scanning the collection. A page asks for one row more than it
returns: that row says whether anything follows, so the last page comes without a cursor.
The cursor is the last row's key as JSON headed by its kind (``["runs","<session_id>",7]``);
one of another kind is refused, not misread. A run of a commit still pending (the protocol
of ``kern.db.mongo.ops``) is settled as ``get_run`` settles it: shown once its commit
applied, skipped while it has not. ``user_id`` keeps what ``forget_user`` deletes: the
user's sessions, memories, the learnings with the user or of the user's sessions, and the
runs with the user (in their own field or a pending marker) or of the user's sessions.
Memories and learnings are read whole, vector included: ``RecordPage.embeddings``.

Import. One ``bulk_write`` per page of upserts by ``_id``, each document whole as
``kern.db.mongo.codec`` builds it from the record (``*_doc``): ids, seq, version, both
timestamps and the search ``terms``, with the vector of ``batch.embeddings`` or none. Each
is an ``UpdateOne`` that ``$set``s every field and ``$unset``s what the record lacks (the
old vector, a pending-commit marker): the stored document ends as a replace would leave it,
but nx-27017 cannot replace a document holding binary (the vector), and ``$set`` it can.
``ordered=False``: the server applies them in any order and goes on past a failure. There
is no transaction (a standalone server has none): importing a page again writes each
document over itself, so a rerun completes a page a crash cut short. Sizes are checked
before anything is sent, and a page of runs first reads, in one find, the runs that may
hold its (session, seq) pairs (``_holders_of``): a run at a seq another run holds raises
``ValueError`` naming both, with nothing of the page written. Later appends read the
session's highest seq (``ops.append_run``), so they continue after the imported runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.errors import BulkWriteError

from kern.db.mongo import codec
from kern.db.mongo.calls import Call, Op
from kern.db.mongo.ops import _eq, _settle
from kern.db.mongo.schema import LEARNINGS, MEMORIES, RUNS, SESSIONS
from kern.db.transfer import (
    ID_FIELDS,
    RecordKind,
    RecordPage,
    TransferRecord,
    key_cursor,
    read_key_cursor,
)
from kern.records import Embedding, Memory, Run, Session

Doc = dict[str, Any]

#: The collection each kind is stored in.
COLLECTIONS: dict[RecordKind, str] = {
    "sessions": SESSIONS,
    "runs": RUNS,
    "memories": MEMORIES,
    "learnings": LEARNINGS,
}
_DECODERS: dict[RecordKind, Callable[[Mapping[str, Any]], TransferRecord]] = {
    "sessions": codec.session_from,
    "runs": codec.run_from,
    "memories": codec.memory_from,
    "learnings": codec.learning_from,
}
#: What an export leaves out of each kind's documents: the search words (``codec`` derives
#: them from the record again on import); the vector stays, for ``RecordPage.embeddings``.
_EXPORT_PROJECTIONS: dict[RecordKind, Doc] = {"memories": {"terms": 0}, "learnings": {"terms": 0}}
#: How a too-large document of each kind is named, and the fix for it.
_SIZE_ERRORS: dict[RecordKind, tuple[str, str]] = {
    "sessions": ("session", codec.FIX_SESSION),
    "runs": ("run", codec.FIX_RUN),
    "memories": ("memory", codec.FIX_CONTENT),
    "learnings": ("learning", codec.FIX_CONTENT),
}
#: The fields a stored document may hold that an imported record's document lacks, unset by
#: the import: a vector (memories, learnings) and the markers of a pending commit (``ops``).
STRAY_FIELDS: dict[RecordKind, tuple[str, ...]] = {
    "sessions": ("pending_run",),
    "runs": ("pending",),
    "memories": (codec.EMBEDDING_MODEL, codec.EMBEDDING),
    "learnings": (codec.EMBEDDING_MODEL, codec.EMBEDDING),
}
#: The server's code for a write refused by a unique index.
DUPLICATE_KEY = 11000


# -- export -----------------------------------------------------------------------------------
def export_records(
    kind: RecordKind, *, after: str | None, limit: int, user_id: str | None
) -> Op[RecordPage]:
    key = None if after is None else read_key_cursor(kind, after)
    owned: list[str] = []
    if user_id is not None and kind in ("runs", "learnings"):
        owned = yield from _owned_sessions(user_id)
    if kind == "runs":
        docs, last = yield from _run_page(key, limit, user_id, owned)
    else:
        docs, last = yield from _id_page(kind, key, limit, _scope(kind, user_id, owned))
    embeddings: dict[str, Embedding] = {}
    if kind in ("memories", "learnings"):
        for doc in docs:
            embedding = codec.embedding_from(doc)
            if embedding is not None:
                embeddings[doc["_id"]] = embedding
    return RecordPage(
        kind=kind,
        records=[_DECODERS[kind](doc) for doc in docs],
        embeddings=embeddings,
        cursor=None if last is None else key_cursor(kind, last),
    )


def _owned_sessions(user_id: str) -> Op[list[str]]:
    """The ids of the user's sessions, in order (what ``forget_user`` reads first)."""
    docs = yield Call(SESSIONS, "find", (_eq(user_id=user_id),), {"projection": {"_id": 1}})
    return sorted(doc["_id"] for doc in docs)


def _scope(kind: RecordKind, user_id: str | None, owned: list[str]) -> Doc:
    """The filter of the sessions, memories or learnings ``forget_user(user_id)`` deletes."""
    if user_id is None:
        return {}
    if kind == "learnings" and owned:
        return {"$or": [_eq(user_id=user_id), {"session_id": {"$in": owned}}]}
    return _eq(user_id=user_id)


def _id_page(
    kind: RecordKind, key: tuple[Any, ...] | None, limit: int, scope: Doc
) -> Op[tuple[list[Doc], tuple[Any, ...] | None]]:
    """Up to ``limit`` documents after ``key`` in ``_id`` order, and the key to go on from
    (None: nothing follows)."""
    query = dict(scope)
    if key is not None:
        query["_id"] = {"$gt": key[0]}
    options: Doc = {"sort": [("_id", ASCENDING)], "limit": limit + 1}
    if kind in _EXPORT_PROJECTIONS:
        options["projection"] = _EXPORT_PROJECTIONS[kind]
    docs = yield Call(COLLECTIONS[kind], "find", (query,), options)
    if len(docs) <= limit:
        return docs, None
    return docs[:limit], (docs[limit - 1]["_id"],)


def _run_page(
    key: tuple[Any, ...] | None, limit: int, user_id: str | None, owned: list[str]
) -> Op[tuple[list[Doc], tuple[Any, ...] | None]]:
    """Up to ``limit`` stored runs after ``key`` in (session_id, seq) order, and the key to
    go on from (None: nothing follows). Runs of unfinished commits are not counted: the
    next ones are read in their place."""
    found: list[Doc] = []
    position = key
    while True:
        wanted = limit - len(found)
        docs = yield from _runs_after(position, wanted + 1, user_id, owned)
        for doc in docs[:wanted]:
            position = (doc["session_id"], doc["seq"])
            settled: Doc | None = doc
            if "pending" in doc:
                settled = yield from _settle(doc)
            if settled is not None:
                found.append(settled)
        if len(docs) <= wanted:
            return found, None
        if len(found) == limit:
            return found, position


def _runs_after(
    position: tuple[Any, ...] | None, count: int, user_id: str | None, owned: list[str]
) -> Op[list[Doc]]:
    """Up to ``count`` run documents after ``position`` in (session_id, seq) order: the rest
    of its session, then the sessions after it; each one range of ``{session_id, seq}``."""
    docs: list[Doc] = []
    if position is None:
        # Every session, as a range: nx-27017 reads a range through the index, {} by a scan.
        sessions: Doc = {"$gte": ""}
    else:
        session_id, seq = position
        head = {"session_id": {"$eq": session_id}, "seq": {"$gt": seq}}
        if user_id is not None and session_id not in owned:
            head |= _runs_of(user_id, [])
        docs = yield Call(RUNS, "find", (head,), {"sort": [("seq", ASCENDING)], "limit": count})
        if len(docs) >= count:
            return docs
        sessions = {"$gt": session_id}
        owned = [sid for sid in owned if sid > session_id]
    tail = {"session_id": sessions}
    if user_id is not None:
        tail |= _runs_of(user_id, owned)
    rest = yield Call(
        RUNS,
        "find",
        (tail,),
        {"sort": [("session_id", ASCENDING), ("seq", ASCENDING)], "limit": count - len(docs)},
    )
    return docs + rest


def _runs_of(user_id: str, sessions: list[str]) -> Doc:
    """The runs ``forget_user(user_id)`` deletes, of ``sessions`` (the user's) or elsewhere."""
    branches: list[Doc] = [_eq(user_id=user_id), {"pending.user_id": {"$eq": user_id}}]
    if sessions:
        branches.insert(0, {"session_id": {"$in": sessions}})
    return {"$or": branches}


# -- import -----------------------------------------------------------------------------------
def import_records(batch: RecordPage) -> Op[int]:
    kind = batch.kind
    id_field = ID_FIELDS[kind]
    # One document per id: a page naming an id twice stores its last record, as two
    # imports in a row would (and ``ordered=False`` would race the two upserts).
    latest = {getattr(record, id_field): record for record in batch.records}
    docs = [_document(record, batch.embeddings) for record in latest.values()]
    if not docs:
        return 0
    what, fix = _SIZE_ERRORS[kind]
    for doc in docs:
        codec.check_size(doc, f"{what} {doc['_id']!r}", fix)
    if kind == "runs":
        yield from _check_seqs(docs, written=False)
    yield from _write(kind, docs)
    return len(batch.records)


def _document(record: TransferRecord, embeddings: Mapping[str, Embedding]) -> Doc:
    """The whole document of an imported record, its vector from ``embeddings``."""
    if isinstance(record, Session):
        return codec.session_doc(record)
    if isinstance(record, Run):
        if record.seq is None:
            raise ValueError(f"import_records(): run {record.run_id!r} has no seq")
        return codec.run_doc(record, record.seq)
    if isinstance(record, Memory):
        return codec.memory_doc(record, embeddings.get(record.memory_id))
    return codec.learning_doc(record, embeddings.get(record.learning_id))


def _write(kind: RecordKind, docs: list[Doc]) -> Op[None]:
    """Replace or insert every document by ``_id``, in one ``bulk_write``.

    A write refused by a unique index means another writer got there in between: a
    concurrent import of the same rows (two upserts of one new ``_id``), or an append that
    took a seq of the page. Those writes are checked (runs) and sent once more.
    """
    collection = COLLECTIONS[kind]
    models = [_upsert(kind, doc) for doc in docs]
    try:
        yield Call(collection, "bulk_write", (models,), {"ordered": False})
        return
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if not errors or any(error.get("code") != DUPLICATE_KEY for error in errors):
            raise
        failed = sorted({error["index"] for error in errors})
    if kind == "runs":
        yield from _check_seqs([docs[index] for index in failed], written=True)
    yield Call(collection, "bulk_write", ([models[index] for index in failed],), {"ordered": False})


def _upsert(kind: RecordKind, doc: Doc) -> UpdateOne:
    """Store ``doc`` as its ``_id``'s whole document, inserted or over the stored one."""
    fields = {name: value for name, value in doc.items() if name != "_id"}
    update: Doc = {"$set": fields}
    stray = {name: "" for name in STRAY_FIELDS[kind] if name not in fields}
    if stray:
        update["$unset"] = stray
    return UpdateOne({"_id": doc["_id"]}, update, upsert=True)


def _check_seqs(docs: list[Doc], *, written: bool) -> Op[None]:
    """Raise ``ValueError`` if a run of ``docs`` would take a (session, seq) that another
    run holds, in the page or stored: one find of the stored runs that may hold them."""
    claimed: dict[tuple[str, int], str] = {}
    for doc in docs:
        slot = (doc["session_id"], doc["seq"])
        holder = claimed.setdefault(slot, doc["_id"])
        if holder != doc["_id"]:
            raise _seq_taken(slot, holder, doc["_id"], written=written, in_page=True)
    holders = yield Call(
        RUNS,
        "find",
        (_holders_of(claimed),),
        {"projection": {"session_id": 1, "seq": 1, "pending": 1}},
    )
    for holder in holders:
        slot = (holder["session_id"], holder["seq"])
        run_id = claimed.get(slot)
        if run_id is None or run_id == holder["_id"]:
            continue
        if "pending" in holder and not (yield from _still_held(holder)):
            continue
        raise _seq_taken(slot, holder["_id"], run_id, written=written)
    yield from _check_not_moved(claimed)


def _check_not_moved(claimed: Mapping[tuple[str, int], str]) -> Op[None]:
    """Raise ``ValueError`` if a run of the page is stored under another (session, seq): an
    import keeps every run where it is, as the SQL backends do (moving one would leave a
    gap where it was). One find by ``_id``."""
    slots = {run_id: slot for slot, run_id in claimed.items()}
    stored = yield Call(
        RUNS,
        "find",
        ({"_id": {"$in": list(slots)}},),
        {"projection": {"session_id": 1, "seq": 1}},
    )
    for run in stored:
        slot = slots[run["_id"]]
        if (run["session_id"], run["seq"]) != slot:
            raise ValueError(
                f"import_records(): run {run['_id']!r} is stored at seq {run['seq']} of "
                f"session {run['session_id']!r}; the page would move it to seq {slot[1]} of "
                f"session {slot[0]!r}. Nothing of this page was written: a run keeps its "
                "place, so import into a database without that run, or delete it first."
            )


def _holders_of(slots: Mapping[tuple[str, int], str]) -> Doc:
    """The filter of the stored runs that may hold one of ``slots``: of their sessions,
    between their lowest and highest seq. Index bounds on ``{session_id, seq}`` (one range
    per session) on MongoDB; not an ``$or`` of exact pairs, which nx-27017 answers by
    reading every run of the collection in Python (seconds a page at 50,000 runs), where it
    reads this one in SQL. Pages are runs in (session, seq) order, so few extra come back."""
    sessions = sorted({session_id for session_id, _ in slots})
    seqs = [seq for _, seq in slots]
    return {
        "session_id": {"$eq": sessions[0]} if len(sessions) == 1 else {"$in": sessions},
        "seq": {"$gte": min(seqs), "$lte": max(seqs)},
    }


def _still_held(holder: Doc) -> Op[bool]:
    """Whether the run of an unfinished commit keeps its seq once settled: yes if its commit
    applied or may still apply, no if it never can (settling deleted it)."""
    settled = yield from _settle(holder)
    if settled is not None:
        return True
    again = yield Call(RUNS, "find_one", ({"_id": holder["_id"]},), {"projection": {"_id": 1}})
    return again is not None


def _seq_taken(
    slot: tuple[str, int], holder: str, run_id: str, *, written: bool, in_page: bool = False
) -> ValueError:
    session_id, seq = slot
    where = "in the same page" if in_page else "here"
    outcome = (
        "The rest of the page was written (importing it again after the fix completes it)"
        if written
        else "Nothing of this page was written"
    )
    return ValueError(
        f"import_records(): run {run_id!r} cannot be imported at seq {seq} of session "
        f"{session_id!r}: run {holder!r} holds that seq {where}, and a session's seqs are "
        f"unique. {outcome}: import into a database without session {session_id!r}, or "
        "delete it here first."
    )


__all__ = ["export_records", "import_records"]
