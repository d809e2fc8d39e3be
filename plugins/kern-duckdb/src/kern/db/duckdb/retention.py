"""Retention's batches on DuckDB: the shared rules (``kern.db.sql.retention``), read the way
DuckDB's planner can answer them.

DuckDB reads an ART index only for a lookup of keys that is a scan's one condition
(``kern.db.duckdb.lookup``); it never walks an index in order, and a correlated ``EXISTS``
becomes a join over whole tables. So:

- the candidates (runs before the cutoff, idle sessions, a page of sessions) are read by a
  columnar scan of one or two columns with ``TOP N``: DuckDB skips the row groups whose
  min/max (zone map) lies past the cutoff or before the cursor, and an index on
  ``created_at`` would not be read (``EXPLAIN`` shows a sequential scan with or without one),
  so DuckDB's ``kern_runs`` gets none;
- what is kept is decided here, from key lookups: the parents' status by ``run_id``, a
  session's highest stored seq by ``seq_key`` (from its counter's ``last_seq`` down, past
  any gap), the running runs of idle sessions and the runs of the sessions that keep their
  last N by ``session_id``;
- deletes are by key, ``DELETE ... WHERE run_id IN (?, ...)`` (or ``session_id`` for an
  idle session's runs, counter and row), up to 1,024 keys per statement, inside DuckDb's
  serialised write transaction, so nothing changes between the reads and the deletes.

DuckDB's ART indexes and deletes: a deleted key can be written again afterwards (a session
removed as idle and started again re-uses its ``seq_key`` values, and a run id may come
back), which DuckDB versions before 1.2 refused inside one transaction; retention never
deletes and re-inserts a key in one transaction, and the tests write the keys again after a
batch. The counter row of a session goes with the session (as ``delete_session`` does);
``runs_before`` and ``keep_last_runs`` never remove a session's newest run, so its counter
still names the seq the next append follows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ClauseElement, Select, String, bindparam, select, tuple_

from kern.db.duckdb.lookup import MAX_KEYS, InLookup
from kern.db.duckdb.schema import seq_key
from kern.db.sql.retention import RUNNING, SqlRetention, decode_cursor, encode_cursor
from kern.retention.rules import RetentionBatch, RuleKind

if TYPE_CHECKING:
    from kern.db.duckdb.ops import DuckOps
    from kern.db.sql.prepared import Link

#: Seqs probed per session at once when looking below a gap for its highest stored run.
PROBE = 256


class DuckRetention(SqlRetention):
    """``SqlRetention`` with DuckDB's reads (see the module docstring)."""

    chunk = MAX_KEYS
    lock_sessions = False  # DuckDB has no FOR UPDATE; DuckDb serialises its writes

    def __init__(self, ops: DuckOps) -> None:
        super().__init__(ops)
        self.arrays = False  # ``= ANY(?)`` reads an index only up to ~50 keys
        self.duck = duck = ops.dialect.duck
        p = ops._prepare
        runs = self.tables.runs
        self._status = InLookup(p, runs, "run_id", ["run_id", "status"])
        self._by_seq_key = InLookup(p, duck.runs, "seq_key", ["session_id", "seq"])
        self._of_sessions = InLookup(
            p, runs, "session_id", ["run_id", "session_id", "seq", "status", "parent_run_id"]
        )
        self._running_in = InLookup(p, runs, "session_id", ["session_id"])
        self._counters = InLookup(p, duck.counters, "session_id")

    # -- what is kept -------------------------------------------------------------------
    def running_parents(self, link: Link, rows: Sequence[dict[str, Any]]) -> set[str]:
        """The parent run ids of ``rows`` whose run is stored and running."""
        parents = sorted({row["parent_run_id"] for row in rows if row["parent_run_id"]})
        found = self._status.rows(link, parents) if parents else []
        return {row["run_id"] for row in found if row["status"] == RUNNING}

    def tops(self, link: Link, sessions: Sequence[str]) -> dict[str, int]:
        """Each session's highest stored seq (sessions without runs left out): its
        counter's ``last_seq`` if that run is stored, else the next one down found by
        ``seq_key``, windows of up to ``PROBE`` seqs at a time."""
        counters = self._counters.rows(link, list(sessions)) if sessions else []
        high = {row["session_id"]: int(row["last_seq"]) for row in counters}
        tops: dict[str, int] = {}
        window = 1
        while high:
            keys = [
                seq_key(sid, seq)
                for sid, top in high.items()
                for seq in range(top, max(0, top - window), -1)
            ]
            for row in self._by_seq_key.rows(link, keys):
                sid = row["session_id"]
                tops[sid] = max(tops.get(sid, 0), int(row["seq"]))
            high = {
                sid: top - window
                for sid, top in high.items()
                if sid not in tops and top - window > 0
            }
            window = min(window * 2, PROBE)
        return tops

    # -- runs_before --------------------------------------------------------------------
    def runs_before_candidates(self, after: bool) -> Select[Any]:
        r = self.tables.runs
        at = r.c.created_at
        stmt = select(r.c.run_id, r.c.session_id, r.c.seq, r.c.status, r.c.parent_run_id, at)
        stmt = stmt.where(at < bindparam("cutoff", type_=at.type))
        if after:
            a_at = bindparam("a_at", type_=at.type)
            stmt = stmt.where(
                at >= a_at, tuple_(at, r.c.run_id) > tuple_(a_at, bindparam("a_id", type_=String))
            )
        return stmt.order_by(at, r.c.run_id).limit(bindparam("limit"))

    def runs_delete(self, size: int) -> ClauseElement:
        runs = self.tables.runs
        return runs.delete().where(self._keyed(runs.c.run_id, size))

    def runs_before(
        self, link: Link, cutoff: datetime, limit: int, after: str | None, dry_run: bool
    ) -> RetentionBatch:
        rows = self.runs_before_rows(link, cutoff, limit, after)
        running = self.running_parents(link, rows)
        tops = self.tops(link, sorted({row["session_id"] for row in rows}))
        doomed = [
            row["run_id"]
            for row in rows
            if row["status"] != RUNNING
            and row["parent_run_id"] not in running
            and row["seq"] < tops.get(row["session_id"], row["seq"])
        ]
        removed = len(doomed) if dry_run else self._delete_runs(link, doomed)
        cursor = None
        if len(rows) >= limit:
            cursor = encode_cursor(RuleKind.RUNS_BEFORE, rows[-1]["created_at"], rows[-1]["run_id"])
        return RetentionBatch(counts={"runs": removed}, after=cursor)

    def _delete_runs(self, link: Link, run_ids: Sequence[str]) -> int:
        return self._by_keys(link, "runs delete", self.runs_delete, run_ids)

    # -- keep_last_runs -----------------------------------------------------------------
    def sessions_page(self, after: bool) -> Select[Any]:
        """The sessions holding runs from their seq counters (one row a session, by its
        key), not from a DISTINCT over the runs, which DuckDB would read whole."""
        c = self.duck.counters
        stmt = select(c.c.session_id)
        if after:
            stmt = stmt.where(c.c.session_id > bindparam("a_id", type_=String))
        return stmt.order_by(c.c.session_id).limit(bindparam("limit"))

    def keep_last_runs(
        self, link: Link, keep: int, limit: int, after: str | None, dry_run: bool
    ) -> RetentionBatch:
        sessions = self.keep_last_sessions(link, limit, after)
        bounds = {sid: top - keep for sid, top in self.tops(link, sessions).items() if top > keep}
        rows = [
            row
            for row in (self._of_sessions.rows(link, sorted(bounds)) if bounds else [])
            if row["seq"] <= bounds[row["session_id"]] and row["status"] != RUNNING
        ]
        running = self.running_parents(link, rows)
        doomed = [row["run_id"] for row in rows if row["parent_run_id"] not in running]
        removed = len(doomed) if dry_run else self._delete_runs(link, doomed)
        cursor = None
        if len(sessions) >= limit:
            cursor = encode_cursor(RuleKind.KEEP_LAST_RUNS, sessions[-1])
        return RetentionBatch(counts={"runs": removed}, after=cursor)

    # -- idle_sessions ------------------------------------------------------------------
    def idle_sessions(
        self, link: Link, cutoff: datetime, limit: int, after: str | None, dry_run: bool
    ) -> RetentionBatch:
        s = self.tables.sessions
        params: dict[str, Any] = {"cutoff": cutoff, "limit": limit}
        if after is not None:
            params["a_at"], params["a_id"] = decode_cursor(
                RuleKind.IDLE_SESSIONS, after, datetime, str
            )

        def build() -> Select[Any]:
            at = s.c.updated_at
            stmt = select(s.c.session_id, at).where(at < bindparam("cutoff", type_=at.type))
            if after is not None:
                a_at = bindparam("a_at", type_=at.type)
                stmt = stmt.where(
                    at >= a_at,
                    tuple_(at, s.c.session_id) > tuple_(a_at, bindparam("a_id", type_=String)),
                )
            return stmt.order_by(at, s.c.session_id).limit(bindparam("limit"))

        rows = link.all(self._shape(("idle sessions", after is not None), build), params)
        ids = [row["session_id"] for row in rows]
        busy = (
            {row["session_id"] for row in self._running_in.rows(link, ids, {"status": RUNNING})}
            if ids
            else set()
        )
        counts = self.remove_sessions(link, [sid for sid in ids if sid not in busy], dry_run)
        cursor = None
        if len(rows) >= limit:
            last = rows[-1]
            cursor = encode_cursor(RuleKind.IDLE_SESSIONS, last["updated_at"], last["session_id"])
        return RetentionBatch(counts=counts, after=cursor)

    def counters_delete(self, size: int) -> ClauseElement:
        counters = self.duck.counters
        return counters.delete().where(self._keyed(counters.c.session_id, size))

    def remove_sessions(self, link: Link, idle: Sequence[str], dry_run: bool) -> dict[str, int]:
        """As ``SqlRetention.remove_sessions``, the sessions' seq counters with them."""
        if not dry_run:
            self._by_keys(link, "counters delete", self.counters_delete, idle)
        return super().remove_sessions(link, idle, dry_run)


__all__ = ["DuckRetention"]
