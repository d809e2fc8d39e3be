"""Registers the postgres backend with kern (entry point ``kern: postgres``)."""

from kern.hookspecs import hookimpl
from kern.plugins import Backend


@hookimpl
def register_backends(register):
    register(
        Backend(
            name="postgres",
            schemes=("postgresql", "postgres", "postgresql+psycopg"),
            async_schemes=("postgresql+psycopg_async",),
            sync="kern.db.postgres:PostgresDb",
            async_="kern.db.postgres:AsyncPostgresDb",
        )
    )
