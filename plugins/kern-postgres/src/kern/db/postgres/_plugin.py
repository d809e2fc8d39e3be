"""Registers the postgres backend with kern (entry point ``kern: postgres``)."""

from kern.hookspecs import hookimpl
from kern.plugins import Backend, LearningStoreSpec

SQL_USER_MEMORY = "kern.db.sql.learning:SqlUserMemoryStore"


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


@hookimpl
def register_learning_stores(register):
    """postgres's own user-memory store: a turn's recall reads in one call (lazy: importing
    this module imports no driver)."""
    register(LearningStoreSpec("user_memory", SQL_USER_MEMORY, backend="postgres"))
