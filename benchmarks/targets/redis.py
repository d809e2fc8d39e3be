"""Redis: ``RedisDb`` against bare redis-py doing the same turn on the same server.

The server is ``KERN_BENCH_REDIS_URL``, else one on ``127.0.0.1:6379``, else a
``redis-server`` started in the benchmark's scratch folder (stopped at the end). Both sides
write under their own fresh key prefix, removed when they close.

The floor keeps what a hand-written Redis chat store needs: per session a hash run -> JSON,
a sorted set of runs by seq and a counter; an append is one Lua script (INCR, HSET, ZADD),
the history read one more (ZREVRANGE, HMGET). kern also keeps the session row, per-status
and top-level seq indexes, the run-id claim and the user's indexes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from kern.db.redis import RedisDb

NAME = "redis"
ENV_URL = "KERN_BENCH_REDIS_URL"
DEFAULT_URL = "redis://127.0.0.1:6379/0"

APPEND = """
local seq = redis.call('INCR', KEYS[1] .. 'seq')
redis.call('HSET', KEYS[1] .. 'runs', ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1] .. 'by_seq', seq, ARGV[1])
return seq
"""
LAST = """
local ids = redis.call('ZREVRANGE', KEYS[1] .. 'by_seq', 0, tonumber(ARGV[1]) - 1)
if #ids == 0 then return {} end
return redis.call('HMGET', KEYS[1] .. 'runs', unpack(ids))
"""

#: Servers this module started, by scratch folder: (process, URL).
_servers: dict[Path, tuple[subprocess.Popen[bytes], str]] = {}


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def server_url(folder: Path) -> str:
    """The server to measure on (see the module docstring); one per scratch folder."""
    if url := os.environ.get(ENV_URL):
        return url
    if _answers(DEFAULT_URL):
        return DEFAULT_URL
    if folder in _servers:
        return _servers[folder][1]
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit(f"no Redis server: start one, set {ENV_URL}, or install redis-server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    _servers[folder] = (subprocess.Popen([*args, "--dir", str(folder)]), url)
    while not _answers(url):
        time.sleep(0.05)
    return url


def _drop(client: redis.Redis, prefix: str) -> None:
    """Remove the benchmark's keys (clean-up only: kern itself never scans)."""
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])


class _BenchRedisDb(RedisDb):
    def close(self) -> None:
        client = redis.Redis.from_url(self._bench_url)
        try:
            _drop(client, self.key_prefix)
        finally:
            client.close()
        super().close()


def kern_db(folder: Path) -> RedisDb:
    url = server_url(folder)
    db = _BenchRedisDb(db_url=url, key_prefix=f"kern-bench-{uuid.uuid4().hex[:8]}:")
    db._bench_url = url  # type: ignore[attr-defined]
    return db


class Floor:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.client = redis.Redis.from_url(server_url(folder))
        self.prefix = f"floor-bench-{uuid.uuid4().hex[:8]}:"
        self.append_script = self.client.register_script(APPEND)
        self.last_script = self.client.register_script(LAST)
        self.count = 0

    def _base(self, session_id: str) -> str:
        return f"{self.prefix}{{{session_id}}}:"

    def seed(self, session_id: str, prior: int, messages_for: Callable[[int], list[Any]]) -> None:
        base = self._base(session_id)
        pipe = self.client.pipeline(transaction=False)
        for n in range(prior):
            run = {"run_id": f"r{n}", "input": f"m{n}", "messages": messages_for(n)}
            self.append_script(keys=[base], args=[f"r{n}", json.dumps(run)], client=pipe)
            if n % 1000 == 999:
                pipe.execute()
        pipe.execute()

    def last_messages(self, session_id: str, n: int) -> list[dict[str, Any]]:
        raws = self.last_script(keys=[self._base(session_id)], args=[n])
        return [m for raw in reversed(raws) for m in json.loads(raw)["messages"]]

    def append(
        self, session_id: str, user_text: str, messages: list[dict[str, Any]], output: str
    ) -> None:
        self.count += 1
        run_id = f"t{self.count}"
        run = {"run_id": run_id, "input": user_text, "messages": messages, "output": output}
        self.append_script(keys=[self._base(session_id)], args=[run_id, json.dumps(run)])

    def close(self) -> None:
        _drop(self.client, self.prefix)
        self.client.close()
        started = _servers.pop(self.folder, None)
        if started is not None:
            started[0].terminate()
            started[0].wait(timeout=10)
