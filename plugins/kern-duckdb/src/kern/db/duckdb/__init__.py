"""DuckDB storage for kern: ``DuckDb`` and ``AsyncDuckDb``, on the shared SQL layer.

The classes are imported on first use, so loading the plugin does not import the driver.
"""

from typing import TYPE_CHECKING

from kern.plugins import lazy_exports

if TYPE_CHECKING:
    from kern.db.duckdb.db import AsyncDuckDb, DuckDb
    from kern.db.duckdb.errors import DuckDbLockedError

__all__ = ["AsyncDuckDb", "DuckDb", "DuckDbLockedError"]
__getattr__ = lazy_exports(
    __name__,
    {
        "AsyncDuckDb": "kern.db.duckdb.db",
        "DuckDb": "kern.db.duckdb.db",
        "DuckDbLockedError": "kern.db.duckdb.errors",
    },
)
