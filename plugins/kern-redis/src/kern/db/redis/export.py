"""``export_records``: every row of one kind, or of one user, in pages with a cursor.

Where the rows are found:

- The whole database (``user_id=None``): ``SCAN`` of the kind's record keys (sessions'
  ``{s:<id>}:session`` hashes, their ``{s:<id>}:runs`` hashes, ``{m:<id>}``, ``{l:<id>}``).
  No index lists every run (``append_run`` needs no session row, and sessions are indexed
  by their row), so runs are found by the hash that holds them, and the other kinds the same
  way. The ids of one ``SCAN`` round are exported in sorted order; those a page has no room
  for travel in the cursor, with the ``SCAN`` cursor to go on from (a round is asked for
  about as many keys as the page still needs, so few are left over). A full export holds
  every row present from its start to its end exactly once; as ``SCAN`` itself, a key may
  come twice only if the keyspace shrinks (mass deletes) while the export runs.
- One user's rows (``user_id``): what ``forget_user`` deletes, from the user's own keys
  (``kern.db.redis.forget``): the sessions the user owns, their runs and the user's runs in
  other sessions, the user's memories, and the learnings of the user or of the user's
  sessions. Each page reads those indexes again (cost: the user's rows, as ``forget_user``)
  and goes on after the last id exported, in id order (runs: session id, then seq).

Runs come session by session, in seq order: one step counts each next session's runs after
the cursor (``ZCOUNT`` of ``r:all``), one reads the ids (``ZRANGEBYSCORE … LIMIT``), one
the records. A user's runs in a session the user does not own are listed by a set, not by
seq (``ru:<user>``), so a page that reaches such a session reads all of them and sorts.
Records are decoded as the ``get_*`` reads decode them; memories and learnings come with
their vectors (``<record key>:vec``).

The cursor is JSON naming the kind and the user it belongs to; a cursor of another export
is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from kern.db.redis import codec
from kern.db.redis.codec import text
from kern.db.redis.docs import D, DocSpec, parse_or_none
from kern.db.redis.embeddings import read_vector
from kern.db.redis.indexes import Ctx
from kern.db.redis.keys import q
from kern.db.redis.plans import Cmd, Plan, Scan
from kern.db.redis.sessions import fetch_sessions
from kern.db.transfer import RecordKind, RecordPage
from kern.records import Embedding, Learning, Memory, Run

#: Keys one ``SCAN`` round asks each node to look at: about what the page still needs,
#: within these bounds.
SCAN_LEAST = 100
SCAN_MOST = 1000
#: Sessions whose runs one step counts, at most.
SESSIONS_PER_STEP = 256

Row: TypeAlias = tuple[Any, Embedding | None]
#: A session to read runs of: its id, the seq to go on after, and the quoted user whose
#: runs only are exported from it (None: every run).
Queued: TypeAlias = tuple[str, int, str | None]


@dataclass(frozen=True)
class Family:
    """One record kind but runs: its key family and how its rows are read."""

    tag: str
    suffix: str
    key_type: str
    id_field: str
    read: Callable[[list[str]], Plan[list[Row | None]]]
    #: A user's candidate ids, and the test a row of that user passes.
    of_user: Callable[[str], Plan[tuple[list[str], Callable[[Any], bool]]]]


def export_records(
    ctx: Ctx,
    memory_spec: DocSpec[Memory],
    learning_spec: DocSpec[Learning],
    kind: RecordKind,
    *,
    after: str | None,
    limit: int,
    user_id: str | None,
) -> Plan[RecordPage]:
    state = _state(after, kind, user_id)
    if kind == "runs":
        found, more = yield from _runs(ctx, state, limit, user_id)
        return RecordPage(kind=kind, records=found, cursor=_cursor(kind, user_id, more))
    family = _family(ctx, kind, memory_spec, learning_spec)
    if user_id is None:
        rows, more = yield from _scanned(ctx, family, state, limit)
    else:
        rows, more = yield from _users(family, state, limit, user_id)
    vectors = {getattr(row, family.id_field): vector for row, vector in rows if vector}
    return RecordPage(
        kind=kind,
        records=[row for row, _ in rows],
        embeddings=vectors,
        cursor=_cursor(kind, user_id, more),
    )


# -- the cursor ----------------------------------------------------------------------------
def _cursor(kind: str, user_id: str | None, state: dict[str, Any] | None) -> str | None:
    if state is None:
        return None
    body = {"kind": kind, "user": user_id, **state}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _state(after: str | None, kind: str, user_id: str | None) -> dict[str, Any]:
    if after is None:
        return {}
    try:
        state = json.loads(after)
    except ValueError:
        state = None
    if isinstance(state, dict) and state.get("kind") == kind and state.get("user") == user_id:
        return state
    raise ValueError(
        f"after={after!r} is not a cursor of this export ({kind}, user_id={user_id!r}): pass "
        "the cursor of the previous page of the same export, or None to start over"
    )


def _bad(state: dict[str, Any]) -> ValueError:
    return ValueError(f"a damaged export cursor: {state!r}")


def _scan_state(state: dict[str, Any]) -> tuple[Any, list[str]]:
    """The ``SCAN`` cursor to go on from (None: the scan is over) and the ids left over."""
    scan, todo = state.get("scan", 0), state.get("todo", [])
    if not (scan is None or isinstance(scan, int | dict)) or not isinstance(todo, list):
        raise _bad(state)
    if not all(isinstance(item, str) for item in todo):
        raise _bad(state)
    return scan, todo


def _scan(ctx: Ctx, tag: str, suffix: str, key_type: str, scan: Any, want: int) -> Plan[Any]:
    """One ``SCAN`` round of a family: ``(next cursor or None at the end, sorted ids)``."""
    keys = ctx.keys
    count = min(max(want, SCAN_LEAST), SCAN_MOST)
    ((cursor, names),) = yield [Scan(keys.family(tag, suffix), scan, count, key_type)]
    ids = sorted({keys.id_in(str(text(name)), tag) for name in names})
    return (None if cursor == 0 else cursor), ids


# -- sessions, memories, learnings -------------------------------------------------------
def _family(
    ctx: Ctx, kind: RecordKind, memory_spec: DocSpec[Memory], learning_spec: DocSpec[Learning]
) -> Family:
    keys = ctx.keys
    if kind == "sessions":

        def read_sessions(ids: list[str]) -> Plan[list[Row | None]]:
            found = yield from fetch_sessions(ctx, ids)
            return [None if session is None else (session, None) for session in found]

        def user_sessions(user_id: str) -> Plan[tuple[list[str], Callable[[Any], bool]]]:
            (members,) = yield [Cmd("zrange", keys.session_index(user_id, None, None), 0, -1)]
            return [str(text(m)) for m in members], lambda row: row.user_id == user_id

        return Family("s", ":session", "hash", "session_id", read_sessions, user_sessions)
    if kind == "memories":

        def user_memories(user_id: str) -> Plan[tuple[list[str], Callable[[Any], bool]]]:
            (members,) = yield [Cmd("zrange", keys.memory_index(user_id), 0, -1)]
            return [str(text(m)) for m in members], lambda row: row.user_id == user_id

        return Family("m", "", "string", "memory_id", _doc_reader(memory_spec), user_memories)

    def user_learnings(user_id: str) -> Plan[tuple[list[str], Callable[[Any], bool]]]:
        owned = set((yield from owned_sessions(ctx, user_id)))
        lists = yield [
            Cmd("zrange", keys.learning_index("user_id", user_id, None), 0, -1),
            *(
                Cmd("zrange", keys.learning_index("session_id", sid, None), 0, -1)
                for sid in sorted(owned)
            ),
        ]
        ids = [str(text(m)) for members in lists for m in members]
        return ids, lambda row: row.user_id == user_id or row.session_id in owned

    reader = _doc_reader(learning_spec)
    return Family("l", "", "string", "learning_id", reader, user_learnings)


def _doc_reader(spec: DocSpec[D]) -> Callable[[list[str]], Plan[list[Row | None]]]:
    def read(ids: list[str]) -> Plan[list[Row | None]]:
        """The documents and their vectors, in one step."""
        replies = yield [
            *(Cmd("get", spec.record_key(doc_id)) for doc_id in ids),
            *(read_vector(spec, doc_id) for doc_id in ids),
        ]
        out: list[Row | None] = []
        for raw, (model, data) in zip(replies[: len(ids)], replies[len(ids) :], strict=True):
            doc = parse_or_none(spec, raw)
            vector = (
                None if model is None or not data else Embedding.from_float32(text(model), data)
            )
            out.append(None if doc is None else (doc, vector))
        return out

    return read


def _scanned(
    ctx: Ctx, family: Family, state: dict[str, Any], limit: int
) -> Plan[tuple[list[Row], dict[str, Any] | None]]:
    """A page of the whole family: the ids left over, then ``SCAN`` rounds; it ends once
    the page is full and an id is known to follow, or the scan is over."""
    scan, todo = _scan_state(state)
    rows: list[Row] = []
    while True:
        if todo and len(rows) < limit:
            take, todo = todo[: limit - len(rows)], todo[limit - len(rows) :]
            rows += [row for row in (yield from family.read(take)) if row is not None]
        elif todo or scan is None:
            break
        else:
            want = limit - len(rows)
            scan, todo = yield from _scan(
                ctx, family.tag, family.suffix, family.key_type, scan, want
            )
    more = {"scan": scan, "todo": todo} if todo or scan is not None else None
    return rows, more


def _users(
    family: Family, state: dict[str, Any], limit: int, user_id: str
) -> Plan[tuple[list[Row], dict[str, Any] | None]]:
    """A page of one user's rows, in id order after the cursor's."""
    last = state.get("last")
    if not (last is None or isinstance(last, str)):
        raise _bad(state)
    ids, accept = yield from family.of_user(user_id)
    todo = sorted({i for i in ids if last is None or i > last})
    rows: list[Row] = []
    while todo and len(rows) < limit:
        take, todo = todo[: limit - len(rows)], todo[limit - len(rows) :]
        found = yield from family.read(take)
        rows += [row for row in found if row is not None and accept(row[0])]
    if not todo or not rows:
        return rows, None
    return rows, {"last": getattr(rows[-1][0], family.id_field)}


def owned_sessions(ctx: Ctx, user_id: str) -> Plan[list[str]]:
    """The sessions ``forget_user`` deletes as the user's: in the user's index, and whose
    row names the user as its owner."""
    keys = ctx.keys
    (members,) = yield [Cmd("zrange", keys.session_index(user_id, None, None), 0, -1)]
    sids = sorted({str(text(m)) for m in members})
    if not sids:
        return []
    owners = yield [Cmd("hget", keys.session_base(sid) + "session", "o") for sid in sids]
    return [sid for sid, owner in zip(sids, owners, strict=True) if text(owner) == user_id]


# -- runs ----------------------------------------------------------------------------------
def _runs(
    ctx: Ctx, state: dict[str, Any], limit: int, user_id: str | None
) -> Plan[tuple[list[Run], dict[str, Any] | None]]:
    if user_id is not None:
        return (yield from _user_runs(ctx, state, limit, user_id))
    scan, todo = _scan_state(state)
    seq = state.get("seq", 0)
    if not isinstance(seq, int):
        raise _bad(state)
    queue: list[Queued] = [(sid, seq if n == 0 else 0, None) for n, sid in enumerate(todo)]
    found: list[Run] = []
    while True:
        if queue and len(found) < limit:
            runs, queue = yield from _session_runs(ctx, queue, limit - len(found))
            found += runs
        elif queue or scan is None:
            break
        else:
            want = limit - len(found)
            scan, sids = yield from _scan(ctx, "s", ":runs", "hash", scan, want)
            queue = [(sid, 0, None) for sid in sids]
    if not queue and scan is None:
        return found, None
    more: dict[str, Any] = {"scan": scan, "todo": [sid for sid, _, _ in queue]}
    if queue and queue[0][1]:
        more["seq"] = queue[0][1]
    return found, more


def _user_runs(
    ctx: Ctx, state: dict[str, Any], limit: int, user_id: str
) -> Plan[tuple[list[Run], dict[str, Any] | None]]:
    """The runs of the sessions the user owns, and the user's runs in other sessions, by
    session id and seq after the cursor's."""
    last = state.get("last")
    if last is None:
        last_sid, last_seq = "", 0
    elif (
        isinstance(last, list)
        and len(last) == 2
        and isinstance(last[0], str)
        and isinstance(last[1], int)
    ):
        last_sid, last_seq = last
    else:
        raise _bad(state)
    owned = yield from owned_sessions(ctx, user_id)
    (visited,) = yield [Cmd("smembers", ctx.keys.user_run_sessions(user_id))]
    mine = q(user_id)
    only = {str(text(sid)): mine for sid in visited} | dict.fromkeys(owned)
    queue: list[Queued] = [
        (sid, last_seq if sid == last_sid else 0, only[sid])
        for sid in sorted(only)
        if sid >= last_sid
    ]
    found: list[Run] = []
    while queue and len(found) < limit:
        runs, queue = yield from _session_runs(ctx, queue, limit - len(found))
        found += runs
    if not queue or not found:
        return found, None
    tail = found[-1]
    return found, {"last": [tail.session_id, tail.seq]}


def _session_runs(ctx: Ctx, queue: list[Queued], room: int) -> Plan[tuple[list[Run], list[Queued]]]:
    """Up to ``room`` runs from the head of ``queue``, in order, and the queue left: the
    sessions read to their end are gone, the one the page ends in goes on after its last
    seq read. Three steps: count the runs after the cursor (a user's runs in a session not
    theirs: list them), read the ids, read the records."""
    keys = ctx.keys
    chunk = queue[: max(1, min(room, SESSIONS_PER_STEP))]
    bases = [keys.session_base(sid) for sid, _, _ in chunk]
    counted = yield [
        Cmd("zcount", base + "r:all", f"({after}", "+inf")
        if only is None
        else Cmd("smembers", f"{base}ru:{only}")
        for base, (_, after, only) in zip(bases, chunk, strict=True)
    ]
    # A user's runs are counted by their ids, some of which may be at or before the cursor.
    most = [
        int(reply) if only is None else len(reply)
        for reply, (_, _, only) in zip(counted, chunk, strict=True)
    ]
    takes: list[int] = []
    for upper in most:
        takes.append(min(upper, room - sum(takes)))
    sent = [n for n, take in enumerate(takes) if take]
    listed = yield [
        Cmd("zrangebyscore", bases[n] + "r:all", f"({chunk[n][1]}", "+inf", start=0, num=takes[n])
        if chunk[n][2] is None
        else Cmd("hmget", bases[n] + "runs", *sorted(str(text(rid)) for rid in counted[n]))
        for n in sent
    ]
    jsons: dict[int, list[Any]] = {}
    ids: dict[int, list[str]] = {}
    for n, reply in zip(sent, listed, strict=True):
        if chunk[n][2] is None:
            ids[n] = [str(text(rid)) for rid in reply]
        else:
            jsons[n] = reply
    wanted = [n for n in ids if ids[n]]
    records = yield [Cmd("hmget", bases[n] + "runs", *ids[n]) for n in wanted]
    jsons.update(zip(wanted, records, strict=True))

    found: list[Run] = []
    rest = list(queue)
    for n, (sid, after, only) in enumerate(chunk):
        if not takes[n]:
            if most[n]:
                return found, rest  # no room left: it heads the next page
            del rest[0]
            continue
        read = [codec.run_from(raw) for raw in jsons.get(n, []) if raw is not None]
        if only is None:
            remaining = most[n]
        else:
            read = sorted((run for run in read if _seq(run) > after), key=_seq)
            remaining = len(read)
            read = read[: takes[n]]
        found += read
        if read and len(read) == takes[n] < remaining:  # the page is full inside it
            rest[0] = (sid, _seq(read[-1]), only)
            return found, rest
        del rest[0]  # read to its end (fewer than counted: deleted meanwhile)
    return found, rest


def _seq(run: Run) -> int:
    return run.seq or 0
