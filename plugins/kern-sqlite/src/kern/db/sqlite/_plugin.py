"""Registers the SQLite backend with kern (entry point ``kern: sqlite``)."""

from kern.hookspecs import hookimpl
from kern.plugins import Backend, LearningStoreSpec

SQL_USER_MEMORY = "kern.db.sql.learning:SqlUserMemoryStore"


@hookimpl
def register_backends(register):
    register(
        Backend(
            name="sqlite",
            schemes=("sqlite",),
            async_schemes=("sqlite+aiosqlite",),
            sync="kern.db.sqlite:SqliteDb",
            async_="kern.db.sqlite:AsyncSqliteDb",
        )
    )


@hookimpl
def register_learning_stores(register):
    """sqlite's own user-memory store: a turn's recall reads in one call (lazy: importing
    this module imports no driver)."""
    register(LearningStoreSpec("user_memory", SQL_USER_MEMORY, backend="sqlite"))
