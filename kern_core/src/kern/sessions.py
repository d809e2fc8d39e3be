"""Session steps shared by agents, teams and workflows, as turn generators (see kern.effects)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from kern.effects import DbCall, Turn
from kern.errors import UnserializableError, VersionConflictError
from kern.records import Session


def load_or_create(new: Session) -> Turn:
    """The stored session ``new.session_id``, created from ``new`` if it is not stored.

    When another process creates it at the same moment, theirs is read back and used.
    """
    stored = yield DbCall("get_session", (new.session_id,))
    if stored is not None:
        return stored
    try:
        return (yield DbCall("upsert_session", (new,), {"expected_version": None}))
    except VersionConflictError:
        stored = yield DbCall("get_session", (new.session_id,))
        if stored is None:
            raise
        return stored


def save_state(session: Session, state: dict[str, Any]) -> Turn:
    """Write ``state`` if it changed, compare-and-set on the version that was read."""
    if state == session.state:
        return session
    changed = session.model_copy(update={"state": state})
    return (yield DbCall("upsert_session", (changed,), {"expected_version": session.version}))


def checked_state(state: dict[str, Any]) -> dict[str, Any]:
    """The state as it will be stored, or an error naming the value JSON cannot hold."""
    try:
        return Session(session_id="check", state=state).state
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"][1:]) or "state"
        raise UnserializableError(
            f"session_state[{where!r}] cannot be stored as JSON ({error['msg']}). Store plain "
            "JSON values (str, int, float, bool, None, list, dict), e.g. a list instead of a "
            "set or an ISO string instead of a datetime. This turn was not stored."
        ) from None
