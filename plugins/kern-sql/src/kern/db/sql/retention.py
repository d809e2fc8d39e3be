"""Retention's batches on SQL (``retention_batch``): the statements, one batch per call.

``kern.retention.rules`` says what every backend keeps; here is how a SQL database finds
and removes the rest, in the caller's one transaction per batch (a dry run: the same reads,
no write):

- ``runs_before``: the candidates are read through the runs' ``(created_at, run_id)``
  index (schema version 2 of runs), ``created_at < :cutoff`` after the cursor, in that
  order, at most ``:limit``; each comes with whether it is kept (running, its parent run
  running, or no later run in its session: three probes of the primary key and the
  ``(session_id, seq)`` index). The others go by key, ``DELETE ... WHERE run_id IN (...)``
  (``= ANY(:keys)`` where the dialect takes arrays), which checks the same protections
  again, so a run that became protected in between (Postgres reads committed rows) stays
  and the count is the rows deleted.
- ``keep_last_runs``: the candidates are the sessions holding runs, by id after the cursor; one
  statement counts or deletes their runs with ``seq <= max(seq) - :keep`` (the session's
  highest seq is the last entry of the ``(session_id, seq)`` index) that are not kept.
- ``idle_sessions``: the candidates are sessions through the ``updated_at`` index, before
  ``:cutoff`` and after the cursor, each with whether it holds a running run; the others go
  as ``delete_session`` removes them: their runs, then their rows (search rows follow:
  SQLite's triggers, Postgres's generated column). On Postgres the candidates are read
  ``FOR UPDATE``: an append to one of them (which moves its ``updated_at``) waits, and
  after the batch finds it gone, as after ``delete_session``.

A cursor is the last candidate's key as JSON headed by the rule's kind
(``["runs_before", "2026-01-02T03:04:05.000006+00:00", "<run_id>"]``); ``None`` once a
batch examined fewer than ``limit`` candidates. A dialect whose planner cannot read these
statements through indexes (DuckDB) subclasses ``SqlRetention``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Hashable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ARRAY,
    ClauseElement,
    ColumnElement,
    Select,
    String,
    and_,
    any_,
    bindparam,
    case,
    cast,
    exists,
    func,
    not_,
    or_,
    select,
    tuple_,
)

from kern.db.sql.vectors import padded_size
from kern.errors import RetentionError
from kern.records import RunStatus
from kern.retention.rules import RetentionBatch, RetentionRule, RuleKind

if TYPE_CHECKING:
    from kern.db.sql.ops import SqlOps
    from kern.db.sql.prepared import Link, Prepared

RUNNING = RunStatus.RUNNING.value


# -- cursors ------------------------------------------------------------------------------
def encode_cursor(kind: RuleKind, *key: Any) -> str:
    """The cursor after a candidate whose key is ``key`` (datetimes as ISO text)."""
    parts = [kind.value, *(k.isoformat() if isinstance(k, datetime) else k for k in key)]
    return json.dumps(parts, ensure_ascii=False, separators=(",", ":"))


def decode_cursor(kind: RuleKind, after: str, *types: type) -> list[Any]:
    """The key in ``after``, checked against the rule it continues; ``RetentionError`` if it
    is not a cursor of this rule (one of another rule is refused, not misread)."""
    try:
        parts = json.loads(after)
        ok = (
            isinstance(parts, list)
            and len(parts) == len(types) + 1
            and parts[0] == kind.value
            and all(isinstance(p, str) for p in parts[1:])
        )
        key = [
            datetime.fromisoformat(p) if t is datetime else p
            for p, t in zip(parts[1:], types, strict=True)
        ]
        ok = ok and all(k.tzinfo is not None for k in key if isinstance(k, datetime))
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise RetentionError(
            f"after={after!r} is not a cursor of a {kind.value} rule: pass the after of the "
            "previous batch of the same rule, or None to start. Nothing was deleted."
        )
    return key


class SqlRetention:
    """The batches of the three rules for one ``SqlOps`` (its tables, dialect, shapes)."""

    #: Keys per ``IN (...)`` list where the dialect takes no array parameter (SQLite's
    #: oldest limit is 999 parameters per statement).
    chunk = 256
    #: Lock the candidate sessions of ``idle_sessions`` (``FOR UPDATE``; SQLite's write
    #: transaction already excludes every other writer and renders none).
    lock_sessions = True

    def __init__(self, ops: SqlOps) -> None:
        self.ops = ops
        self.tables = ops.tables
        self.dialect = ops.dialect
        #: Keys as one array parameter (``= ANY(:keys)``), else as placeholders.
        self.arrays = ops.dialect.array_parameters

    def _shape(self, key: Hashable, build: Callable[[], ClauseElement]) -> Prepared:
        return self.ops._shape(("retention", key), build)

    # -- the door -----------------------------------------------------------------------
    def batch(
        self, link: Link, rule: RetentionRule, *, limit: int, after: str | None, dry_run: bool
    ) -> RetentionBatch:
        if rule.kind is RuleKind.IDLE_SESSIONS:
            assert rule.cutoff is not None
            return self.idle_sessions(link, rule.cutoff, limit, after, dry_run)
        if rule.kind is RuleKind.RUNS_BEFORE:
            assert rule.cutoff is not None
            return self.runs_before(link, rule.cutoff, limit, after, dry_run)
        assert rule.keep is not None
        return self.keep_last_runs(link, rule.keep, limit, after, dry_run)

    # -- keys ---------------------------------------------------------------------------
    def _keyed(self, column: ColumnElement[Any], size: int) -> ColumnElement[bool]:
        """``column`` is one of the keys: ``= ANY(:keys)`` (one array parameter), else
        ``IN (:k0, ..., :k<size-1>)``."""
        if self.arrays:
            keys = cast(bindparam("keys", type_=ARRAY(String)), ARRAY(String))
            return column == any_(keys)
        return column.in_([bindparam(f"k{i}", type_=String) for i in range(size)])

    def _chunks(self, keys: Sequence[str]) -> list[tuple[int, dict[str, Any]]]:
        """``(size, parameters)`` of each statement over ``keys`` (see ``_keyed``)."""
        if not keys:
            return []
        if self.arrays:
            return [(0, {"keys": list(keys)})]
        out = []
        for start in range(0, len(keys), self.chunk):
            part = list(keys[start : start + self.chunk])
            size = padded_size(len(part))
            part += [part[-1]] * (size - len(part))
            out.append((size, {f"k{i}": key for i, key in enumerate(part)}))
        return out

    def _by_keys(
        self,
        link: Link,
        name: str,
        build: Callable[[int], ClauseElement],
        keys: Sequence[str],
        params: dict[str, Any] | None = None,
    ) -> int:
        """Run ``build(size)`` over ``keys`` in as few statements as the dialect allows;
        the rows changed (or, for a count, the sum of the counts)."""
        total = 0
        for size, bound in self._chunks(keys):
            query = self._shape((name, size), functools.partial(build, size))
            values = {**bound, **(params or {})}
            if isinstance(query.statement, Select):
                total += int(link.scalar(query, values) or 0)
            else:
                total += link.execute(query, values)
        return total

    # -- what is kept -------------------------------------------------------------------
    def protected(self, r: Any, *, newest: bool) -> ColumnElement[bool]:
        """The run ``r`` (a table or alias of runs) is kept: running, its parent running,
        or (``newest``) no later run in its session."""
        runs = self.tables.runs
        p = runs.alias("parent")
        # The parent's status, a primary-key probe. Not EXISTS (... status = 'running'),
        # which Postgres answers with a hashed subplan over every running run of the table.
        # Never NULL (no parent, or none stored): NOT (... OR NULL) would keep every run.
        parent = select(p.c.status).where(p.c.run_id == r.c.parent_run_id).scalar_subquery()
        parent_running = func.coalesce(parent, "") == RUNNING
        kept: list[ColumnElement[bool]] = [r.c.status == RUNNING, parent_running]
        if newest:
            n = runs.alias("later")
            kept.append(not_(exists().where(n.c.session_id == r.c.session_id, n.c.seq > r.c.seq)))
        return or_(*kept)

    # -- runs_before --------------------------------------------------------------------
    def runs_before_candidates(self, after: bool) -> Select[Any]:
        """Runs created before ``:cutoff`` (after ``(:a_at, :a_id)``), oldest first, at
        most ``:limit``, each with ``kept`` (1: it stays). The redundant ``created_at >=
        :a_at`` lets every planner start the index range at the cursor."""
        r = self.tables.runs.alias("r")
        at = r.c.created_at
        kept = case((self.protected(r, newest=True), 1), else_=0).label("kept")
        stmt = select(r.c.run_id, at, kept).where(at < bindparam("cutoff", type_=at.type))
        if after:
            a_at = bindparam("a_at", type_=at.type)
            stmt = stmt.where(
                at >= a_at, tuple_(at, r.c.run_id) > tuple_(a_at, bindparam("a_id", type_=String))
            )
        return stmt.order_by(at, r.c.run_id).limit(bindparam("limit"))

    def runs_before_delete(self, size: int) -> ClauseElement:
        """Delete the given runs that are still before ``:cutoff`` and not kept."""
        runs = self.tables.runs
        at = runs.c.created_at
        return runs.delete().where(
            self._keyed(runs.c.run_id, size),
            at < bindparam("cutoff", type_=at.type),
            not_(self.protected(runs, newest=True)),
        )

    def runs_before_rows(
        self, link: Link, cutoff: datetime, limit: int, after: str | None
    ) -> list[dict[str, Any]]:
        """The batch's candidates: at most ``limit`` runs before ``cutoff``, after ``after``."""
        params: dict[str, Any] = {"cutoff": cutoff, "limit": limit}
        if after is not None:
            params["a_at"], params["a_id"] = decode_cursor(
                RuleKind.RUNS_BEFORE, after, datetime, str
            )
        query = self._shape(
            ("runs_before", after is not None),
            lambda: self.runs_before_candidates(after is not None),
        )
        return link.all(query, params)

    def runs_before(
        self, link: Link, cutoff: datetime, limit: int, after: str | None, dry_run: bool
    ) -> RetentionBatch:
        rows = self.runs_before_rows(link, cutoff, limit, after)
        doomed = [row["run_id"] for row in rows if not row["kept"]]
        if dry_run:
            removed = len(doomed)
        else:
            removed = self._by_keys(
                link, "runs_before delete", self.runs_before_delete, doomed, {"cutoff": cutoff}
            )
        cursor = None
        if len(rows) >= limit:
            cursor = encode_cursor(RuleKind.RUNS_BEFORE, rows[-1]["created_at"], rows[-1]["run_id"])
        return RetentionBatch(counts={"runs": removed}, after=cursor)

    # -- keep_last_runs -----------------------------------------------------------------
    def sessions_page(self, after: bool) -> Select[Any]:
        """The ids of sessions holding runs, after ``:a_id``, at most ``:limit``: read from
        the runs' ``(session_id, seq)`` index, so a session whose row was never written (a
        workflow logging runs only) is trimmed too. The walk stops after ``:limit``
        sessions; it reads their runs' index entries, which the batch reads anyway."""
        r = self.tables.runs
        stmt = select(r.c.session_id).distinct()
        if after:
            stmt = stmt.where(r.c.session_id > bindparam("a_id", type_=String))
        return stmt.order_by(r.c.session_id).limit(bindparam("limit"))

    def surplus(self, r: Any, size: int) -> ColumnElement[bool]:
        """Runs of the given sessions with ``seq <= max(seq) - :keep`` that are not kept."""
        m = self.tables.runs.alias("top")
        top = select(func.max(m.c.seq)).where(m.c.session_id == r.c.session_id).scalar_subquery()
        return and_(
            self._keyed(r.c.session_id, size),
            r.c.seq <= top - bindparam("keep"),
            not_(self.protected(r, newest=False)),
        )

    def surplus_count(self, size: int) -> ClauseElement:
        r = self.tables.runs.alias("r")
        return select(func.count()).select_from(r).where(self.surplus(r, size))

    def surplus_delete(self, size: int) -> ClauseElement:
        runs = self.tables.runs
        return runs.delete().where(self.surplus(runs, size))

    def keep_last_sessions(self, link: Link, limit: int, after: str | None) -> list[str]:
        """The batch's candidates: at most ``limit`` sessions holding runs, after ``after``."""
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            (params["a_id"],) = decode_cursor(RuleKind.KEEP_LAST_RUNS, after, str)
        page = self._shape(
            ("sessions page", after is not None), lambda: self.sessions_page(after is not None)
        )
        return [row["session_id"] for row in link.all(page, params)]

    def keep_last_runs(
        self, link: Link, keep: int, limit: int, after: str | None, dry_run: bool
    ) -> RetentionBatch:
        sessions = self.keep_last_sessions(link, limit, after)
        if dry_run:
            removed = self._by_keys(
                link, "keep_last_runs count", self.surplus_count, sessions, {"keep": keep}
            )
        else:
            removed = self._by_keys(
                link, "keep_last_runs delete", self.surplus_delete, sessions, {"keep": keep}
            )
        cursor = None
        if len(sessions) >= limit:
            cursor = encode_cursor(RuleKind.KEEP_LAST_RUNS, sessions[-1])
        return RetentionBatch(counts={"runs": removed}, after=cursor)

    # -- idle_sessions ------------------------------------------------------------------
    def idle_candidates(self, after: bool, lock: bool) -> Select[Any]:
        """Sessions last updated before ``:cutoff`` (after ``(:a_at, :a_id)``), oldest
        first, at most ``:limit``, each with ``busy`` (1: it holds a running run)."""
        s, r = self.tables.sessions, self.tables.runs
        at = s.c.updated_at
        # A scalar subquery, not EXISTS: Postgres may answer an EXISTS here with a hashed
        # subplan over every running run of the table; this stays a probe of the session's
        # runs through the (session_id, seq) index.
        running = (
            select(r.c.status)
            .where(r.c.session_id == s.c.session_id, r.c.status == RUNNING)
            .limit(1)
            .scalar_subquery()
        )
        busy = case((running.is_not(None), 1), else_=0).label("busy")
        stmt = select(s.c.session_id, at, busy).where(at < bindparam("cutoff", type_=at.type))
        if after:
            a_at = bindparam("a_at", type_=at.type)
            stmt = stmt.where(
                at >= a_at,
                tuple_(at, s.c.session_id) > tuple_(a_at, bindparam("a_id", type_=String)),
            )
        stmt = stmt.order_by(at, s.c.session_id).limit(bindparam("limit"))
        return stmt.with_for_update(of=s) if lock else stmt

    def session_runs_count(self, size: int) -> ClauseElement:
        r = self.tables.runs
        return select(func.count()).select_from(r).where(self._keyed(r.c.session_id, size))

    def session_runs_delete(self, size: int) -> ClauseElement:
        r = self.tables.runs
        return r.delete().where(self._keyed(r.c.session_id, size))

    def sessions_delete(self, size: int) -> ClauseElement:
        s = self.tables.sessions
        return s.delete().where(self._keyed(s.c.session_id, size))

    def idle_sessions(
        self, link: Link, cutoff: datetime, limit: int, after: str | None, dry_run: bool
    ) -> RetentionBatch:
        params: dict[str, Any] = {"cutoff": cutoff, "limit": limit}
        if after is not None:
            params["a_at"], params["a_id"] = decode_cursor(
                RuleKind.IDLE_SESSIONS, after, datetime, str
            )
        lock = self.lock_sessions and not dry_run
        query = self._shape(
            ("idle sessions", after is not None, lock),
            lambda: self.idle_candidates(after is not None, lock),
        )
        rows = link.all(query, params)
        idle = [row["session_id"] for row in rows if not row["busy"]]
        counts = self.remove_sessions(link, idle, dry_run)
        cursor = None
        if len(rows) >= limit:
            last = rows[-1]
            cursor = encode_cursor(RuleKind.IDLE_SESSIONS, last["updated_at"], last["session_id"])
        return RetentionBatch(counts=counts, after=cursor)

    def remove_sessions(self, link: Link, idle: Sequence[str], dry_run: bool) -> dict[str, int]:
        """Remove (count) the sessions ``idle`` and all their runs."""
        if dry_run:
            runs = self._by_keys(link, "session runs count", self.session_runs_count, idle)
            return {"sessions": len(idle), "runs": runs}
        runs = self._by_keys(link, "session runs delete", self.session_runs_delete, idle)
        sessions = self._by_keys(link, "sessions delete", self.sessions_delete, idle)
        return {"sessions": sessions, "runs": runs}


__all__ = ["SqlRetention", "decode_cursor", "encode_cursor"]
