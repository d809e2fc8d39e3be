"""Registers the duckdb backend with kern (entry point ``kern: duckdb``)."""

from kern.hookspecs import hookimpl
from kern.plugins import Backend


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
