"""Continue a conversation from an earlier turn: the Agent's ``fork_session``.

Written once as a ``Turn`` (``kern.effects``): the Agent drives it sync (``run_turn``) or
async (``arun_turn``). The copy itself is the storage contract's ``fork_session``
(``kern.db.fork``); this adds what an agent knows: whose sessions it may read, and a run id
as the fork point.
"""

from __future__ import annotations

from kern import storage
from kern.db.fork import check_at_seq, check_new_session_id
from kern.effects import Turn
from kern.errors import ForkError, RunNotFoundError, SessionNotFoundError
from kern.ids import check_id
from kern.records import new_id
from kern.sessions import check_owner


def fork_turn(
    session_id: str,
    user_id: str | None,
    *,
    at_seq: int | None,
    at_run_id: str | None,
    new_session_id: str | None,
) -> Turn[str]:
    """Fork ``session_id`` at a seq or at a run of it; the new session's id.

    Refused before anything is written: both or neither fork point given, a run of another
    session, a session of another user (``SessionOwnershipError``).
    """
    check_id("session_id", session_id)
    check_id("at_run_id", at_run_id, optional=True)
    if (at_seq is None) == (at_run_id is None):
        raise ForkError(
            "fork_session() needs exactly one fork point: at_seq=<seq of a run> or "
            "at_run_id=<id of a run> (RunOutput.seq and RunOutput.run_id of a turn). "
            "Nothing was written."
        )
    if at_seq is not None:
        check_at_seq("at_seq", at_seq)
    new = new_session_id if new_session_id is not None else new_id()
    check_new_session_id("new_session_id", new)
    source = yield from storage.get_session(session_id)
    if source is None:
        raise SessionNotFoundError(
            f"cannot fork session {session_id!r}: no such session is stored. Check the id; "
            "db.list_sessions(user_id=...) lists the stored ones. Nothing was written."
        )
    check_owner(source, user_id)
    if at_run_id is not None:
        run = yield from storage.get_run(at_run_id)
        if run is None or run.session_id != session_id or run.seq is None:
            raise RunNotFoundError(
                f"cannot fork session {session_id!r} at run {at_run_id!r}: no run of that id "
                "is stored in this session. Pass the run_id of one of its turns "
                "(RunOutput.run_id), or at_seq=. Nothing was written."
            )
        at_seq = run.seq
    assert at_seq is not None
    fork = yield from storage.fork_session(session_id, at_seq=at_seq, new_session_id=new)
    return fork.session_id


__all__ = ["fork_turn"]
