"""``DuckDb`` and its async twin: kern's storage in one DuckDB file."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar, cast

from sqlalchemy import Connection
from sqlalchemy.engine import URL

import duckdb
from kern.db.duckdb import engine as duck_engine
from kern.db.duckdb.dialect import DuckDialect
from kern.db.duckdb.lease import FileLease, MemoryLease, lease_for, leave
from kern.db.duckdb.ops import DuckOps
from kern.db.duckdb.report import capabilities
from kern.db.duckdb.schema import duck_expectations, duck_plan
from kern.db.duckdb.transfer import DuckTransfer
from kern.db.duckdb.vss import announce, choose_vector_index, find_vss_wheel
from kern.db.report import Capability
from kern.db.sql import SqlDb
from kern.db.sql.migrations import Plan
from kern.db.sql.prepared import Link
from kern.db.sql.schema import DEFAULT_PREFIX, check_prefix
from kern.db.sql.threaded import ThreadedSqlFileDb
from kern.db.sql.verify import Expectations
from kern.errors import ConfigurationError

#: Seconds to wait for another process to give the file up before DuckDbLockedError.
LOCK_TIMEOUT_S = 30.0
#: Seconds an idle process keeps the file open when nobody waits for it.
KEEP_OPEN_S = 1.0


class DuckDb(SqlDb):
    """kern's storage in one DuckDB file (or in memory).

    Give exactly one of ``db_file`` (a path; missing parent folders are created) or
    ``db_url`` (``duckdb:///relative.duckdb``, ``duckdb:////abs/path.duckdb``,
    ``duckdb:///:memory:``). Tables are created on first use.

    DuckDB lets one process at a time open a file for writing. kern processes take turns:
    each keeps the file open while it works and hands it over when another kern process
    waits, or after ``keep_open`` idle seconds (``0``: after every operation; ``None``:
    only when someone waits). A process that cannot get the file within ``lock_timeout``
    seconds (a program that is not kern holds it) raises ``DuckDbLockedError``.
    ``:memory:`` is a private database that lives as long as this object.
    """

    backend_name = "duckdb"
    dialect_class: ClassVar[type[DuckDialect]] = DuckDialect

    def __init__(
        self,
        db_file: str | os.PathLike[str] | None = None,
        db_url: str | URL | None = None,
        *,
        table_prefix: str = DEFAULT_PREFIX,
        lock_timeout: float = LOCK_TIMEOUT_S,
        keep_open: float | None = KEEP_OPEN_S,
        engine: Any = None,
    ) -> None:
        cls = type(self).__name__
        if engine is not None:
            raise duck_engine.refuse_engine(engine, cls=cls)
        options = (("db_file", db_file), ("db_url", db_url))
        given = [name for name, value in options if value is not None]
        if len(given) != 1:
            raise ConfigurationError(
                f"{cls} needs exactly one of db_file or db_url (got "
                f"{', '.join(given) or 'none'}): e.g. {cls}(db_file='tmp/agent.duckdb')."
            )
        check_prefix(table_prefix)
        timeout = duck_engine.check_seconds("lock_timeout", lock_timeout, allow_none=False)
        self.lock_timeout: float = cast(float, timeout)
        self.keep_open = duck_engine.check_seconds("keep_open", keep_open, allow_none=True)
        if db_url is not None:
            target = duck_engine.from_url(db_url, cls=cls)
        else:
            assert db_file is not None
            target = duck_engine.from_file(db_file)
        self.db_file = target.file
        self._lease: FileLease | MemoryLease = (
            MemoryLease() if target.in_memory else lease_for(target.file, self, self.keep_open)
        )
        try:
            super().__init__(
                duck_engine.build_engine(target, self._lease, self.lock_timeout),
                table_prefix=table_prefix,
            )
        except BaseException:
            self._leave()
            raise
        self.dialect: DuckDialect
        self._ops = DuckOps(self.tables, self.dialect, self.engine.dialect)
        self._transfer = DuckTransfer(self.tables, self.dialect, self.engine.dialect)
        self._vector_choice = choose_vector_index(duckdb.__version__, find_vss_wheel())
        #: The vector search in use, ``"exact (in SQL)"`` or ``"vss hnsw"``
        #: (``kern.db.duckdb.vss``), and why: logged once, on logger ``kern.db.duckdb``.
        self.vector_index: str = self._vector_choice.name
        self.vector_index_reason: str = self._vector_choice.reason
        announce(self._vector_choice, self.db_file)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(db_file={self.db_file!r})"

    def storage_target(self) -> str:
        return self.db_file

    def _report_capabilities(self, conn: Connection) -> list[Capability]:
        return capabilities(conn, self._vector_choice, find_vss_wheel())

    # -- the file's lease ---------------------------------------------------------------
    @property
    def holds_file(self) -> bool:
        """True while this process has the database file open (always, for ``:memory:``)."""
        return self._lease.held

    def _leave(self) -> None:
        if isinstance(self._lease, FileLease):
            leave(self._lease, self)
        else:
            self._lease.leave(self)

    @contextmanager
    def _serialised_write(self) -> Iterator[Link]:
        # One write transaction at a time in this process (DuckDB would abort the second
        # writer of a row rather than wait), and one process at a time holds the file.
        with self._lease.write_lock, super()._write() as link:
            yield link

    def _write(self) -> AbstractContextManager[Link]:
        return self._serialised_write()

    # -- lifecycle ----------------------------------------------------------------------
    def _reindex(self) -> dict[str, Callable[[Connection], None]]:
        """Steps that index the stored rows into each term table."""
        memories, learnings = self.tables.memories, self.tables.learnings
        duck = self.dialect.duck
        return {
            duck.memory_terms.name: lambda conn: self.dialect.memory_terms.reindex(conn, memories),
            duck.learning_terms.name: lambda conn: self.dialect.learning_terms.reindex(
                conn, learnings
            ),
        }

    def migration_plan(self) -> Plan:
        return duck_plan(self.tables, self.dialect.duck, self._reindex())

    def schema_expectations(self) -> Expectations:
        return duck_expectations(self.tables, self.dialect.duck, self._reindex())

    def create_tables(self) -> None:
        with self._lease.write_lock:
            super().create_tables()

    def close(self) -> None:
        if self._closed:
            return
        try:
            super().close()
        finally:
            self._leave()


class AsyncDuckDb(ThreadedSqlFileDb):
    """The async twin of ``DuckDb``: same arguments, each call runs in a worker thread.

    DuckDB has no async driver; its calls run off the event loop, which is all an async
    application needs from it.
    """

    backend_name = "duckdb"
    sync_class = DuckDb
    sync_db: DuckDb

    def __init__(
        self,
        db_file: str | os.PathLike[str] | None = None,
        db_url: str | URL | None = None,
        *,
        table_prefix: str = DEFAULT_PREFIX,
        lock_timeout: float = LOCK_TIMEOUT_S,
        keep_open: float | None = KEEP_OPEN_S,
        engine: Any = None,
    ) -> None:
        if engine is not None:
            raise duck_engine.refuse_engine(engine, cls=type(self).__name__)
        super().__init__(
            db_file,
            db_url,
            table_prefix=table_prefix,
            lock_timeout=lock_timeout,
            keep_open=keep_open,
        )

    @property
    def lock_timeout(self) -> float:
        return self.sync_db.lock_timeout

    @property
    def keep_open(self) -> float | None:
        return self.sync_db.keep_open

    @property
    def holds_file(self) -> bool:
        return self.sync_db.holds_file

    @property
    def vector_index(self) -> str:
        """The vector search in use (see ``DuckDb.vector_index``)."""
        return self.sync_db.vector_index

    @property
    def vector_index_reason(self) -> str:
        return self.sync_db.vector_index_reason


__all__ = ["AsyncDuckDb", "DuckDb"]
