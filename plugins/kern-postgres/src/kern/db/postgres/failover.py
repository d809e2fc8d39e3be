"""Dead connections without a ping: found at checkout for free, or retried where that is safe.

A pooled connection dies when its server restarts, crashes or fails over. SQLAlchemy's
``pool_pre_ping`` finds it with a round trip on every checkout, three per agent turn. kern's
engines do without, in two steps:

1. **At checkout, no round trip** (``PoolWatch``, on the engines kern builds). A server
   that goes away closes its connections, and an idle connection whose socket has input
   waiting (the server's last message, or the end of the stream) is a dead one: a
   zero-timeout ``poll`` on the socket says so, and the pool replaces it before use. A
   connection that cannot have seen that (its peer vanished without a word, or it died
   between checkout and use) is found by its first statement:
2. **A retry where nothing can be stored twice** (``retrying``, on every ``PostgresSqlDb``).
   An operation whose connection was lost (it had been made: not a failed connect) runs once
   more on a new connection when that cannot write anything twice: a read; a write whose
   ``BEGIN`` failed, so none of it reached the server; ``commit_turn`` at any point, because
   it is idempotent on ``run_id`` (a turn already stored is read back and returned, nothing
   written); ``retention_batch`` at any point, because it deletes by key what its rule
   still selects (nothing is removed twice; the receipt may then count less than went);
   ``append_run`` at any point, because a run id is stored at most once: the
   retry first looks the run up, and returns it if the lost attempt stored it (one
   statement, autocommitted, so it has no ``BEGIN`` to fail first). Any other write lost
   after its ``BEGIN`` may or may not be committed: it is not repeated, and the caller gets
   the ``StorageUnavailableError`` saying so.

Once a connection is found lost, every connection the pool made before is marked stale and
replaced at its next checkout, so the retry never meets another dead one
(``PoolWatch.renew``). Engines given by the user get the retry but no watch: kern does not
add listeners to them (set ``pool_pre_ping=True`` there).
"""

from __future__ import annotations

import functools
import select
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, DisconnectionError

from kern.errors import StorageUnavailableError

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

#: Where in an operation's use of a connection it failed: getting it ready (checkout, and
#: ``BEGIN`` for a write), running the operation's statements, or committing and handing it
#: back.
Stage = Literal["enter", "body", "exit"]
#: How an operation may be repeated after its connection was lost (see the module docstring).
Policy = Literal["read", "idempotent", "append", "write"]
F = TypeVar("F", bound=Callable[..., Any])

#: The contract methods that only read, and the writes that may run again at any point.
READS = (
    "get_session",
    "list_sessions",
    "search_sessions",
    "get_run",
    "get_last_runs",
    "read_turn",
    "get_memory",
    "list_memories",
    "search_memories",
    "recall_memories",
    "get_learning",
    "query_learnings",
    "search_learnings",
    "search_memories_by_vector",
    "search_learnings_by_vector",
    "memories_without_embedding",
    "learnings_without_embedding",
    "export_records",
)
IDEMPOTENT = (
    "commit_turn",
    # A batch deletes by key what its rule selects, protections checked again in the
    # DELETE: run again after a lost connection (even one lost at COMMIT, which may have
    # committed), it removes nothing twice, only what the rule still selects after the
    # cursor it was given; its counts are then those of the second attempt (they may be
    # lower than what went), and the next batch continues from its cursor. A dry run reads.
    "retention_batch",
)
WRITES = (
    "upsert_session",
    "delete_session",
    "fork_session",
    "update_run",
    "upsert_memory",
    "delete_memory",
    "upsert_learning",
    "delete_learning",
    "set_embeddings",
    "import_records",
    "forget_user",
)
POLICIES: dict[str, Policy] = {
    **dict.fromkeys(READS, "read"),
    **dict.fromkeys(IDEMPOTENT, "idempotent"),
    "append_run": "append",
    **dict.fromkeys(WRITES, "write"),
}


class ConnectionLostError(StorageUnavailableError):
    """A connection that had been made was lost during an operation (not: could not be made).

    ``write`` says whether it was a write transaction, ``stage`` where it broke: ``"enter"``
    (checkout or ``BEGIN``: nothing of the transaction ran), ``"body"`` or ``"exit"`` (at
    ``COMMIT``: it may be stored). The message is the ``StorageUnavailableError``'s.
    """

    def __init__(self, message: str, *, write: bool, stage: Stage) -> None:
        super().__init__(message)
        self.write = write
        self.stage = stage


def lost(
    error: StorageUnavailableError, *, write: bool, stage: Stage
) -> ConnectionLostError | None:
    """``error`` as a ``ConnectionLostError`` if a made connection broke; None if the
    connection could not be made (then repeating the operation at once would not help)."""
    if stage == "enter":
        # The StorageUnavailableError was raised while handling the SQLAlchemy error: that
        # names a statement when one was sent (BEGIN), and none for a failed connect.
        failed = error.__context__
        if not (isinstance(failed, DBAPIError) and failed.statement is not None):
            return None
    return ConnectionLostError(str(error), write=write, stage=stage)


def may_repeat(policy: Policy, error: ConnectionLostError) -> bool:
    """True if an operation of ``policy`` that lost its connection this way cannot store
    anything twice by running again."""
    if policy == "write":
        return error.write and error.stage == "enter"
    return True  # a read; commit_turn and append_run (stored at most once by run_id); a
    # retention batch (deletes by key: nothing goes twice)


def _appended(db: Any, run: Any) -> Any:
    """The stored run, if the append whose connection was lost stored ``run`` (same id,
    session and content); None if it did not, so the append runs again (a run id held by
    something else is then refused by the append itself)."""
    stored = db.get_run(run.run_id)
    if stored is None or stored.session_id != run.session_id:
        return None
    same = stored.model_dump(exclude={"seq"}) == run.model_dump(exclude={"seq"})
    return stored if same else None


def retrying(method: F, policy: Policy) -> F:
    """``method`` of a ``PostgresSqlDb``, run once more after a lost connection where
    ``policy`` allows it (by then the pool's older connections are marked stale)."""

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except ConnectionLostError as error:
            if not may_repeat(policy, error):
                raise
            if policy == "append" and error.stage != "enter":
                appended = _appended(self, args[0] if args else kwargs["run"])
                if appended is not None:
                    return appended
        return method(self, *args, **kwargs)

    # ``method`` is the contract's guarded method already (arguments checked, driver faults
    # translated): the door need not wrap this one again (kern.db.door).
    run.__kern_checked__ = True  # type: ignore[attr-defined]
    run.__kern_retry__ = policy  # type: ignore[attr-defined]
    return run  # type: ignore[return-value]


# -- at checkout ---------------------------------------------------------------------------
_GENERATION = "kern_generation"


class PoolWatch:
    """Replaces, at checkout, pooled connections that are dead or older than the last loss.

    Two pool listeners (public SQLAlchemy events): ``connect`` notes the generation a new
    connection was made in; ``checkout`` raises ``DisconnectionError`` (the pool then closes
    that connection and makes a new one) when the connection has input waiting while idle,
    or was made before ``renew()``.
    """

    def __init__(self, engine: Engine) -> None:
        self.generation = 0
        event.listen(engine.pool, "connect", self._connected)
        event.listen(engine.pool, "checkout", self._checkout)

    def renew(self) -> None:
        """Treat every connection made so far as dead (one was found dead by a statement)."""
        self.generation += 1

    def _connected(self, dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_GENERATION] = self.generation

    def _checkout(
        self, dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        if record.info.get(_GENERATION, -1) < self.generation:
            raise DisconnectionError("made before a connection of this pool was found lost")
        if gone(record.driver_connection):
            raise DisconnectionError("the server closed this connection while it was idle")


def gone(connection: Any) -> bool:
    """True if the psycopg connection ``connection``, idle in the pool, is closed or dead.

    An idle connection has nothing to read: input waiting on its socket is the server's
    goodbye (the error it sends as it shuts down, and the end of the stream). One
    non-blocking ``poll``, no round trip. (Asynchronous notifications would also count, but
    kern never ``LISTEN``s on its connections.)
    """
    try:
        if connection.closed:
            return True
        fd = connection.pgconn.socket
    except Exception:  # psycopg raises for a connection whose socket is gone
        return True
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLPRI)
            return bool(poller.poll(0))
        readable, _, broken = select.select([fd], [], [fd], 0)  # Windows
        return bool(readable or broken)
    except (OSError, ValueError):
        return True


__all__ = ["ConnectionLostError", "PoolWatch", "retrying"]
