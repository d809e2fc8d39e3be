"""Registers the postgres backend with kern (entry point ``kern: postgres``)."""

from collections.abc import Callable

from kern.hookspecs import hookimpl
from kern.plugins import Backend, LearningStoreSpec

ONE_CALL_MEMORY = "kern.learn.stores:OneCallUserMemoryStore"


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
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
def register_learning_stores(register: Callable[[LearningStoreSpec], None]) -> None:
    """postgres's own user-memory store: a turn's recall reads its memories on one
    connection (lazy: importing this module imports no driver)."""
    register(LearningStoreSpec("user_memory", ONE_CALL_MEMORY, backend="postgres"))
