"""What the Mongo server did and holds, read beside kern: a command counter, ``explain``,
and the raw documents.

``CommandCounter`` is a ``pymongo.monitoring.CommandListener``: it counts the commands a
block of code sends, the documents the server returns, and (``examined``) the keys and
documents the server reports examining for each ``find``, where the server reports it
(MongoDB does, in ``explain``; nx-27017 reports zero). Test helpers: they moved here from
the runtime package (``kern.db.mongo.testing``) with the server launcher (``nx_server``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pymongo import MongoClient, monitoring


@dataclass
class Tally:
    """What one counted block sent and got back."""

    commands: list[str] = field(default_factory=list)
    documents_returned: int = 0
    #: The ``find`` commands sent, as sent (for ``examined``).
    finds: list[dict[str, Any]] = field(default_factory=list)
    #: Every document lookup the server had to make, as a ``find`` command: the finds, and
    #: the filters of ``update``, ``delete`` and ``findAndModify`` (for ``explain_find``).
    lookups: list[dict[str, Any]] = field(default_factory=list)


def _returned(reply: Any) -> int:
    cursor = reply.get("cursor") if hasattr(reply, "get") else None
    if isinstance(cursor, dict):
        return len(cursor.get("firstBatch", cursor.get("nextBatch", [])))
    value = reply.get("value") if hasattr(reply, "get") else None
    return 1 if isinstance(value, dict) else 0


def _lookups(name: str, command: Any) -> list[dict[str, Any]]:
    collection = command.get(name)
    if name == "find":
        return [dict(command)]
    if name == "findAndModify":
        return [{"find": collection, "filter": command.get("query", {})}]
    if name in ("update", "delete"):
        key = "updates" if name == "update" else "deletes"
        return [{"find": collection, "filter": op.get("q", {})} for op in command.get(key, [])]
    return []


class CommandCounter(monitoring.CommandListener):
    """Counts, per database, the commands sent while ``counting(database)`` is open.

    Register it before clients are created (``pymongo.monitoring.register(counter)``):
    pymongo hands listeners to clients when they are built.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, Tally] = {}
        self._pending: dict[int, Tally] = {}

    @contextlib.contextmanager
    def counting(self, database: str) -> Iterator[Tally]:
        tally = Tally()
        with self._lock:
            self._active[database] = tally
        try:
            yield tally
        finally:
            with self._lock:
                self._active.pop(database, None)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            tally = self._active.get(event.database_name)
            if tally is None:
                return
            tally.commands.append(event.command_name)
            command = event.command
            if event.command_name == "find":
                tally.finds.append(dict(command))
            tally.lookups.extend(_lookups(event.command_name, command))
            self._pending[event.request_id] = tally

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        with self._lock:
            tally = self._pending.pop(event.request_id, None)
            if tally is not None:
                tally.documents_returned += _returned(event.reply)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        with self._lock:
            self._pending.pop(event.request_id, None)


def explain_find(client: MongoClient[Any], database: str, find: dict[str, Any]) -> dict[str, Any]:
    """The server's ``explain`` (executionStats) of a ``find`` command as it was sent."""
    keep = ("find", "filter", "sort", "projection", "skip", "limit", "hint")
    command = {key: find[key] for key in keep if key in find}
    return client[database].command({"explain": command, "verbosity": "executionStats"})


def examined(client: MongoClient[Any], database: str, finds: list[dict[str, Any]]) -> int:
    """Keys plus documents the server reports examining for ``finds`` (0 if it does not say)."""
    total = 0
    for find in finds:
        stats = explain_find(client, database, find).get("executionStats", {})
        total += int(stats.get("totalKeysExamined", 0)) + int(stats.get("totalDocsExamined", 0))
    return total


def plan_uses_index(explained: dict[str, Any]) -> bool:
    """True if the winning plan reads through an index and never scans the collection.

    MongoDB names plan stages (``IXSCAN``, ``COLLSCAN``); nx-27017 reports SQLite's query
    plan (``SEARCH t USING INDEX …``, ``SCAN t``).
    """
    plan = explained.get("queryPlanner", {}).get("winningPlan")
    text = repr(plan)
    if "COLLSCAN" in text:
        return False
    if isinstance(plan, list):  # SQLite's plan, line by line
        details = [str(step.get("detail", "")) for step in plan if isinstance(step, dict)]
        main = [d for d in details if d.startswith(("SCAN", "SEARCH")) and "json_each" not in d]
        return bool(main) and all(d.startswith("SEARCH") and "INDEX" in d for d in main)
    return "IXSCAN" in text or "IDHACK" in text or "EXPRESS" in text


def raw_documents(client: MongoClient[Any], database: str, prefix: str) -> list[str]:
    """Every document of every collection of ``database`` whose name starts with ``prefix``
    (kern's collections, all of them), as ``"<collection>: <document>"``, read with pymongo
    and not through kern: for checking that data is gone (``forget_user``), pending-commit
    markers included. Give a sync ``MongoClient``, also for an ``AsyncMongoDb``'s data."""
    db = client[database]
    return [
        f"{name}: {doc!r}"
        for name in sorted(db.list_collection_names())
        if name.startswith(prefix)
        for doc in db[name].find({})
    ]


_counter: CommandCounter | None = None
_counter_lock = threading.Lock()


def shared_counter() -> CommandCounter:
    """This process's ``CommandCounter``, registered with pymongo on first call.

    Call it before creating the clients it should see (a conftest's import time).
    """
    global _counter
    with _counter_lock:
        if _counter is None:
            _counter = CommandCounter()
            monitoring.register(_counter)
        return _counter
