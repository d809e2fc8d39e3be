"""``SqliteDb`` and its async twin: kern's embedded default backend.

SQLAlchemy (the engine, the dialect, the vector search) is imported when a Db is built, not
with this module, so that ``from kern.db.sqlite import SqliteDb`` stays fast: see
docs/benchmarks.md#cold-start.
"""

from __future__ import annotations

import os
import threading
from types import ModuleType
from typing import TYPE_CHECKING, ClassVar, cast

from kern.db.report import Capability
from kern.db.sql.db import SqlDb
from kern.db.sql.prefix import DEFAULT_PREFIX
from kern.db.sql.threaded import ThreadedSqlFileDb
from kern.errors import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine
    from sqlalchemy.engine import URL

    from kern.db.sqlite.dialect import SqliteDialect


class SqliteDb(SqlDb):
    """kern's storage in one SQLite file (or in memory).

    Give exactly one of ``db_file`` (a path; missing parent folders are created),
    ``db_url`` (``sqlite:///relative.db``, ``sqlite:////abs/path.db``,
    ``sqlite:///:memory:``) or ``engine`` (a SQLAlchemy ``Engine`` on SQLite). Tables are
    created on first use. The file runs in WAL mode: readers never wait for the writer.
    ``:memory:`` is one connection shared by every thread (one at a time); it lives as
    long as this object. ``sqlite_module``: the DB-API module kern connects with, a module
    or its name (default: the standard ``sqlite3``), e.g. ``"pysqlite3.dbapi2"``, whose
    SQLite can load sqlite-vec; not with ``engine`` (an engine has its module).

    Vector search runs in SQL with sqlite-vec when the engine's ``sqlite3`` module can load
    it, else as an exact numpy scan: ``vector_index`` says which, ``vector_index_reason``
    why (also logged once, on ``kern.db.sqlite``). See ``kern.db.sqlite.vectors``.
    """

    dialect: SqliteDialect

    backend_name = "sqlite"
    dialect_class: ClassVar[type[SqliteDialect] | str] = "kern.db.sqlite.dialect:SqliteDialect"

    def __init__(
        self,
        db_file: str | os.PathLike[str] | None = None,
        db_url: str | URL | None = None,
        *,
        table_prefix: str = DEFAULT_PREFIX,
        engine: Engine | None = None,
        sqlite_module: str | ModuleType | None = None,
    ) -> None:
        from kern.db.sqlite import engine as sqlite_engine
        from kern.db.sqlite.vectors import announce

        cls = type(self).__name__
        options = (("db_file", db_file), ("db_url", db_url), ("engine", engine))
        given = [name for name, value in options if value is not None]
        if len(given) != 1:
            raise ConfigurationError(
                f"{cls} needs exactly one of db_file, db_url or engine (got "
                f"{', '.join(given) or 'none'}): e.g. {cls}(db_file='tmp/agent.db')."
            )
        if engine is not None and sqlite_module is not None:
            raise ConfigurationError(
                f"{cls} got both engine and sqlite_module: an engine connects with its own "
                "module (create_engine(url, module=...)); give one of them."
            )
        module = (
            None if sqlite_module is None else sqlite_engine.dbapi_module(sqlite_module, cls=cls)
        )
        if engine is not None:
            target = sqlite_engine.from_engine(engine, cls=cls)
        elif db_url is not None:
            target = sqlite_engine.from_url(db_url, cls=cls)
        else:
            assert db_file is not None
            target = sqlite_engine.from_file(db_file)
        self.db_file = target.file
        owns = engine is None
        super().__init__(
            engine or sqlite_engine.build_engine(target, module),
            table_prefix=table_prefix,
            owns_engine=owns,
        )
        if target.in_memory:
            # One connection is the whole database: one thread at a time uses it.
            self._guard = threading.RLock()
        announce(self.dialect.vector_index, self.db_file)

    @property
    def vector_index(self) -> str:
        """The vector search in use: ``"sqlite-vec"`` or ``"exact (numpy)"``."""
        return self.dialect.vector_index.name

    @property
    def vector_index_reason(self) -> str:
        """Why ``vector_index`` is what it is, and how to turn sqlite-vec on if it is not."""
        return self.dialect.vector_index.reason

    def _report_capabilities(self, conn: Connection) -> list[Capability]:
        from kern.db.sqlite.report import capabilities

        return capabilities(cast(ModuleType, conn.dialect.loaded_dbapi), self.dialect.vector_index)

    def storage_target(self) -> str:
        return self.db_file

    def __repr__(self) -> str:
        return f"{type(self).__name__}(db_file={self.db_file!r})"


class AsyncSqliteDb(ThreadedSqlFileDb):
    """The async twin of ``SqliteDb``: same arguments, each call runs in a worker thread.

    Also accepts ``sqlite+aiosqlite://`` URLs (the SQLAlchemy async spelling); the calls
    still go through the sync driver, off the event loop.
    """

    backend_name = "sqlite"
    sync_class = SqliteDb
    sync_db: SqliteDb

    def __init__(
        self,
        db_file: str | os.PathLike[str] | None = None,
        db_url: str | URL | None = None,
        *,
        table_prefix: str = DEFAULT_PREFIX,
        engine: Engine | None = None,
        sqlite_module: str | ModuleType | None = None,
    ) -> None:
        from sqlalchemy import Engine

        from kern.db.sqlite import engine as sqlite_engine

        if engine is not None and not isinstance(engine, Engine):
            sqlite_engine.from_engine(engine, cls=type(self).__name__)  # raises, naming the fix
        if db_url is not None:
            db_url = sqlite_engine.sync_url(db_url)
        super().__init__(
            db_file, db_url, table_prefix=table_prefix, engine=engine, sqlite_module=sqlite_module
        )

    @property
    def vector_index(self) -> str:
        """The vector search in use (see ``SqliteDb.vector_index``)."""
        return self.sync_db.vector_index

    @property
    def vector_index_reason(self) -> str:
        return self.sync_db.vector_index_reason


__all__ = ["AsyncSqliteDb", "SqliteDb"]
