"""The SQLite engine: where the file is, and how its connections and transactions behave.

kern takes control of ``BEGIN`` (SQLAlchemy's pysqlite notes, "Serializable isolation /
Savepoints / Transactional DDL"): while kern uses a connection, the driver's implicit
transactions are off (``isolation_level = None``) and kern says what each transaction is:

- writes: ``BEGIN IMMEDIATE`` takes the write lock up front, so reading ``max(seq)`` and
  inserting the run cannot interleave with another writer, in this process or another;
- reads: no ``BEGIN`` at all; each single-statement read is its own snapshot and holds no
  lock once it returns (in WAL mode readers never wait for the writer).

A connection that had another mode (a user's engine) gets it back when kern is done.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from kern.db.registry import wrong_backend_hint
from kern.errors import ConfigurationError, SyncAsyncMismatchError

#: Seconds a writer waits for the lock before SQLite reports "database is locked".
BUSY_TIMEOUT_S = 30.0
MEMORY = ":memory:"

ASYNC_DRIVERS = frozenset({"aiosqlite"})


@dataclass(frozen=True)
class Target:
    """Where the database lives: an absolute file path, or ``:memory:``."""

    url: URL
    file: str

    @property
    def in_memory(self) -> bool:
        return self.file == MEMORY


# -- choosing the database -----------------------------------------------------------------
def _is_memory(url: URL) -> bool:
    return url.database in (None, "", MEMORY) or url.query.get("mode") == "memory"


def from_file(db_file: str | os.PathLike[str]) -> Target:
    """A target for a file path (its parent folders are created), or ``":memory:"``."""
    if str(db_file) == MEMORY:
        return Target(URL.create("sqlite", database=MEMORY), MEMORY)
    path = Path(db_file).expanduser().absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    return Target(URL.create("sqlite", database=str(path)), str(path))


def from_url(db_url: str | URL, *, cls: str) -> Target:
    """A target for a ``sqlite://`` URL; other schemes get an error naming the right class."""
    try:
        url = make_url(db_url)
    except ArgumentError:
        # Not echoed: a URL may hold a password.
        raise ConfigurationError(
            f"{cls} could not read db_url as a database URL. Use sqlite:///relative/path.db, "
            "sqlite:////absolute/path.db or sqlite:///:memory:."
        ) from None
    if url.get_backend_name() != "sqlite":
        raise wrong_backend(cls, url.drivername)
    if url.get_driver_name() in ASYNC_DRIVERS:
        raise SyncAsyncMismatchError(
            f"{cls} is synchronous but got an async URL ({url.drivername}://). Use "
            f"AsyncSqliteDb for async code (it accepts {url.drivername}:// URLs), or a plain "
            f"sqlite:/// URL with {cls}."
        )
    if _is_memory(url):
        return Target(url, MEMORY)
    if url.query.get("uri") in ("true", "1", "True"):
        return Target(url, str(url.database))  # an SQLite URI ("file:..."): taken as given
    path = Path(str(url.database)).expanduser().absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    return Target(url.set(database=str(path)), str(path))


def from_engine(engine: Any, *, cls: str) -> Target:
    """Check a user's engine: a sync SQLAlchemy ``Engine`` on SQLite."""
    if not isinstance(engine, Engine):
        if hasattr(engine, "sync_engine"):  # an AsyncEngine; no import of the asyncio ext
            raise SyncAsyncMismatchError(
                f"{cls} got an async engine (create_async_engine), but kern runs SQLite "
                "through a sync engine (AsyncSqliteDb offloads it to worker threads). For "
                "async code use AsyncSqliteDb(db_file=...) or AsyncSqliteDb(db_url="
                f"'sqlite:///…'); otherwise pass create_engine('sqlite:///…') to {cls}."
            )
        raise ConfigurationError(
            f"{cls}(engine=...) needs a SQLAlchemy Engine (sqlalchemy.create_engine), "
            f"not {type(engine).__name__}."
        )
    if engine.dialect.name != "sqlite":
        raise wrong_backend(cls, engine.url.drivername)
    if engine.dialect.driver in ASYNC_DRIVERS:
        raise SyncAsyncMismatchError(
            f"{cls} got the sync face of an async engine ({engine.url.drivername}); pass "
            "create_engine('sqlite:///…') instead."
        )
    url = engine.url
    return Target(url, MEMORY if _is_memory(url) else str(url.database))


def sync_url(db_url: str | URL) -> str | URL:
    """``sqlite+aiosqlite://…`` as the plain ``sqlite://…`` URL that worker threads use."""
    try:
        url = make_url(db_url)
    except ArgumentError:
        return db_url  # from_url reports it
    if url.get_backend_name() == "sqlite" and url.get_driver_name() in ASYNC_DRIVERS:
        return url.set(drivername="sqlite")
    return db_url


def wrong_backend(cls: str, drivername: str) -> ConfigurationError:
    """The error for another backend's URL; the registry says which class to use instead."""
    scheme = drivername.lower()
    return ConfigurationError(
        f"{cls} stores in SQLite and needs a sqlite:// URL (e.g. sqlite:///agent.db), not "
        f"a {scheme}:// one: {wrong_backend_hint(scheme, backend='sqlite')}."
    )


# -- building and configuring the engine ----------------------------------------------------
def dbapi_module(module: str | ModuleType, *, cls: str) -> ModuleType:
    """The DB-API module to connect with, imported if given by name (``"pysqlite3.dbapi2"``)."""
    if isinstance(module, ModuleType):
        return module
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(
            f"{cls}(sqlite_module={module!r}) could not import {module!r} ({exc}): install "
            "it (pysqlite3: pip install pysqlite3-binary, Linux x86_64) or leave "
            "sqlite_module out to use the standard sqlite3."
        ) from None


def build_engine(target: Target, module: ModuleType | None = None) -> Engine:
    """An engine for ``target``: a pool of connections for a file, one shared for memory;
    ``module``: the DB-API module (default: SQLAlchemy's choice, the standard sqlite3)."""
    extra: dict[str, Any] = {} if module is None else {"module": module}
    connect_args: dict[str, Any] = {
        "check_same_thread": False,  # pooled connections move between threads
        "timeout": BUSY_TIMEOUT_S,
        "isolation_level": None,  # kern emits BEGIN itself (see the module docstring)
    }
    if target.in_memory:
        # One connection is the whole database: share it across threads (under a lock).
        return create_engine(target.url, poolclass=StaticPool, connect_args=connect_args, **extra)
    return create_engine(target.url, connect_args=connect_args, **extra)


def prepare_connection(pooled: Any) -> Callable[[], None] | None:
    """Ready a checked-out connection: driver autocommit while kern uses it, pragmas once."""
    dbapi_connection = pooled.dbapi_connection
    previous = dbapi_connection.isolation_level
    if previous is not None:
        dbapi_connection.isolation_level = None
    if "kern_sqlite" not in pooled.info:
        _configure(dbapi_connection)
        pooled.info["kern_sqlite"] = True
    if previous is None:
        return None

    def undo() -> None:
        dbapi_connection.isolation_level = previous

    return undo


def _configure(dbapi_connection: Any) -> None:
    """Once per connection: a busy timeout, WAL, NORMAL sync (durable at checkpoints), and
    ``secure_delete``: deleted rows are overwritten with zeros in the file, not only
    unlinked (the default of some builds, Debian's among them, not of all)."""
    cursor = dbapi_connection.cursor()
    try:
        timeout_ms = int(BUSY_TIMEOUT_S * 1000)
        if cursor.execute("PRAGMA busy_timeout").fetchone()[0] < timeout_ms:
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")  # safe in WAL: no corruption on crash
        cursor.execute("PRAGMA secure_delete = ON")
    finally:
        cursor.close()


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL, waiting out other processes doing the same.

    Changing the journal mode needs an exclusive lock, and SQLite may answer "database is
    locked" at once instead of calling the busy handler, so several processes opening a new
    file together retry here, within the same busy timeout.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.002
    # The driver's own class: pysqlite3's OperationalError is not the stdlib's.
    locked_error = getattr(cursor.connection, "OperationalError", sqlite3.OperationalError)
    while True:
        try:
            # A file already in WAL needs no lock; in-memory databases answer "memory".
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] in ("wal", "memory"):
                return
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except locked_error as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
