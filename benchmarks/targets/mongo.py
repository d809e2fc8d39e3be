"""MongoDB: ``MongoDb`` against bare pymongo doing the same turn on the same server.

The server is ``KERN_BENCH_MONGO_URL``, else one on ``127.0.0.1:27017``, else a throwaway
``nx-27017`` (the wire-compatible server the tests use, from its own venv
``.kern-test/nx-27017``, installed there if missing) with its data in the benchmark's
scratch folder, stopped at the end. Both sides write to collections of their own (a fresh
database and a fresh name), dropped by name when they close.

The floor keeps what a hand-written Mongo chat store needs: one collection of runs with the
unique ``{session_id, seq}`` index; the history read is one find (newest first, limit n);
an append reads the highest seq and inserts the next (retrying on a duplicate key), with
the default write concern, like kern. kern also reads the session document each turn,
moves its ``updated_at`` on append, and keeps the other collections' indexes.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pymongo import DESCENDING, MongoClient
from pymongo.errors import DuplicateKeyError

from kern.db.mongo import MongoDb

REPO = Path(__file__).resolve().parents[2]
# The nx-27017 launcher is test infrastructure (it installs nx-27017 in its own venv): it
# lives with the Mongo tests, not in the runtime package.
sys.path.insert(0, str(REPO / "plugins" / "kern-mongo" / "tests"))
from nx_server import DEFAULT_URL, NxServer, ensure_nx, reachable  # noqa: E402

NAME = "mongo"
ENV_URL = "KERN_BENCH_MONGO_URL"
NX_VENV = REPO / ".kern-test" / "nx-27017"

#: Servers this module started, by scratch folder.
_servers: dict[Path, NxServer] = {}


def server_url(folder: Path) -> str:
    """The server to measure on (see the module docstring); one per scratch folder."""
    if url := os.environ.get(ENV_URL):
        return url
    if reachable(DEFAULT_URL):
        return DEFAULT_URL
    if folder not in _servers:
        server = NxServer(ensure_nx(NX_VENV), folder / "nx-data")
        server.start()
        _servers[folder] = server
    return _servers[folder].url


def _stop(folder: Path) -> None:
    server = _servers.pop(folder, None)
    if server is not None:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


class _BenchMongoDb(MongoDb):
    def close(self) -> None:
        for collection in self.collections.values():
            collection.drop()
        super().close()


def kern_db(folder: Path) -> MongoDb:
    tag = uuid.uuid4().hex[:8]
    return _BenchMongoDb(
        db_url=server_url(folder), database=f"kern_bench_{tag}", collection_prefix=f"b{tag}_"
    )


class Floor:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.client: MongoClient[Any] = MongoClient(server_url(folder))
        tag = uuid.uuid4().hex[:8]
        self.runs = self.client[f"floor_bench_{tag}"][f"b{tag}_runs"]
        self.runs.create_index([("session_id", 1), ("seq", 1)], unique=True)
        self.count = 0

    def seed(self, session_id: str, prior: int, messages_for: Callable[[int], list[Any]]) -> None:
        docs = [
            {
                "_id": f"{session_id}-r{n}",
                "session_id": session_id,
                "seq": n + 1,
                "input": f"m{n}",
                "messages": messages_for(n),
                "output": "a",
            }
            for n in range(prior)
        ]
        for start in range(0, prior, 1000):
            self.runs.insert_many(docs[start : start + 1000])

    def last_messages(self, session_id: str, n: int) -> list[dict[str, Any]]:
        docs = list(
            self.runs.find({"session_id": {"$eq": session_id}}).sort("seq", DESCENDING).limit(n)
        )
        return [m for doc in reversed(docs) for m in doc["messages"]]

    def append(
        self, session_id: str, user_text: str, messages: list[dict[str, Any]], output: str
    ) -> None:
        self.count += 1
        doc = {
            "_id": f"t{self.count}-{uuid.uuid4().hex[:8]}",
            "session_id": session_id,
            "input": user_text,
            "messages": messages,
            "output": output,
        }
        while True:
            last = self.runs.find_one(
                {"session_id": {"$eq": session_id}},
                {"seq": 1},
                sort=[("seq", DESCENDING)],
            )
            doc["seq"] = (last["seq"] if last else 0) + 1
            try:
                self.runs.insert_one(doc)
                return
            except DuplicateKeyError:
                continue

    def close(self) -> None:
        self.runs.drop()
        self.client.close()
        _stop(self.folder)
