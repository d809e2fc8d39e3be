"""``fork_session`` inside the database: one ``INSERT ... SELECT`` copies the runs.

The checks read a bounded number of rows (the two sessions, the source's last seq and the
run at the fork point, each through the primary key or the ``(session_id, seq)`` index);
then, in the same transaction, the new session row is inserted and the runs with
``seq <= at_seq`` are copied by one statement that never leaves the database: ids
``<new_session_id>:<seq>`` and the parent's copy as ``parent_run_id`` are computed there
(a left join on the runs' primary key). Nothing crosses the wire per run, so the cost is
that of the rows copied, never of the session's later runs (``kern.db.fork`` has the
rules every backend shares).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ClauseElement,
    ColumnElement,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    func,
    select,
)
from sqlalchemy.sql.selectable import NamedFromClause

from kern.db.fork import forked_session, not_found, past_last, recorded_state, taken
from kern.errors import VersionConflictError
from kern.records import Session

if TYPE_CHECKING:
    from kern.db.sql.ops import SqlOps
    from kern.db.sql.prepared import Link


#: The target's further columns (DuckDB's ``seq_key``), from the copied row and the new id.
Extra = Callable[[NamedFromClause, ColumnElement[str]], dict[str, ColumnElement[Any]]]


def copy_statement(source: Table, target: Table, extra: Extra | None = None) -> ClauseElement:
    """``INSERT INTO target SELECT <source's runs of :session_id up to :at_seq, as runs of
    :new_session_id>``; ``extra`` computes the target's further columns."""
    r = source.alias("r")
    p = source.alias("p")
    new_sid: ColumnElement[str] = bindparam("new_session_id", type_=String)
    more = extra(r, new_sid) if extra else {}
    prefix = new_sid + ":"
    parent_copied = and_(p.c.session_id == r.c.session_id, p.c.seq <= bindparam("at_seq"))
    values: dict[str, ColumnElement[Any]] = {}
    for column in target.c:
        if column.key == "run_id":
            values["run_id"] = prefix + cast(r.c.seq, String)
        elif column.key == "session_id":
            values["session_id"] = new_sid
        elif column.key == "parent_run_id":
            values["parent_run_id"] = case(
                (p.c.run_id.is_not(None), prefix + cast(p.c.seq, String)),
                else_=r.c.parent_run_id,
            )
        elif column.key in more:
            values[column.key] = more[column.key]
        else:
            values[column.key] = r.c[column.key]
    rows = (
        select(*(value.label(name) for name, value in values.items()))
        .select_from(r.outerjoin(p, and_(p.c.run_id == r.c.parent_run_id, parent_copied)))
        .where(r.c.session_id == bindparam("session_id"), r.c.seq <= bindparam("at_seq"))
    )
    return target.insert().from_select(list(values), rows)


def last_seq_statement(runs: Table) -> ClauseElement:
    """The session's highest seq (the ``(session_id, seq)`` index's last entry), or NULL."""
    return select(func.max(runs.c.seq)).where(runs.c.session_id == bindparam("session_id"))


def fork_session(
    ops: SqlOps, link: Link, session_id: str, at_seq: int, new_session_id: str
) -> tuple[Session, int]:
    """The checks, the new session and the copy, in the caller's transaction; the stored
    session and the seq of the last run copied (0 if none)."""
    source = ops.get_session(link, session_id)
    if source is None:
        raise not_found(session_id)
    last = ops.last_seq(link, session_id)
    if at_seq > last:
        raise past_last(session_id, at_seq, last)
    if ops.get_session(link, new_session_id) is not None or ops.last_seq(link, new_session_id):
        raise taken(new_session_id)
    anchor = ops.get_last_runs(
        link, session_id, 1, before_seq=at_seq + 1, top_level_only=False, status=None
    )
    state = recorded_state(anchor[0] if anchor else None)
    fork = forked_session(source, at_seq=at_seq, new_session_id=new_session_id, state=state)
    try:
        stored = ops.upsert_session(link, fork, None)
    except VersionConflictError as exc:
        raise taken(new_session_id) from exc
    copied = (anchor[0].seq or 0) if anchor else 0
    if copied:
        ops.copy_runs(link, session_id, at_seq, new_session_id, copied)
    return stored, copied


__all__ = ["Extra", "copy_statement", "fork_session", "last_seq_statement"]
