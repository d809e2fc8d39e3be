"""Registers the SQLite backend with kern (entry point ``kern: sqlite``)."""

from kern.hookspecs import hookimpl
from kern.plugins import Backend


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
