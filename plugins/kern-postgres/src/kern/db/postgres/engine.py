"""Which URLs and engines the Postgres classes take, and the engines they build.

kern runs Postgres on psycopg 3 only: ``postgresql://`` and ``postgresql+psycopg://`` (and
the ``postgres://`` spelling of hosted services) select its sync driver for ``PostgresDb``;
``postgresql+psycopg_async://`` its async driver for ``AsyncPostgresDb``. A URL or engine of
the wrong flavour is refused here, at construction, with the fix in the message, instead of
failing later inside SQLAlchemy (``MissingGreenlet`` for a sync engine driven from async
code, ``AsyncContextNotStarted``-style misuse for an async engine driven from sync code).

URLs are never echoed whole in messages: they may hold a password.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from kern.db.registry import wrong_backend_hint
from kern.errors import ConfigurationError, SyncAsyncMismatchError

SYNC_DRIVER = "psycopg"
ASYNC_DRIVER = "psycopg_async"
SYNC_SCHEME = f"postgresql+{SYNC_DRIVER}"
ASYNC_SCHEME = f"postgresql+{ASYNC_DRIVER}"
#: Drivers that only work from async code, and those that only work from sync code.
_ASYNC_ONLY = frozenset({ASYNC_DRIVER, "asyncpg"})
_SYNC_ONLY = frozenset({SYNC_DRIVER, "psycopg2", "psycopg2cffi", "pg8000"})

#: What every engine kern builds gets unless ``engine_kwargs`` says otherwise.
#: ``pool_pre_ping`` tests a pooled connection before use, so a restarted server is
#: survived: the dead connection is replaced instead of failing the call.
ENGINE_DEFAULTS: dict[str, Any] = {"pool_pre_ping": True}

_SCHEMA_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def check_schema(schema: str | None) -> str | None:
    """Refuse schema names that are not plain identifiers (they end up in DDL text)."""
    if schema is None:
        return None
    if not isinstance(schema, str) or not _SCHEMA_RE.match(schema):
        raise ConfigurationError(
            f"schema {schema!r} is not usable: use letters, digits and underscores, starting "
            "with a letter or underscore (at most 63 characters), e.g. schema='kern'."
        )
    return schema


def _parse(db_url: str | URL, cls: str) -> URL:
    try:
        url = make_url(db_url)
    except ArgumentError:
        raise ConfigurationError(
            f"{cls} could not read db_url as a database URL. Use "
            "postgresql://user:password@host:5432/database."
        ) from None
    backend = url.get_backend_name()
    if backend == "postgres":  # the spelling of Heroku & co., which SQLAlchemy dropped
        url = url.set(drivername="postgresql" + url.drivername[len("postgres") :])
    elif backend != "postgresql":
        raise wrong_backend(cls, url.drivername)
    return url


def sync_url(db_url: str | URL, *, cls: str = "PostgresDb") -> URL:
    """``db_url`` as the psycopg 3 sync URL ``PostgresDb`` connects with."""
    url = _parse(db_url, cls)
    driver = url.get_driver_name() if "+" in url.drivername else None
    if driver in _ASYNC_ONLY:
        raise SyncAsyncMismatchError(
            f"{cls} is synchronous but got an async URL ({url.drivername}://): SQLAlchemy "
            "cannot drive an async driver from sync code. Use AsyncPostgresDb(db_url="
            f"'{ASYNC_SCHEME}://…') in async code, or give {cls} a sync URL: "
            "postgresql://… or postgresql+psycopg://…"
        )
    if driver not in (None, SYNC_DRIVER):
        raise _other_driver(cls, url.drivername, SYNC_SCHEME)
    return url.set(drivername=SYNC_SCHEME)


def async_url(db_url: str | URL, *, cls: str = "AsyncPostgresDb") -> URL:
    """``db_url`` as the psycopg 3 async URL ``AsyncPostgresDb`` connects with."""
    url = _parse(db_url, cls)
    driver = url.get_driver_name() if "+" in url.drivername else None
    if driver is None or driver in _SYNC_ONLY:
        raise SyncAsyncMismatchError(
            f"{cls} is asynchronous but got a sync URL ({url.drivername}://): a sync engine "
            "under an async class is the mix-up SQLAlchemy reports as MissingGreenlet. Use "
            f"{cls}(db_url='{ASYNC_SCHEME}://user:pass@host:5432/db') (SQLAlchemy's async "
            "engine on psycopg 3), or PostgresDb for sync code."
        )
    if driver != ASYNC_DRIVER:
        raise _other_driver(cls, url.drivername, ASYNC_SCHEME)
    return url


def sync_engine(engine: Any, *, cls: str = "PostgresDb") -> Engine:
    """Check a user's engine for ``PostgresDb``: a sync SQLAlchemy engine on psycopg 3."""
    if isinstance(engine, AsyncEngine):
        raise SyncAsyncMismatchError(
            f"{cls} is synchronous but got an async engine (create_async_engine): the mix-up "
            "behind SQLAlchemy's AsyncContextNotStarted errors. Give it "
            f"AsyncPostgresDb(engine=...) in async code, or pass {cls} a sync engine: "
            f"create_engine('{SYNC_SCHEME}://…')."
        )
    if not isinstance(engine, Engine):
        raise ConfigurationError(
            f"{cls}(engine=...) needs a SQLAlchemy Engine (sqlalchemy.create_engine), not "
            f"{type(engine).__name__}."
        )
    _check_dialect(engine, cls)
    if engine.dialect.is_async:
        raise SyncAsyncMismatchError(
            f"{cls} got a sync Engine built on an async driver ({engine.url.drivername}): "
            f"it would fail with MissingGreenlet. Use create_engine('{SYNC_SCHEME}://…') for "
            f"{cls}, or AsyncPostgresDb(engine=create_async_engine('{ASYNC_SCHEME}://…'))."
        )
    if engine.dialect.driver != SYNC_DRIVER:
        raise _other_driver(cls, engine.url.drivername, SYNC_SCHEME)
    return engine


def async_engine(engine: Any, *, cls: str = "AsyncPostgresDb") -> AsyncEngine:
    """Check a user's engine for ``AsyncPostgresDb``: an ``AsyncEngine`` on psycopg 3."""
    if isinstance(engine, Engine):
        raise SyncAsyncMismatchError(
            f"{cls} is asynchronous but got a sync engine (create_engine): the mix-up "
            "SQLAlchemy reports as MissingGreenlet. Use SQLAlchemy's async engine: "
            f"{cls}(engine=create_async_engine('{ASYNC_SCHEME}://…')), or give the sync "
            "engine to PostgresDb."
        )
    if not isinstance(engine, AsyncEngine):
        raise ConfigurationError(
            f"{cls}(engine=...) needs a SQLAlchemy AsyncEngine "
            f"(sqlalchemy.ext.asyncio.create_async_engine), not {type(engine).__name__}."
        )
    _check_dialect(engine.sync_engine, cls)
    if engine.dialect.driver != SYNC_DRIVER:  # psycopg's async dialect is named "psycopg" too
        raise _other_driver(cls, engine.url.drivername, ASYNC_SCHEME)
    return engine


def build_sync_engine(url: URL, engine_kwargs: dict[str, Any] | None) -> Engine:
    return create_engine(url, **{**ENGINE_DEFAULTS, **(engine_kwargs or {})})


def build_async_engine(url: URL, engine_kwargs: dict[str, Any] | None) -> AsyncEngine:
    return create_async_engine(url, **{**ENGINE_DEFAULTS, **(engine_kwargs or {})})


def shown(url: URL) -> str:
    """The URL with its password masked, for ``repr`` and messages."""
    return url.render_as_string(hide_password=True)


def _check_dialect(engine: Engine, cls: str) -> None:
    if engine.dialect.name != "postgresql":
        raise wrong_backend(cls, engine.url.drivername)


def _other_driver(cls: str, drivername: str, scheme: str) -> ConfigurationError:
    return ConfigurationError(
        f"{cls} runs on psycopg 3, not on the driver of {drivername}://: use a "
        f"{scheme}://user:pass@host:5432/db URL (psycopg is installed with kern-memory[postgres])."
    )


def wrong_backend(cls: str, drivername: str) -> ConfigurationError:
    """The error for another backend's URL; the registry says which class to use instead."""
    scheme = drivername.lower()
    return ConfigurationError(
        f"{cls} stores in PostgreSQL and needs a postgresql:// URL (e.g. "
        f"postgresql://user:pass@localhost:5432/app), not a {scheme}:// one: "
        f"{wrong_backend_hint(scheme, backend='postgres')}."
    )
