"""An async twin for a sync backend: each call runs in a worker thread."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, ParamSpec, TypeVar

from kern.db.base import BaseDb
from kern.db.delegated import SyncBackedAsyncDb

P = ParamSpec("P")
R = TypeVar("R")


class ThreadedAsyncDb(SyncBackedAsyncDb):
    """An async twin for a sync backend: each call runs in a worker thread.

    Embedded databases (SQLite, DuckDB) have no async driver worth having; running their
    sync calls in ``asyncio.to_thread`` keeps the event loop free, which is all "async" has
    to mean. Subclasses set ``sync_class``; the constructor takes its arguments.
    """

    sync_class: ClassVar[type[BaseDb]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "sync_class" in vars(cls):
            cls.backend_name = cls.sync_class.backend_name

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sync_db = self.sync_class(*args, **kwargs)

    def _call(self, method: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
        return asyncio.to_thread(method, *args, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sync_db!r})"


__all__ = ["ThreadedAsyncDb"]
