"""Registers the duckdb backend with kern (entry point ``kern: duckdb``)."""

from kern.hookspecs import hookimpl
from kern.plugins import Backend, LearningStoreSpec

SQL_USER_MEMORY = "kern.db.sql.learning:SqlUserMemoryStore"


@hookimpl
def register_backends(register):
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
def register_learning_stores(register):
    """duckdb's own user-memory store: a turn's recall reads in one call (lazy: importing
    this module imports no driver)."""
    register(LearningStoreSpec("user_memory", SQL_USER_MEMORY, backend="duckdb"))
