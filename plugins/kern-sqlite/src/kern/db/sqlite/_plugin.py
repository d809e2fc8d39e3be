"""Registers the SQLite backend with kern (entry point ``kern: sqlite``)."""

from collections.abc import Callable

from kern.hookspecs import hookimpl
from kern.plugins import Backend, LearningStoreSpec

ONE_CALL_MEMORY = "kern.learn.stores:OneCallUserMemoryStore"


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
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
def register_learning_stores(register: Callable[[LearningStoreSpec], None]) -> None:
    """sqlite's own user-memory store: a turn's recall reads its memories on one
    connection (lazy: importing this module imports no driver)."""
    register(LearningStoreSpec("user_memory", ONE_CALL_MEMORY, backend="sqlite"))
