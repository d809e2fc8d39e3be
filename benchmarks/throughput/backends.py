"""Per backend: kern's async Db and the async floor, the raw async driver doing the same work.

Each floor is the async twin of the sync one in ``benchmarks/targets/<backend>.py`` (same
tables, indexes, statements and durability; its constants are imported from there), with
the connection handling a careful async program would use, sized like kern's own default:

- Postgres: psycopg's ``AsyncConnection``, at most 15 connections (kern's SQLAlchemy async
  engine defaults to a pool of 5 plus 10 overflow), each read autocommitted, each append
  BEGIN / advisory lock / ``max(seq)+1`` / INSERT / COMMIT;
- Redis: ``redis.asyncio`` with at most 50 calls on the wire (kern's ``max_connections``);
- MongoDB: pymongo's ``AsyncMongoClient`` with its default pool;
- SQLite: ``sqlite3`` in ``asyncio.to_thread`` (as ``AsyncSqliteDb`` runs), a connection per
  worker thread, WAL, ``synchronous=NORMAL``, kern's busy timeout, BEGIN IMMEDIATE appends.

``open_backend(name, folder)`` gives both sides on fresh tables (schemas, key prefixes or
collections of their own), and ``Backend.close`` removes them.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psycopg
import redis.asyncio as aioredis
from pymongo import DESCENDING, AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from kern.db.base import AsyncBaseDb

BACKENDS = ("sqlite", "postgres", "redis", "mongo")
#: Connections kern's async Postgres engine may hold by default (pool 5 + overflow 10).
POSTGRES_CONNECTIONS = 15
#: Calls ``AsyncRedisDb`` keeps on the wire at once by default.
REDIS_CALLS = 50
#: kern's SQLite busy timeout (``kern.db.sqlite.engine.BUSY_TIMEOUT_S``).
SQLITE_BUSY_S = 30.0


class Floor(Protocol):
    """The floor's storage work for one turn: read the last runs, append the new one."""

    async def last_messages(self, session_id: str, n: int) -> list[dict[str, Any]]: ...

    async def append(
        self, session_id: str, user_text: str, messages: list[dict[str, Any]], output: str
    ) -> None: ...


@dataclass
class Backend:
    """kern's db and the floor on one server; ``close`` drops what both created."""

    name: str
    kern: AsyncBaseDb
    floor: Floor
    #: Where Agno's side stores (``benchmarks/agno_side``): a URL, or a folder for SQLite.
    agno_target: str
    cleanup: Callable[[], Awaitable[None]]

    async def close(self) -> None:
        await self.kern.close()
        await self.cleanup()


# --------------------------------------------------------------------------- Postgres


class PostgresFloor:
    def __init__(self, conninfo: str, table_sql: Any) -> None:
        self.conninfo = conninfo
        self.sql = table_sql
        self.idle: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
        self.opened = 0
        self.count = 0

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection: an idle one, a new one below the limit, else the next back."""
        if not self.idle.empty():
            conn = self.idle.get_nowait()
        elif self.opened < POSTGRES_CONNECTIONS:
            self.opened += 1
            conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        else:
            conn = await self.idle.get()
        try:
            yield conn
        finally:
            self.idle.put_nowait(conn)

    async def last_messages(self, session_id: str, n: int) -> list[dict[str, Any]]:
        async with self.connection() as conn:
            cursor = await conn.execute(self.sql.LAST, (session_id, n))
            rows = await cursor.fetchall()
        return [m for (messages,) in reversed(rows) for m in messages]

    async def append(
        self, session_id: str, user_text: str, messages: list[dict[str, Any]], output: str
    ) -> None:
        self.count += 1
        async with self.connection() as conn:
            await conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            await conn.execute(self.sql.LOCK, (session_id,))
            cursor = await conn.execute(self.sql.NEXT, (session_id,))
            (seq,) = await cursor.fetchone()  # type: ignore[misc]
            row = (
                f"t{self.count}-{uuid.uuid4().hex}",
                session_id,
                seq,
                json.dumps(user_text),
                json.dumps(messages),
                json.dumps(output),
            )
            await conn.execute(self.sql.INSERT, row)
            await conn.execute("COMMIT")

    async def close(self) -> None:
        while not self.idle.empty():
            await self.idle.get_nowait().close()


async def _postgres(folder: Path, engine_kwargs: dict[str, Any] | None = None) -> Backend:
    from targets import postgres as sync

    from kern.db.postgres import AsyncPostgresDb

    conninfo = sync.conninfo()
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute(sync.DDL)  # type: ignore[arg-type]
    floor = PostgresFloor(conninfo, sync)
    kern = AsyncPostgresDb(
        db_url=sync.URL.set(drivername="postgresql+psycopg_async"),
        schema=sync.SCHEMA,
        engine_kwargs=engine_kwargs,
    )
    agno_schema = f"{sync.SCHEMA}_agno"

    async def cleanup() -> None:
        await floor.close()
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            for schema in (sync.FLOOR_SCHEMA, sync.SCHEMA, agno_schema):
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")  # type: ignore[arg-type]

    agno_url = sync.URL.set(drivername="postgresql+psycopg_async").render_as_string(
        hide_password=False
    )
    return Backend("postgres", kern, floor, f"{agno_url}#{agno_schema}", cleanup)


# --------------------------------------------------------------------------- Redis


class RedisFloor:
    def __init__(self, url: str, prefix: str, scripts: Any) -> None:
        self.client = aioredis.Redis.from_url(url, max_connections=REDIS_CALLS)
        self.slots = asyncio.Semaphore(REDIS_CALLS)
        self.prefix = prefix
        self.append_script = self.client.register_script(scripts.APPEND)
        self.last_script = self.client.register_script(scripts.LAST)
        self.count = 0

    def _base(self, session_id: str) -> str:
        return f"{self.prefix}{{{session_id}}}:"

    async def last_messages(self, session_id: str, n: int) -> list[dict[str, Any]]:
        async with self.slots:
            raws = await self.last_script(keys=[self._base(session_id)], args=[n])
        return [m for raw in reversed(raws) for m in json.loads(raw)["messages"]]

    async def append(
        self, session_id: str, user_text: str, messages: list[dict[str, Any]], output: str
    ) -> None:
        self.count += 1
        run_id = f"t{self.count}"
        run = {"run_id": run_id, "input": user_text, "messages": messages, "output": output}
        async with self.slots:
            await self.append_script(keys=[self._base(session_id)], args=[run_id, json.dumps(run)])


async def _drop_keys(client: aioredis.Redis, prefix: str) -> None:
    """Remove a side's keys (clean-up only)."""
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
    for start in range(0, len(keys), 500):
        await client.delete(*keys[start : start + 500])


async def _redis(folder: Path) -> Backend:
    from targets import redis as sync

    from kern.db.redis import AsyncRedisDb

    url = sync.server_url(folder)
    tag = uuid.uuid4().hex[:8]
    prefixes = (f"kern-bench-{tag}:", f"floor-bench-{tag}:", f"agno-bench-{tag}")
    kern = AsyncRedisDb(db_url=url, key_prefix=prefixes[0])
    floor = RedisFloor(url, prefixes[1], sync)

    async def cleanup() -> None:
        for prefix in prefixes:
            await _drop_keys(floor.client, prefix)
        await floor.client.aclose()
        started = sync._servers.pop(folder, None)
        if started is not None:
            started[0].terminate()
            started[0].wait(timeout=10)

    return Backend("redis", kern, floor, f"{url}#{prefixes[2]}", cleanup)


# --------------------------------------------------------------------------- MongoDB


class MongoFloor:
    def __init__(self, url: str, database: str) -> None:
        self.client: AsyncMongoClient[Any] = AsyncMongoClient(url)
        self.runs = self.client[database]["runs"]
        self.count = 0

    async def last_messages(self, session_id: str, n: int) -> list[dict[str, Any]]:
        cursor = self.runs.find({"session_id": {"$eq": session_id}}).sort("seq", DESCENDING)
        docs = await cursor.limit(n).to_list()
        return [m for doc in reversed(docs) for m in doc["messages"]]

    async def append(
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
            last = await self.runs.find_one(
                {"session_id": {"$eq": session_id}}, {"seq": 1}, sort=[("seq", DESCENDING)]
            )
            doc["seq"] = (last["seq"] if last else 0) + 1
            try:
                await self.runs.insert_one(doc)
                return
            except DuplicateKeyError:
                continue


async def _mongo(folder: Path) -> Backend:
    from targets import mongo as sync

    from kern.db.mongo import AsyncMongoDb

    url = sync.server_url(folder)
    tag = uuid.uuid4().hex[:8]
    databases = (f"kern_bench_{tag}", f"floor_bench_{tag}", f"agno_bench_{tag}")
    kern = AsyncMongoDb(db_url=url, database=databases[0], collection_prefix=f"b{tag}_")
    floor = MongoFloor(url, databases[1])
    await floor.runs.create_index([("session_id", 1), ("seq", 1)], unique=True)

    async def cleanup() -> None:
        for database in databases:
            await floor.client.drop_database(database)
        await floor.client.close()
        sync._stop(folder)

    return Backend("mongo", kern, floor, f"{url}#{databases[2]}", cleanup)


# --------------------------------------------------------------------------- SQLite


class SqliteFloor:
    def __init__(self, path: Path, sql: Any) -> None:
        self.path = path
        self.sql = sql
        self.local = threading.local()
        self.lock = threading.Lock()
        self.connections: list[sqlite3.Connection] = []
        self.count = 0
        self._conn().execute(sql.SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        """This worker thread's connection, opened with kern's pragmas on first use."""
        conn: sqlite3.Connection | None = getattr(self.local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=SQLITE_BUSY_S, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self.local.conn = conn
            with self.lock:
                self.connections.append(conn)
        return conn

    def _last(self, session_id: str, n: int) -> list[dict[str, Any]]:
        rows = (
            self._conn()
            .execute(
                "SELECT messages FROM runs WHERE session_id = ? ORDER BY seq DESC LIMIT ?",
                (session_id, n),
            )
            .fetchall()
        )
        return [m for (raw,) in reversed(rows) for m in json.loads(raw)]

    def _append(
        self, session_id: str, user_text: str, messages: list[dict[str, Any]], output: str
    ) -> None:
        messages_json = json.dumps(messages)
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            (last,) = conn.execute(
                "SELECT coalesce(max(seq), 0) FROM runs WHERE session_id = ?", (session_id,)
            ).fetchone()
            with self.lock:
                self.count += 1
                run_id = f"t{self.count}"
            row = (session_id, last + 1, run_id, user_text, messages_json, output)
            conn.execute(self.sql.INSERT, row)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def last_messages(self, session_id: str, n: int) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._last, session_id, n)

    async def append(
        self, session_id: str, user_text: str, messages: list[dict[str, Any]], output: str
    ) -> None:
        await asyncio.to_thread(self._append, session_id, user_text, messages, output)

    def close(self) -> None:
        with self.lock:
            for conn in self.connections:
                conn.close()
            self.connections.clear()


async def _sqlite(folder: Path) -> Backend:
    from targets import sqlite as sync

    from kern.db.sqlite import AsyncSqliteDb

    kern = AsyncSqliteDb(db_file=folder / "kern.db")
    floor = SqliteFloor(folder / "floor.db", sync)
    agno_folder = folder / "agno"
    agno_folder.mkdir()

    async def cleanup() -> None:
        floor.close()

    return Backend("sqlite", kern, floor, str(agno_folder), cleanup)


OPENERS: dict[str, Callable[[Path], Awaitable[Backend]]] = {
    "sqlite": _sqlite,
    "redis": _redis,
    "mongo": _mongo,
}


async def open_backend(
    name: str, folder: Path, postgres_engine_kwargs: dict[str, Any] | None = None
) -> Backend:
    """kern's async db and the floor for ``name``, on fresh tables under ``folder``;
    ``postgres_engine_kwargs`` go to ``AsyncPostgresDb`` (kern's defaults without them)."""
    if name == "postgres":
        return await _postgres(folder, postgres_engine_kwargs)
    return await OPENERS[name](folder)
