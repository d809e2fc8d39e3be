"""Registers the duckdb backend with kern (entry point ``kern: duckdb``)."""

from collections.abc import Callable

from kern.hookspecs import hookimpl
from kern.plugins import Backend, LearningStoreSpec

ONE_CALL_MEMORY = "kern.learn.stores:OneCallUserMemoryStore"


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    register(
        Backend(
            name="duckdb",
            schemes=("duckdb",),
            async_schemes=(),
            sync="kern.db.duckdb:DuckDb",
            async_="kern.db.duckdb:AsyncDuckDb",
        )
    )


@hookimpl
def register_learning_stores(register: Callable[[LearningStoreSpec], None]) -> None:
    """duckdb's own user-memory store: a turn's recall reads its memories on one
    connection (lazy: importing this module imports no driver)."""
    register(LearningStoreSpec("user_memory", ONE_CALL_MEMORY, backend="duckdb"))
