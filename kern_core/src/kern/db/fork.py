"""Forking a session: a new session whose history is the source's runs up to a seq.

What every backend shares lives here: the door's checks of ``at_seq`` and
``new_session_id``, the refusals, the new session record (its state as it was at the fork
point, its parent in ``metadata["forked_from"]``) and the ids of the copied runs. The
contract's default ``fork_session`` is written once, as ``fork_steps``: a generator of
contract calls that ``run_fork`` drives on a sync Db, ``arun_fork`` on an async one and
``plan_fork`` on a Db of plans (MongoDB, Redis).

Decisions (docs/lifecycle.md, "Forking a session"):

- A copied run keeps its ``seq`` and gets the id ``<new_session_id>:<seq>`` (run ids are
  unique per database, so a copy needs its own; a derived id lets a backend compute it
  inside the database and map ``parent_run_id`` to the copy of the parent).
- The state is the one the run at the fork point recorded (``run.metrics["session_state"]``,
  written by the Agent since forks exist); for an older run without one, the source's
  state as it is now, and ``forked_from["state"]`` says ``"current"`` instead of ``"run"``.
- The summary is not copied: it may describe turns after the fork point.
"""

from __future__ import annotations

import copy
from collections.abc import Generator
from typing import Any

from kern.db.steps import Request, arun_steps, plan_steps, run_steps
from kern.db.transfer import RecordPage
from kern.errors import (
    ForkError,
    SessionNotFoundError,
    UnserializableError,
    VersionConflictError,
)
from kern.ids import MAX_ID_LENGTH, check_id, check_text
from kern.records import Run, Session, utcnow

#: The run metrics key holding the session state a turn left (the fork point's state).
STATE_KEY = "session_state"
#: The session metadata key naming the session and seq a fork was made from.
FORKED_FROM = "forked_from"
#: Room kept in a new session id for the ``:<seq>`` of its copied runs' ids.
SEQ_ROOM = 16
#: Runs copied per page by the default implementation.
PAGE = 500


def fork_run_id(new_session_id: str, seq: int) -> str:
    """The id of the copy of run ``seq`` in the fork ``new_session_id``."""
    return f"{new_session_id}:{seq}"


def check_at_seq(argument: str, value: Any) -> None:
    """The door's check: a seq is a positive ``int`` (``bool`` is not one)."""
    if type(value) is not int or value < 1:
        raise ForkError(
            f"{argument} must be a positive int, the seq of a run of the session (1 is its "
            f"first run); got {type(value).__name__} {value!r}. Nothing was written."
        )


def check_new_session_id(argument: str, value: Any) -> None:
    """An id with room left for the ``:<seq>`` suffix of the copied runs' ids."""
    check_id(argument, value)
    if len(value) > MAX_ID_LENGTH - SEQ_ROOM:
        raise ForkError(
            f"{argument} must be at most {MAX_ID_LENGTH - SEQ_ROOM} characters long (the "
            f"fork's run ids are '<new_session_id>:<seq>'); got {len(value)}. Pass a shorter "
            "id. Nothing was written."
        )


def not_found(session_id: str) -> SessionNotFoundError:
    return SessionNotFoundError(
        f"cannot fork session {session_id!r}: no such session is stored. Check the id; "
        "db.list_sessions(user_id=...) lists the stored ones. Nothing was written."
    )


def past_last(session_id: str, at_seq: int, last_seq: int) -> ForkError:
    newest = f"its last run is seq {last_seq}" if last_seq else "it has no runs"
    return ForkError(
        f"cannot fork session {session_id!r} at seq {at_seq}: {newest}. Pass an at_seq of "
        "a stored run (db.get_last_runs(session_id, n) shows them). Nothing was written."
    )


def taken(new_session_id: str) -> ForkError:
    return ForkError(
        f"cannot fork into session {new_session_id!r}: that session id is already taken "
        "(a session or runs are stored under it). Pass another new_session_id, or none to "
        "the Agent's fork_session for a fresh one. Nothing was written."
    )


def state_snapshot(state: dict[str, Any]) -> dict[str, Any] | None:
    """A copy of ``state`` to record in a run's metrics, or None when one more level of
    nesting would make it unstorable there (such a turn's fork gets the current state)."""
    try:
        check_text(STATE_KEY, {STATE_KEY: state})
    except UnserializableError:
        return None
    return copy.deepcopy(state)


def recorded_state(anchor: Run | None) -> dict[str, Any] | None:
    """The state the fork point's run recorded, if it recorded one."""
    state = anchor.metrics.get(STATE_KEY) if anchor is not None else None
    return dict(state) if isinstance(state, dict) else None


def forked_session(
    source: Session, *, at_seq: int, new_session_id: str, state: dict[str, Any] | None
) -> Session:
    """The new session: the source's owner, type and name, the given state (else the
    source's current one), the parent in ``metadata["forked_from"]``, no summary."""
    now = utcnow()
    parent = {"session_id": source.session_id, "seq": at_seq}
    parent["state"] = "run" if state is not None else "current"
    return source.model_copy(
        update={
            "session_id": new_session_id,
            "state": state if state is not None else dict(source.state),
            "summary": None,
            "metadata": {**source.metadata, FORKED_FROM: parent},
            "version": 0,
            "created_at": now,
            "updated_at": now,
        },
        deep=True,
    )


def _checked_source(
    session_id: str, at_seq: int, new_session_id: str
) -> Generator[Request, Any, Session]:
    """The refusals, before anything is written; the source session."""
    source: Session | None = yield ("get_session", (session_id,), {})
    if source is None:
        raise not_found(session_id)
    newest: list[Run] = yield ("get_last_runs", (session_id, 1), {})
    last_seq = (newest[0].seq or 0) if newest else 0
    if at_seq > last_seq:
        raise past_last(session_id, at_seq, last_seq)
    if (yield ("get_session", (new_session_id,), {})) is not None or (
        yield ("get_last_runs", (new_session_id, 1), {})
    ):
        raise taken(new_session_id)
    return source


def _copy_of(run: Run, ids: dict[str, str], new_session_id: str, **update: Any) -> Run:
    """The copy of ``run`` in the fork: its id from ``ids``, its parent's copy as parent."""
    return run.model_copy(
        update={
            "run_id": ids[run.run_id],
            "session_id": new_session_id,
            "parent_run_id": ids.get(run.parent_run_id or "", run.parent_run_id),
            **update,
        }
    )


def fork_steps(
    session_id: str, at_seq: int, new_session_id: str
) -> Generator[Request, Any, Session]:
    """The contract's default ``fork_session`` as contract calls: checks first (nothing is
    written when one fails), then the session, then the runs page by page, oldest first.

    ``append_run`` assigns the seqs, so they are kept when the source has no gaps below
    the fork point (retention or ``forget_user`` may leave some; the copies are then
    numbered 1, 2, 3...). The cost grows with ``at_seq``: backends override it.
    """
    source = yield from _checked_source(session_id, at_seq, new_session_id)
    pages: list[list[Run]] = []
    before = at_seq + 1
    while page := (yield ("get_last_runs", (session_id, PAGE), {"before_seq": before})):
        pages.append(page)
        before = page[0].seq or 0
    runs = [run for page in reversed(pages) for run in page]
    anchor = runs[-1] if runs else None
    fork = forked_session(
        source, at_seq=at_seq, new_session_id=new_session_id, state=recorded_state(anchor)
    )
    try:
        stored: Session = yield ("upsert_session", (fork,), {"expected_version": None})
    except VersionConflictError as exc:
        raise taken(new_session_id) from exc
    ids = {run.run_id: fork_run_id(new_session_id, run.seq or 0) for run in runs}
    for run in runs:
        yield ("append_run", (_copy_of(run, ids, new_session_id, seq=None),), {})
    return stored


def bulk_fork_steps(
    session_id: str, at_seq: int, new_session_id: str
) -> Generator[Request, Any, Session]:
    """``fork_steps`` for a backend with a bulk ``import_records`` (MongoDB, Redis): the
    runs are read a page at a time, newest first, and each page is written by one bulk
    import that keeps the seqs (gaps included). Two round trips per ``PAGE`` runs, and
    one page in memory (plus the copied runs' ids, to point members to their parent's
    copy: a parent has a higher seq than its members, so it is met first)."""
    source = yield from _checked_source(session_id, at_seq, new_session_id)
    anchor: list[Run] = yield ("get_last_runs", (session_id, 1), {"before_seq": at_seq + 1})
    fork = forked_session(
        source,
        at_seq=at_seq,
        new_session_id=new_session_id,
        state=recorded_state(anchor[0] if anchor else None),
    )
    try:
        stored: Session = yield ("upsert_session", (fork,), {"expected_version": None})
    except VersionConflictError as exc:
        raise taken(new_session_id) from exc
    ids: dict[str, str] = {}
    before = at_seq + 1
    while page := (yield ("get_last_runs", (session_id, PAGE), {"before_seq": before})):
        for run in page:
            ids[run.run_id] = fork_run_id(new_session_id, run.seq or 0)
        copies = [_copy_of(run, ids, new_session_id) for run in page]
        try:
            yield ("import_records", (RecordPage("runs", copies),), {})
        except ValueError as exc:  # a copy's id is held by another run
            raise taken(new_session_id) from exc
        before = page[0].seq or 0
    return stored


#: The drivers of ``fork_steps`` (``kern.db.steps``), under the names the backends use.
run_fork = run_steps
arun_fork = arun_steps
plan_fork = plan_steps


__all__ = [
    "FORKED_FROM",
    "STATE_KEY",
    "bulk_fork_steps",
    "check_at_seq",
    "check_new_session_id",
    "fork_run_id",
    "fork_steps",
    "forked_session",
    "not_found",
    "past_last",
    "plan_fork",
    "recorded_state",
    "run_fork",
    "state_snapshot",
    "taken",
]
