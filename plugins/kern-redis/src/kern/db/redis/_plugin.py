"""Registers the redis backend with kern (entry point ``kern: redis``)."""

from kern.hookspecs import hookimpl
from kern.plugins import Backend


@hookimpl
def register_backends(register):
    register(
        Backend(
            name="redis",
            schemes=("redis", "rediss"),
            async_schemes=(),
            sync="kern.db.redis:RedisDb",
            async_="kern.db.redis:AsyncRedisDb",
        )
    )
