"""Where a DuckDB database lives, and the SQLAlchemy engine kern reaches it through.

The engine uses duckdb_engine's SQLAlchemy dialect (DuckDB speaks PostgreSQL's SQL, so the
shared layer's Core statements, ``ON CONFLICT`` included, compile as they do for Postgres)
but not its connection handling: each operation gets a connection from this process's
lease on the file (``kern.db.duckdb.lease``) through ``NullPool``, and closing it tells the
lease the operation is over, so that the lease knows when it may hand the file over.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import duckdb_engine
from duckdb_engine import ConnectionWrapper
from sqlalchemy import Engine, create_engine
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import registry
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

import duckdb
from kern.db.registry import wrong_backend_hint
from kern.errors import ConfigurationError, SyncAsyncMismatchError

MEMORY = ":memory:"
SCHEME = "duckdb"
#: The SQLAlchemy dialect kern's engines use (``KernDuckDBDialect``, registered below).
DRIVERNAME = "duckdb+kern"

_URL_FORMS = "duckdb:///relative/path.duckdb, duckdb:////absolute/path.duckdb or duckdb:///:memory:"


class Lease(Protocol):
    """What the engine needs from a lease (``FileLease`` or ``MemoryLease``)."""

    def connect(self, timeout: float) -> duckdb.DuckDBPyConnection: ...
    def done(self) -> None: ...


@dataclass(frozen=True)
class Target:
    """Where the database lives: an absolute file path, or ``:memory:``."""

    file: str

    @property
    def in_memory(self) -> bool:
        return self.file == MEMORY


# -- choosing the database -----------------------------------------------------------------
def _at(path: str | os.PathLike[str]) -> Target:
    if str(path) in (MEMORY, ""):
        return Target(MEMORY)
    absolute = Path(path).expanduser().absolute()
    absolute.parent.mkdir(parents=True, exist_ok=True)
    return Target(str(absolute))


def from_file(db_file: str | os.PathLike[str]) -> Target:
    """A target for a file path (its parent folders are created), or ``":memory:"``."""
    if not str(db_file):
        raise ConfigurationError("db_file is empty: give a path such as 'tmp/agent.duckdb'")
    return _at(db_file)


def from_url(db_url: str | URL, *, cls: str) -> Target:
    """A target for a ``duckdb://`` URL; other schemes get an error naming the right class."""
    try:
        url = make_url(db_url)
    except ArgumentError:
        # Not echoed: a URL may hold a password.
        raise ConfigurationError(
            f"{cls} could not read db_url as a database URL. Use {_URL_FORMS}."
        ) from None
    if url.get_backend_name() != SCHEME:
        raise wrong_backend(cls, url.drivername)
    if url.drivername != SCHEME:
        raise ConfigurationError(
            f"{cls} reaches DuckDB through its own driver: write the URL without "
            f"'+{url.get_driver_name()}' ({_URL_FORMS})."
        )
    if url.query:
        raise ConfigurationError(
            f"{cls} takes no options in its URL (got ?{'&'.join(sorted(url.query))}): "
            f"use {_URL_FORMS}."
        )
    return _at(url.database or MEMORY)


def wrong_backend(cls: str, drivername: str) -> ConfigurationError:
    """The error for another backend's URL; the registry says which class to use instead."""
    scheme = drivername.lower()
    return ConfigurationError(
        f"{cls} stores in DuckDB and needs a duckdb:// URL (e.g. duckdb:///agent.duckdb), "
        f"not a {scheme}:// one: {wrong_backend_hint(scheme, backend='duckdb')}."
    )


def refuse_engine(engine: Any, *, cls: str) -> ConfigurationError:
    """Why ``engine=`` cannot be used, naming what to pass instead."""
    if hasattr(engine, "sync_engine"):  # an AsyncEngine; no import of the asyncio ext
        return SyncAsyncMismatchError(
            f"{cls} got an async engine (create_async_engine). DuckDB has no async driver: "
            "for async code use AsyncDuckDb(db_file=...), which runs the calls in worker "
            "threads off the event loop."
        )
    return ConfigurationError(
        f"{cls} does not take an engine: it opens and closes the DuckDB file itself, so "
        f"that several processes can take turns on it. Pass db_file=... or db_url="
        f"'duckdb:///…' instead."
    )


def check_seconds(name: str, value: float | None, *, allow_none: bool) -> float | None:
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        also = " or None" if allow_none else ""
        raise ConfigurationError(f"{name} must be a number of seconds, 0 or more{also}")
    return float(value)


# -- the engine ----------------------------------------------------------------------------
class KernDuckDBDialect(duckdb_engine.Dialect):
    """duckdb_engine's dialect, leaving result values as the driver returns them.

    duckdb_engine decodes the JSON columns of untyped results (``exec_driver_sql``, which
    kern-sql uses when statement events are listened to). kern's compiled statements decode
    each column with its own type, so a JSON value would be decoded twice.
    """

    driver = "kern"
    supports_statement_cache = False  # as duckdb_engine: kern compiles its statements once

    def type_descriptor(self, typeobj: Any) -> Any:
        described = super().type_descriptor(typeobj)
        if isinstance(described, duckdb_engine.DuckDBNullType):
            return sqltypes.NULLTYPE
        return described


registry.register("duckdb.kern", __name__, "KernDuckDBDialect")


class LeasedConnection(ConnectionWrapper):
    """duckdb_engine's DBAPI connection, on a connection from a lease.

    Closing it hands the operation back to the lease. ``rollback`` without a transaction
    (a read that failed: kern runs reads in autocommit) is a no-op, not an error.
    """

    def __init__(self, connection: duckdb.DuckDBPyConnection, lease: Lease) -> None:
        super().__init__(connection)
        self._kern_duck = connection
        self._kern_lease: Lease | None = lease

    def rollback(self) -> None:
        try:
            self._kern_duck.rollback()
        except duckdb.TransactionException as exc:
            if "no transaction is active" not in str(exc):
                raise

    def close(self) -> None:
        lease, self._kern_lease = self._kern_lease, None
        if lease is None:
            return
        try:
            super().close()
        finally:
            lease.done()


def build_engine(target: Target, lease: Lease, lock_timeout: float) -> Engine:
    """An engine whose every connection is one operation's turn on ``lease``."""

    def creator() -> LeasedConnection:
        return LeasedConnection(lease.connect(lock_timeout), lease)

    return create_engine(
        URL.create(DRIVERNAME, database=target.file),
        creator=creator,
        poolclass=NullPool,
        # kern commits or rolls back each operation itself; reads run in autocommit.
        pool_reset_on_return=None,
    )
