"""The async twin of an embedded, file-backed ``SqlDb`` (SQLite, DuckDB).

Each call runs the sync db's method in a worker thread (``ThreadedAsyncDb``), its
``recall_memories`` (one connection for both reads) included; this adds what such twins
share beyond the contract: the sync db's engine, file and table prefix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from kern.db.sql.db import SqlDb
from kern.db.threaded import ThreadedAsyncDb

if TYPE_CHECKING:
    from sqlalchemy import Engine


class ThreadedSqlFileDb(ThreadedAsyncDb):
    """Base of ``AsyncSqliteDb`` and ``AsyncDuckDb``: subclasses set ``sync_class``."""

    sync_class: ClassVar[type[SqlDb]]
    sync_db: SqlDb

    @property
    def engine(self) -> Engine:
        """The sync SQLAlchemy engine the worker threads use."""
        return self.sync_db.engine

    @property
    def table_prefix(self) -> str:
        return self.sync_db.table_prefix

    @property
    def db_file(self) -> str:
        return self.sync_db.db_file  # type: ignore[attr-defined]

    def storage_target(self) -> str:
        return self.sync_db.storage_target()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(db_file={self.db_file!r})"
