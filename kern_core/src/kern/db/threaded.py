"""An async twin for a sync backend: each call runs in a worker thread.

Embedded databases (SQLite, DuckDB) have no async driver worth having; running their sync
calls in ``asyncio.to_thread`` keeps the event loop free, which is all "async" has to mean.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

from kern.db.base import AsyncBaseDb, BaseDb


def offloaded(name: str, sync_class: type = BaseDb) -> Callable[..., Any]:
    """An async method running ``sync_db.<name>`` in a worker thread; subclasses use it
    for their sync class's methods beyond the contract (documented there)."""

    async def method(self: ThreadedAsyncDb, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self.sync_db, name), *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = getattr(sync_class, name).__doc__
    return method


class ThreadedAsyncDb(AsyncBaseDb):
    """Wraps a ``BaseDb``; subclasses set ``sync_class`` and pass its constructor arguments.

    ``sync_db`` is the wrapped instance, for code that needs the sync object itself.
    """

    sync_class: ClassVar[type[BaseDb]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sync_db: BaseDb = self.sync_class(*args, **kwargs)
        self.backend_name = self.sync_class.backend_name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sync_db!r})"


for _name in sorted(AsyncBaseDb.__abstractmethods__):
    setattr(ThreadedAsyncDb, _name, offloaded(_name))
ThreadedAsyncDb.__abstractmethods__ = frozenset()
del _name
