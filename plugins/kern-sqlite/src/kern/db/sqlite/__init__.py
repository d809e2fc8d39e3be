"""SQLite storage for kern, the embedded default: ``SqliteDb`` and ``AsyncSqliteDb``."""

from kern.db.sqlite.db import AsyncSqliteDb, SqliteDb

__all__ = ["AsyncSqliteDb", "SqliteDb"]
