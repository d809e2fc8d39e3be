"""SQLite storage for kern, the embedded default: ``SqliteDb`` and ``AsyncSqliteDb``.

The classes are imported on first use, so loading the plugin does not import the driver.
"""

from typing import TYPE_CHECKING

from kern.plugins import lazy_exports

if TYPE_CHECKING:
    from kern.db.sqlite.db import AsyncSqliteDb, SqliteDb

__all__ = ["AsyncSqliteDb", "SqliteDb"]
__getattr__ = lazy_exports(__name__, dict.fromkeys(__all__, "kern.db.sqlite.db"))
