"""Per-session locks inside one process, so that a db object's own appends take turns.

Correctness never depends on them: the unique ``{session_id, seq}`` index decides between
writers of every process. They only spare the writers of one process from racing each
other for the same seq (40 threads appending to one session would otherwise retry about
40 x 40 / 2 times). A lock exists only while someone holds or awaits it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager


class KeyedLocks:
    """One ``threading.Lock`` per key, for threads."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, list[int]]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.setdefault(key, (threading.Lock(), [0]))
            users[0] += 1
        try:
            with lock:
                yield
        finally:
            with self._guard:
                users[0] -= 1
                if not users[0]:
                    del self._locks[key]


class AsyncKeyedLocks:
    """One ``asyncio.Lock`` per key, for the tasks of one event loop."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]
