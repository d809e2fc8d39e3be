"""This process's hold on a DuckDB file: open while in use, handed over when others wait.

DuckDB lets one process at a time open a file for writing. Opening one builds a whole
database instance (about 40 ms here) and closing it after writes checkpoints (about 10 ms),
while a statement on an open database takes about 1 ms. So kern neither keeps the file for
the life of the process (a second process could never write) nor opens it per operation
(40 times slower). A ``FileLease`` keeps the database open while this process uses it, and
gives it up:

- when another kern process waits for it (it rings the doorbell of
  ``kern.db.duckdb.sidecar``) and this one has held it for ``MIN_HOLD_S`` (so each holder
  gets work done before the next one pays for opening): at the end of the operation in
  flight, or at once when idle;
- after ``keep_open`` seconds without an operation (``0``: after every operation; ``None``:
  only when someone waits), so that other programs can open the file while kern is idle;
- when the last Db object using it is closed, and at interpreter exit.

Every DuckDb object of this process on one file shares one lease (as DuckDB shares one
database instance per file per process). Each operation gets its own connection to that
instance (``DuckDBPyConnection.cursor()``, microseconds). A process that wants the file
polls for its turn (and, when a program that is not kern holds the file, polls DuckDB
itself) until ``lock_timeout``, then raises ``DuckDbLockedError``.
"""

from __future__ import annotations

import atexit
import os
import random
import re
import threading
import time
from typing import Any

import duckdb
from kern.db.duckdb.errors import DuckDbLockedError
from kern.db.duckdb.sidecar import Sidecar, open_sidecar
from kern.errors import ConfigurationError

#: A holder keeps the file at least this long before it yields to a waiting process.
MIN_HOLD_S = 0.1
#: How often a holder checks, while idle, whether to give the file up.
WATCH_S = 0.01
#: After yielding, a process gives the waiters this long to take the file first.
YIELD_S = 0.02
#: Polling intervals of a waiting process (doubling, with jitter, up to the cap).
POLL_MIN_S = 0.001
POLL_TURN_MAX_S = 0.005
POLL_FILE_MAX_S = 0.1

_LOCK_CONFLICT = "Could not set lock on file"
_HOLDER = re.compile(r"Conflicting lock is held in (.*) \(PID (\d+)\)")


def _sleep(delay: float, deadline: float) -> None:
    time.sleep(max(0.0, min(deadline - time.monotonic(), delay * (0.5 + random.random()))))


#: Compression kern's tables are stored without (``disabled_compression_methods``).
#:
#: kern reads rows through ART index lookups, and DuckDB fetches one row of an RLE segment
#: by walking the segment's runs from its start: reading the ~500 postings of a search over
#: 10,000 memories took 11 ms with ``doc_len`` RLE-compressed, 3 ms bit-packed. The
#: compressions left (bit-packing, constant, dictionary, FSST...) fetch a row in place.
#: Segments already written keep their compression; new ones are written without RLE.
NO_COMPRESSION = "rle"


def configure(connection: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Settings of the database instance behind ``connection`` (all its cursors share them).

    On failure the connection is closed (it would otherwise keep the file locked)."""
    try:
        connection.execute(f"SET disabled_compression_methods = '{NO_COMPRESSION}'")
    except BaseException:
        connection.close()
        raise
    return connection


def open_database(path: str) -> duckdb.DuckDBPyConnection | str:
    """A connection to ``path``, or a description of the process that holds the file."""
    try:
        return configure(duckdb.connect(path))
    except duckdb.IOException as exc:
        if _LOCK_CONFLICT not in str(exc):
            raise _unusable(path, exc) from None
        found = _HOLDER.search(str(exc))
        return f"PID {found.group(2)}, {found.group(1)}" if found else "a program that is not kern"
    except duckdb.Error as exc:
        raise _unusable(path, exc) from None


def _unusable(path: str, exc: Exception) -> ConfigurationError:
    return ConfigurationError(
        f"DuckDB could not open {path}: {exc}. Check that it is a DuckDB database file (a "
        "SQLite file needs SqliteDb) and that this process may read and write it."
    )


class FileLease:
    """This process's turn on one DuckDB file, shared by every DuckDb object on it.

    ``connect`` returns a connection for one operation (opening the file first if needed);
    ``done`` is called when that connection is closed. ``write_lock`` serialises this
    process's write transactions (DuckDB would abort concurrent writers of one row).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.write_lock = threading.RLock()
        self._cond = threading.Condition()
        self._side: Sidecar | None = open_sidecar(path)
        self._db: duckdb.DuckDBPyConnection | None = None
        self._in_use = 0
        self._held_since = 0.0
        self._last_used = 0.0
        self._yielded_at: float | None = None
        self._watching = False
        self._users: dict[int, float | None] = {}
        self.keep_open: float | None = 0.0

    @property
    def held(self) -> bool:
        """True while this process has the database open."""
        return self._db is not None

    # -- who uses it ------------------------------------------------------------------
    def join(self, user: object, keep_open: float | None) -> None:
        with self._cond:
            self._users[id(user)] = keep_open
            self._settle_keep_open()

    def leave(self, user: object) -> bool:
        """Forget ``user``; give the file up if it was the last. True if it was the last."""
        with self._cond:
            self._users.pop(id(user), None)
            self._settle_keep_open()
            if self._users:
                return False
            if self._db is not None:
                self._release(yielding=False)
            if self._side is not None:
                self._side.close()
                self._side = None
            return True

    def _settle_keep_open(self) -> None:
        values = list(self._users.values())
        self.keep_open = None if None in values else max(values, default=0.0)  # type: ignore[type-var]

    # -- one operation ----------------------------------------------------------------
    def connect(self, timeout: float) -> duckdb.DuckDBPyConnection:
        with self._cond:
            if self._db is None:
                self._acquire(timeout)
            assert self._db is not None
            cursor = self._db.cursor()
            self._in_use += 1
            return cursor

    def done(self) -> None:
        with self._cond:
            self._in_use -= 1
            now = self._last_used = time.monotonic()
            if self._in_use == 0 and self._db is not None:
                reason = self._reason_to_go(now)
                if reason:
                    self._release(yielding=reason == "yield")

    # -- taking and giving up the file ------------------------------------------------
    def _acquire(self, timeout: float) -> None:
        """Open the file, waiting for other processes until ``timeout``. Holds ``_cond``."""
        if self._yielded_at is not None:
            # We just handed the file over: let the waiter take it before we ask again.
            time.sleep(max(0.0, self._yielded_at + YIELD_S - time.monotonic()))
            self._yielded_at = None
        deadline = time.monotonic() + timeout
        side = self._side
        have_turn = False
        delay = POLL_MIN_S
        holder: str | None = None
        try:
            while True:
                if not have_turn:
                    have_turn = side is None or side.try_turn()
                if have_turn:
                    opened = open_database(self.path)
                    if not isinstance(opened, str):
                        self._db = opened
                        break
                    holder = opened  # a program that is not kern has the file
                elif side is not None:
                    pid = side.holder_pid()
                    holder = f"PID {pid}, a kern process" if pid else None
                if side is not None:
                    side.ring()
                if time.monotonic() >= deadline:
                    if have_turn and side is not None:
                        side.end_turn()
                    raise DuckDbLockedError(self.path, timeout, holder)
                _sleep(delay, deadline)
                delay = min(delay * 2, POLL_FILE_MAX_S if have_turn else POLL_TURN_MAX_S)
        except BaseException:
            if have_turn and side is not None and self._db is None:
                side.end_turn()
            raise
        finally:
            if side is not None:
                side.hang_up()
        self._held_since = self._last_used = time.monotonic()
        if not self._watching:
            self._watching = True
            threading.Thread(target=self._watch, name="kern-duckdb-lease", daemon=True).start()

    def _reason_to_go(self, now: float) -> str | None:
        keep_open = self.keep_open
        if keep_open is not None and now - self._last_used >= keep_open:
            return "idle"
        side = self._side
        if side is not None and now - self._held_since >= MIN_HOLD_S and side.someone_waits():
            return "yield"
        return None

    def _release(self, *, yielding: bool) -> None:
        db, self._db = self._db, None
        try:
            if db is not None:
                db.close()  # checkpoints, then DuckDB drops its file lock
        finally:
            if self._side is not None:
                self._side.end_turn()
            self._yielded_at = time.monotonic() if yielding else None
            self._cond.notify_all()

    def _watch(self) -> None:
        """While the file is open: give it up when idle too long or someone waits."""
        with self._cond:
            try:
                while self._db is not None:
                    self._cond.wait(WATCH_S)
                    if self._db is not None and self._in_use == 0:
                        reason = self._reason_to_go(time.monotonic())
                        if reason:
                            self._release(yielding=reason == "yield")
            finally:
                self._watching = False

    def _reset_after_fork(self) -> None:
        """In a forked child: the parent's database and locks are not ours; start afresh."""
        if self._db is not None:
            _ORPHANS.append(self._db)  # never closed here: closing would write the file
        self._db = None
        self._in_use = 0
        self._watching = False
        self._yielded_at = None
        self._cond = threading.Condition()
        self.write_lock = threading.RLock()
        if self._side is not None:
            self._side.forget_after_fork()


class MemoryLease:
    """The ``:memory:`` stand-in: one private database, open for the life of the object."""

    def __init__(self) -> None:
        self.path = ":memory:"
        self.write_lock = threading.RLock()
        self._db: duckdb.DuckDBPyConnection | None = configure(duckdb.connect(":memory:"))
        self._lock = threading.Lock()
        self.keep_open: float | None = None

    @property
    def held(self) -> bool:
        return self._db is not None

    def join(self, user: object, keep_open: float | None) -> None:
        pass

    def leave(self, user: object) -> bool:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
        return True

    def connect(self, timeout: float) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._db is None:
                raise ConfigurationError("this in-memory DuckDB database is closed")
            return self._db.cursor()

    def done(self) -> None:
        pass


# -- the process-wide registry ------------------------------------------------------------
_leases: dict[str, FileLease] = {}
_registry_lock = threading.Lock()
_ORPHANS: list[Any] = []


def lease_for(path: str, user: object, keep_open: float | None) -> FileLease:
    """The lease of ``path`` in this process, with ``user`` counted among its users.

    Keyed by the resolved path: two spellings of one file (a symlink) share one lease and
    one side file, in this process and across processes.
    """
    path = os.path.realpath(path)
    with _registry_lock:
        lease = _leases.get(path)
        if lease is None:
            lease = _leases[path] = FileLease(path)
        lease.join(user, keep_open)
        return lease


def leave(lease: FileLease, user: object) -> None:
    """``user`` is done with ``lease``; the last one out closes the file."""
    with _registry_lock:
        if lease.leave(user) and _leases.get(lease.path) is lease:
            del _leases[lease.path]


@atexit.register
def _release_all() -> None:
    for lease in list(_leases.values()):
        with lease._cond:
            if lease._db is not None and lease._in_use == 0:
                lease._release(yielding=False)


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for lease in _leases.values():
        lease._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
