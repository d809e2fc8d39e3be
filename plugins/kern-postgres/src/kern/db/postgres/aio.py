"""``AsyncPostgresDb``: the async twin, on SQLAlchemy's async engine with psycopg 3's async driver.

No threads. The contract's code is written once, synchronously (``kern.db.sql``); here it
runs on the async engine's ``sync_engine`` inside SQLAlchemy's greenlet bridge
(``greenlet_spawn``, what ``AsyncConnection.run_sync`` and every ``AsyncEngine`` method use):
each time that code waits on the database, psycopg's ``AsyncConnection`` awaits the socket
and the event loop runs other tasks meanwhile. An append blocked on a session's advisory
lock blocks only its own task.

The one thing that cannot cross the bridge is the sync class's thread lock around
``create_tables``: two tasks of one thread would deadlock on it. So tables are made ready
here first, under an ``asyncio.Lock``, before any operation reaches the sync code.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from kern.db.delegated import SyncBackedAsyncDb
from kern.db.postgres import engine as pg_engine
from kern.db.postgres.db import PostgresSqlDb, one_location
from kern.db.postgres.dialect import UNAVAILABLE_ERRORS
from kern.db.report import StorageReport
from kern.db.sql.schema import DEFAULT_PREFIX

P = ParamSpec("P")
R = TypeVar("R")


class AsyncPostgresDb(SyncBackedAsyncDb):
    """kern's storage in PostgreSQL for async code: same arguments and methods as
    ``PostgresDb``, as coroutines.

    Give exactly one of ``db_url`` (``postgresql+psycopg_async://user:pass@host:5432/db``)
    or ``engine`` (an ``AsyncEngine`` from ``create_async_engine`` on that driver). A sync
    URL or engine is refused here, naming the fix, instead of failing later with SQLAlchemy's
    ``MissingGreenlet``. ``engine`` is the ``AsyncEngine``; ``sync_db`` the contract's
    implementation that runs on its ``sync_engine`` (only usable inside the greenlet bridge).
    """

    backend_name = "postgres"
    sync_db: PostgresSqlDb
    # Faults are raised as StorageUnavailableError by the sync code it bridges to; these
    # catch raw ones that would reach this door unwrapped.
    unavailable_errors = UNAVAILABLE_ERRORS

    def __init__(
        self,
        db_url: str | URL | None = None,
        *,
        engine: AsyncEngine | None = None,
        schema: str | None = None,
        table_prefix: str = DEFAULT_PREFIX,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        cls = type(self).__name__
        one_location(cls, db_url, engine)
        schema = pg_engine.check_schema(schema)
        if engine is not None:
            self.engine = pg_engine.async_engine(engine, cls=cls)
        else:
            assert db_url is not None
            url = pg_engine.async_url(db_url, cls=cls)
            self.engine = pg_engine.build_async_engine(url, engine_kwargs)
        self.sync_db = PostgresSqlDb(
            self.engine.sync_engine,
            table_prefix=table_prefix,
            schema=schema,
            owns_engine=engine is None,
        )
        self._ready = False
        self._ready_lock = asyncio.Lock()

    @property
    def table_prefix(self) -> str:
        return self.sync_db.table_prefix

    @property
    def schema(self) -> str | None:
        return self.sync_db.schema

    @property
    def vector_index(self) -> str | None:
        """``"pgvector hnsw"`` or ``"exact"``: the vector search in use; None until the
        first call (or ``await db.create_tables()``) chose it."""
        return self.sync_db.vector_index

    @property
    def vector_index_reason(self) -> str | None:
        """Why the search is exact (None when pgvector is used, or not chosen yet)."""
        return self.sync_db.vector_index_reason

    async def _call(self, method: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``method`` of ``sync_db`` inside the greenlet bridge, tables made ready first."""
        if not self._ready:
            await self.create_tables()
        result: R = await greenlet_spawn(functools.partial(method, *args, **kwargs))
        return result

    async def create_tables(self) -> None:
        """Create missing tables and indexes and run pending migrations forward (once)."""
        if self._ready:
            return
        async with self._ready_lock:
            if not self._ready:
                await greenlet_spawn(self.sync_db.create_tables)
                self._ready = True

    async def storage_report(self) -> StorageReport:
        """The database as it is (``PostgresDb.storage_report``): read-only, so unlike every
        other call it does not make the tables ready first."""
        return await greenlet_spawn(self.sync_db.storage_report)

    async def schema_versions(self) -> dict[str, int]:
        """The stored version of every table and search object, by name."""
        await self.create_tables()
        return await greenlet_spawn(self.sync_db.schema_versions)

    async def close(self) -> None:
        """Release the pool's connections (if kern built the engine). Not usable afterwards."""
        self._ready = False  # the next call goes through create_tables(), which refuses
        await greenlet_spawn(self.sync_db.close)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(db_url={pg_engine.shown(self.engine.url)!r}, "
            f"schema={self.schema!r}, table_prefix={self.table_prefix!r})"
        )


__all__ = ["AsyncPostgresDb"]
