"""Registers the redis backend with kern (entry point ``kern: redis``)."""

from collections.abc import Callable

from kern.hookspecs import hookimpl
from kern.plugins import Backend, LearningStoreSpec

ONE_CALL_MEMORY = "kern.learn.stores:OneCallUserMemoryStore"


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    register(
        Backend(
            name="redis",
            schemes=("redis", "rediss"),
            async_schemes=(),
            sync="kern.db.redis:RedisDb",
            async_="kern.db.redis:AsyncRedisDb",
        )
    )


@hookimpl
def register_learning_stores(register: Callable[[LearningStoreSpec], None]) -> None:
    """redis's own user-memory store: a turn's recall pipelines its two reads together
    (lazy: importing this module imports no driver)."""
    register(LearningStoreSpec("user_memory", ONE_CALL_MEMORY, backend="redis"))
