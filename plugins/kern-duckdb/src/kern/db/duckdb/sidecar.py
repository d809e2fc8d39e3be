"""How kern processes meet beside a DuckDB file: a turn lock and a doorbell.

DuckDB's own file lock only says "taken": a process that wants the file learns it is free
by opening it, which costs about 10 ms of CPU per try, and the holder never learns that
anyone is waiting. So kern processes also meet at a small side file, ``<db_file>.kern-lock``,
with POSIX record locks (``fcntl``) on two bytes:

- byte 0, the **turn**: a kern process takes it (exclusive) before it opens the database
  and keeps it until it has closed it again. Waiting for it is a cheap non-blocking poll.
- byte 1, the **doorbell**: a process waiting for its turn holds a shared lock on it; the
  holder probes it (an exclusive lock, released at once) to learn that someone waits.

Record locks belong to the process and vanish when it exits, so a crashed holder never
blocks anyone. They are per process, not per descriptor: each process keeps one descriptor
per side file (the lease owns it) and never rings while holding the turn. The holder also
writes its PID into the file, so a waiter that gives up can say who kept the database.
Where ``fcntl`` is missing (Windows) there is no side file: waiters poll DuckDB itself and
holders give the file up after ``keep_open`` idle seconds.
"""

from __future__ import annotations

import os
from typing import Any

from kern.errors import ConfigurationError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl: Any = None  # type: ignore[no-redef]

SUFFIX = ".kern-lock"
_TURN, _BELL = 0, 1
_PID_AT, _PID_WIDTH = 8, 12


class Sidecar:
    """The side file of one database, opened once per process."""

    def __init__(self, db_file: str) -> None:
        self.path = db_file + SUFFIX
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigurationError(
                f"kern could not create {self.path} ({exc.strerror}): it keeps this small "
                "file next to the DuckDB file so that processes can take turns on it. Make "
                "the folder writable, or put the database somewhere writable."
            ) from None
        self._ringing = False

    # -- the turn ---------------------------------------------------------------------
    def try_turn(self) -> bool:
        """Take the turn if no other kern process has it; never blocks."""
        if not _try_lock(self._fd, fcntl.LOCK_EX, _TURN):
            return False
        os.pwrite(self._fd, f"{os.getpid():>{_PID_WIDTH}}".encode(), _PID_AT)
        return True

    def end_turn(self) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, _TURN)

    def holder_pid(self) -> int | None:
        """The PID the last holder wrote (it may have gone since)."""
        raw = os.pread(self._fd, _PID_WIDTH, _PID_AT).strip()
        return int(raw) if raw.isdigit() else None

    # -- the doorbell -----------------------------------------------------------------
    def ring(self) -> None:
        """Say "I am waiting" until ``hang_up``; the holder sees it at its next probe."""
        if not self._ringing:
            fcntl.lockf(self._fd, fcntl.LOCK_SH, 1, _BELL)
            self._ringing = True

    def hang_up(self) -> None:
        if self._ringing:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, _BELL)
            self._ringing = False

    def someone_waits(self) -> bool:
        """True if another process rings (holds the doorbell shared). One syscall or two."""
        if _try_lock(self._fd, fcntl.LOCK_EX, _BELL):
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, _BELL)
            return False
        return True

    def forget_after_fork(self) -> None:
        """A forked child holds none of its parent's record locks."""
        self._ringing = False

    def close(self) -> None:
        os.close(self._fd)  # drops this process's locks on the file


def _try_lock(fd: int, kind: int, byte: int) -> bool:
    try:
        fcntl.lockf(fd, kind | fcntl.LOCK_NB, 1, byte)
    except (BlockingIOError, PermissionError):  # EAGAIN / EACCES: held by another process
        return False
    return True


def open_sidecar(db_file: str) -> Sidecar | None:
    """The side file of ``db_file``, or None where record locks are not available."""
    if fcntl is None:  # pragma: no cover - Windows
        return None
    return Sidecar(db_file)
