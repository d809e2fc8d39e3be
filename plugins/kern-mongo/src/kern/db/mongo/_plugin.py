"""Registers the mongo backend with kern (entry point ``kern: mongo``)."""

from collections.abc import Callable

from kern.hookspecs import hookimpl
from kern.plugins import Backend


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    register(
        Backend(
            name="mongo",
            schemes=("mongodb", "mongodb+srv"),
            async_schemes=(),
            sync="kern.db.mongo:MongoDb",
            async_="kern.db.mongo:AsyncMongoDb",
        )
    )
