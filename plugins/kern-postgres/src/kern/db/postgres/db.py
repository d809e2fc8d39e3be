"""``PostgresDb``: kern's storage in PostgreSQL through SQLAlchemy 2 Core and psycopg 3."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from kern.db.postgres import engine as pg_engine
from kern.db.postgres.dialect import UNAVAILABLE_ERRORS, PostgresDialect
from kern.db.sql import SqlDb
from kern.db.sql.schema import DEFAULT_PREFIX
from kern.errors import ConfigurationError


class PostgresSqlDb(SqlDb):
    """The storage contract on any Postgres ``Engine`` (also the sync face of an async one).

    No URL handling: ``PostgresDb`` checks what users give it, ``AsyncPostgresDb`` runs one
    of these on its engine's ``sync_engine`` inside SQLAlchemy's greenlet bridge.
    """

    backend_name = "postgres"
    dialect_class: ClassVar[type[PostgresDialect]] = PostgresDialect
    # The connection-level classes only: a plain psycopg OperationalError is also a
    # statement timeout, so most faults are told apart in SqlDb (PostgresDialect.unavailable).
    unavailable_errors = UNAVAILABLE_ERRORS

    def storage_target(self) -> str:
        """The URL with its password masked."""
        return pg_engine.shown(self.engine.url)

    @property
    def schema(self) -> str | None:
        return self.tables.runs.schema


def one_location(cls: str, db_url: object, engine: object) -> None:
    if (db_url is None) == (engine is None):
        given = "both" if db_url is not None else "neither"
        raise ConfigurationError(
            f"{cls} needs exactly one of db_url or engine (got {given}): e.g. "
            f"{cls}(db_url='postgresql://user:pass@localhost:5432/app')."
        )


class PostgresDb(PostgresSqlDb):
    """kern's storage in a PostgreSQL database (sync; see ``AsyncPostgresDb`` for async code).

    Give exactly one of ``db_url`` (``postgresql://``, ``postgresql+psycopg://`` or
    ``postgres://``; always run on psycopg 3) or ``engine`` (a SQLAlchemy ``Engine`` on
    ``postgresql+psycopg``, which kern then neither reconfigures nor disposes of).
    ``schema`` puts the tables in that Postgres schema (created on first use if missing;
    default: the connection's current schema, normally ``public``); ``table_prefix``
    prefixes every table name. ``engine_kwargs`` go to ``create_engine`` (pool size...) on
    top of ``pool_pre_ping=True``. Tables, indexes and migrations are applied on first use.
    """

    def __init__(
        self,
        db_url: str | URL | None = None,
        *,
        engine: Engine | None = None,
        schema: str | None = None,
        table_prefix: str = DEFAULT_PREFIX,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        cls = type(self).__name__
        one_location(cls, db_url, engine)
        schema = pg_engine.check_schema(schema)
        if engine is not None:
            target = pg_engine.sync_engine(engine, cls=cls)
        else:
            assert db_url is not None
            target = pg_engine.build_sync_engine(pg_engine.sync_url(db_url, cls=cls), engine_kwargs)
        super().__init__(
            target, table_prefix=table_prefix, schema=schema, owns_engine=engine is None
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(db_url={pg_engine.shown(self.engine.url)!r}, "
            f"schema={self.schema!r}, table_prefix={self.table_prefix!r})"
        )


__all__ = ["PostgresDb", "PostgresSqlDb"]
