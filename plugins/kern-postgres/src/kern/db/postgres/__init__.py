"""PostgreSQL storage for kern: ``PostgresDb`` (sync) and ``AsyncPostgresDb`` (async).

Both run on SQLAlchemy 2 Core with psycopg 3: ``postgresql://`` URLs for the sync class,
``postgresql+psycopg_async://`` for the async one. The classes are imported on first use,
so loading the plugin does not import the driver.
"""

from typing import TYPE_CHECKING

from kern.plugins import lazy_exports

if TYPE_CHECKING:
    from kern.db.postgres.aio import AsyncPostgresDb
    from kern.db.postgres.db import PostgresDb

__all__ = ["AsyncPostgresDb", "PostgresDb"]
__getattr__ = lazy_exports(
    __name__,
    {"AsyncPostgresDb": "kern.db.postgres.aio", "PostgresDb": "kern.db.postgres.db"},
)
