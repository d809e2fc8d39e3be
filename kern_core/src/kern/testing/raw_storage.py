"""What a first-party backend stores, read without kern: for tests that must see the bytes.

``raw_dump(backend, url)`` reads every table, collection or key of the database at ``url``
with the backend's own driver (SQL ``SELECT *`` over every table, pymongo ``find`` over every
collection, Redis ``SCAN`` and a read by type of every key; for SQLite the file and its WAL
too) and returns it all as one text. The encryption tests assert that no plaintext is in it.
"""

from __future__ import annotations

import sqlite3
from typing import Any


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def raw_dump(backend: str, url: str, *, files: bool = True) -> str:
    """Everything the backend stores, as text, read without kern. ``files=False`` leaves out
    SQLite's file bytes (free pages keep what an update replaced until a VACUUM)."""
    readers = {
        "sqlite": lambda: _sqlite(url, files),
        "duckdb": lambda: _duckdb(url),
        "postgres": lambda: _postgres(url),
        "mongo": lambda: _mongo(url),
        "redis": lambda: _redis(url),
    }
    if backend not in readers:
        raise ValueError(f"raw_dump reads {', '.join(readers)}, not {backend!r}")
    return "\n".join(readers[backend]())


def _sqlite(url: str, files: bool) -> list[str]:
    parts: list[str] = []
    path = url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path)
    try:
        query = "SELECT name FROM sqlite_master WHERE type='table'"
        for (table,) in conn.execute(query).fetchall():
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                parts.extend(_text(value) for value in row)
    finally:
        conn.close()
    # the file itself, WAL included, for anything outside a table (FTS segments...)
    for suffix in ("", "-wal") if files else ():
        try:
            with open(path + suffix, "rb") as handle:
                parts.append(_text(handle.read()))
        except FileNotFoundError:
            pass
    return parts


def _duckdb(url: str) -> list[str]:
    import duckdb

    parts: list[str] = []
    with duckdb.connect(url.removeprefix("duckdb:///"), read_only=True) as conn:
        query = "SELECT table_schema, table_name FROM information_schema.tables"
        for schema, table in conn.execute(query).fetchall():
            for row in conn.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall():
                parts.extend(_text(value) for value in row)
    return parts


def _postgres(url: str) -> list[str]:
    import sqlalchemy as sa

    parts: list[str] = []
    engine = sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg"))
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                sa.text(
                    "SELECT table_schema, table_name FROM information_schema.tables "
                    "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
                )
            ).fetchall()
            for schema, table in tables:
                rows = conn.execute(sa.text(f'SELECT t::text FROM "{schema}"."{table}" t'))
                parts.extend(_text(row[0]) for row in rows)
    finally:
        engine.dispose()
    return parts


def _mongo(url: str) -> list[str]:
    from pymongo import MongoClient

    parts: list[str] = []
    client: MongoClient[dict[str, Any]] = MongoClient(url)
    with client:
        database = client.get_default_database()
        for name in database.list_collection_names():
            parts.extend(repr(document) for document in database[name].find())
    return parts


def _redis(url: str) -> list[str]:
    import redis

    parts: list[str] = []
    client: Any = redis.Redis.from_url(url)
    with client:
        for key in client.scan_iter(count=1000):
            kind = _text(client.type(key))
            parts.append(_text(key))
            if kind == "string":
                parts.append(_text(client.get(key)))
            elif kind == "hash":
                parts.extend(_text(k) + _text(v) for k, v in client.hgetall(key).items())
            elif kind == "list":
                parts.extend(_text(v) for v in client.lrange(key, 0, -1))
            elif kind == "set":
                parts.extend(_text(v) for v in client.smembers(key))
            elif kind == "zset":
                parts.extend(_text(v) for v, _ in client.zrange(key, 0, -1, withscores=True))
            elif kind == "stream":
                parts.extend(repr(entry) for entry in client.xrange(key))
            else:
                parts.append(repr(client.dump(key)))
    return parts


__all__ = ["raw_dump"]
