"""What every request of one console shares: the database, the learning machine, the keys.

The database is an async Db (``kern.db.connect(url, is_async=True)``), so one process
serves many requests at once. Given a URL, it is opened inside the server's event loop
(async drivers bind to the loop they first run on) and closed when the server stops; a Db
passed in stays the caller's to close. The console takes the URL every kern command takes:
a sync URL of a backend whose async class wants a scheme of its own
(``postgresql://`` for ``postgresql+psycopg_async://``) is given that scheme.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from starlette.requests import Request

from kern.console.auth import Keys
from kern.db.base import AsyncBaseDb
from kern.db.registry import connect, scheme_of
from kern.errors import SyncAsyncMismatchError
from kern.learn.machine import LearningMachine
from kern.plugins import registry

if TYPE_CHECKING:
    from fastapi import FastAPI

#: What a change in read-only mode is answered with.
READ_ONLY_MESSAGE = (
    "the console is read-only (kern serve --read-only): nothing can be changed; "
    "restart it without --read-only to approve, reject or forget"
)


class Console:
    """One console: its database (opened once, shared), keys and mode."""

    def __init__(
        self,
        *,
        keys: Keys,
        db: AsyncBaseDb | None = None,
        url: str | None = None,
        read_only: bool = False,
    ) -> None:
        if (db is None) == (url is None):
            raise ValueError("give the console a db or a url, not both and not neither")
        if db is not None and not db.is_async:
            raise TypeError(
                f"the console needs an async db, not {type(db).__name__}: "
                "kern.db.connect(url, is_async=True) builds one"
            )
        self.keys = keys
        self.read_only = read_only
        self._db = db
        self._url = url
        self._owns_db = db is None
        self._machine: LearningMachine | None = None
        self._lock = asyncio.Lock()

    async def db(self) -> AsyncBaseDb:
        """The shared async Db, opened on first use."""
        if self._db is None:
            async with self._lock:
                if self._db is None:
                    assert self._url is not None
                    self._db = open_async(self._url)
        assert self._db is not None
        return self._db

    async def machine(self) -> LearningMachine:
        """A learning machine on the db: the ranking recall uses, approve and reject."""
        if self._machine is None:
            self._machine = LearningMachine(db=await self.db())
        return self._machine

    async def aclose(self) -> None:
        """Close the db if the console opened it."""
        if self._db is not None and self._owns_db:
            db, self._db, self._machine = self._db, None, None
            await db.close()


def open_async(url: str) -> AsyncBaseDb:
    """The async Db of ``url``, given the backend's async scheme if it needs one."""
    try:
        db: AsyncBaseDb = connect(url, is_async=True)
        return db
    except SyncAsyncMismatchError:
        entry = registry().schemes.get(scheme_of(url))
        if entry is None or not entry[0].async_schemes:
            raise
        async_url = f"{entry[0].async_schemes[0]}://{url.partition('://')[2]}"
        db = connect(async_url, is_async=True)
        return db


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def attach(app: FastAPI, console: Console) -> None:
    app.state.console = console
