"""Session steps shared by agents, teams and workflows, as turn generators (see kern.effects)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from kern import storage
from kern.effects import Turn
from kern.errors import SessionOwnershipError, UnserializableError, VersionConflictError
from kern.ids import check_text
from kern.records import Run, Session

#: The metadata key that marks a session shared by several users (``shared_session=True``).
SHARED_KEY = "kern.shared"


def check_owner(session: Session, user_id: str | None) -> Session:
    """``session`` if ``user_id`` may use it: its owner, or anyone when it has no owner or
    was created shared. Otherwise ``SessionOwnershipError`` (the owner is not named)."""
    if session.user_id is None or session.user_id == user_id:
        return session
    if session.metadata.get(SHARED_KEY) is True:
        return session
    who = "no user_id" if user_id is None else f"user_id {user_id!r}"
    raise SessionOwnershipError(
        f"session {session.session_id!r} belongs to another user and cannot be used with "
        f"{who}. Use a session id of this user, pass the owner's user_id, or create the "
        "session shared (Agent(shared_session=True)) when several users take part; nothing "
        "was read or written."
    )


def read_owned(session_id: str, user_id: str | None) -> Turn[Session | None]:
    """The stored session (or None), refused if it belongs to another user."""
    stored = yield from storage.get_session(session_id)
    return None if stored is None else check_owner(stored, user_id)


def commit(
    session: Session, stored: bool, state: dict[str, Any], run: Run
) -> Turn[tuple[Run, Session]]:
    """Store a turn's run and the state it left, in one atomic write; ``(run, session)``.

    ``stored`` says whether ``session`` was read from the database (else it is created
    now, with the run). An unchanged state of a stored session is a plain ``append_run``,
    so concurrent turns that change no state never conflict. When another turn created the
    same new session first, this turn is stored on top of it if that one left the state
    as this turn found it; otherwise ``VersionConflictError``, and nothing is stored.
    The same holds for a stored session whose version moved while its state did not (a
    rolling summary was written meanwhile, ``kern.summaries``): the turn is stored on top.
    """
    if stored and state == session.state:
        return (yield from storage.append_run(run)), session
    expected = session.version if stored else None
    try:
        changed = session.model_copy(update={"state": state})
        return (yield from storage.commit_turn(run, changed, expected_version=expected))
    except VersionConflictError:
        current = yield from read_owned(session.session_id, run.user_id)
        if current is None or current.state != session.state:
            raise
        if stored and current.version == session.version:
            raise  # the conflict was not a moved version: nothing to retry on
        return (yield from commit(current, True, state, run))


def load_or_create(new: Session) -> Turn[Session]:
    """The stored session ``new.session_id``, created from ``new`` if it is not stored.

    When another process creates it at the same moment, theirs is read back and used.
    """
    stored = yield from storage.get_session(new.session_id)
    if stored is not None:
        return stored
    try:
        return (yield from storage.upsert_session(new, expected_version=None))
    except VersionConflictError:
        stored = yield from storage.get_session(new.session_id)
        if stored is None:
            raise
        return stored


def save_state(session: Session, state: dict[str, Any]) -> Turn[Session]:
    """Write ``state`` if it changed, compare-and-set on the version that was read."""
    if state == session.state:
        return session
    changed = session.model_copy(update={"state": state})
    return (yield from storage.upsert_session(changed, expected_version=session.version))


def checked_state(state: dict[str, Any]) -> dict[str, Any]:
    """The state as it will be stored, or an error naming the value JSON cannot hold.

    Checked before the model is called and again before the turn is written, with the same
    rules on every backend (``kern.ids.check_text``: no NUL, lone surrogate, NaN, infinity
    or nesting beyond ``MAX_DEPTH``)."""
    try:
        state = Session(session_id="check", state=state).state
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"][1:]) or "state"
        raise UnserializableError(
            f"session_state[{where!r}] cannot be stored as JSON ({error['msg']}). Store plain "
            "JSON values (str, int, float, bool, None, list, dict), e.g. a list instead of a "
            "set or an ISO string instead of a datetime. This turn was not stored."
        ) from None
    check_text("session_state", state)
    return state
