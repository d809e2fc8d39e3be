"""kern's shared SQLAlchemy Core layer for the SQL backends (not a backend by itself).

``SqlDb`` implements the storage contract once; a backend (``kern.db.sqlite``, later
Postgres and DuckDB) supplies an engine and a ``SqlDialect`` with what its database does
differently. See ``kern.db.sql.dialect`` for the seams.

The names below are imported on first use, and ``kern.db.sql.db`` imports SQLAlchemy only
when the first ``SqlDb`` is built, so that ``from kern.db.sqlite import SqliteDb`` stays
fast: see docs/benchmarks.md#cold-start.
"""

from typing import TYPE_CHECKING

from kern.plugins import lazy_exports

if TYPE_CHECKING:
    from kern.db.sql.db import SqlDb
    from kern.db.sql.dialect import Scored, SqlDialect
    from kern.db.sql.migrations import Migration, Plan
    from kern.db.sql.prefix import DEFAULT_PREFIX
    from kern.db.sql.prepared import Link, Prepared
    from kern.db.sql.schema import JsonType, Tables, UtcDateTime, build_tables
    from kern.db.sql.search import query_terms

_EXPORTS = {
    "DEFAULT_PREFIX": "kern.db.sql.prefix",
    "JsonType": "kern.db.sql.schema",
    "Link": "kern.db.sql.prepared",
    "Migration": "kern.db.sql.migrations",
    "Plan": "kern.db.sql.migrations",
    "Prepared": "kern.db.sql.prepared",
    "Scored": "kern.db.sql.dialect",
    "SqlDb": "kern.db.sql.db",
    "SqlDialect": "kern.db.sql.dialect",
    "Tables": "kern.db.sql.schema",
    "UtcDateTime": "kern.db.sql.schema",
    "build_tables": "kern.db.sql.schema",
    "query_terms": "kern.db.sql.search",
}

__all__ = [
    "DEFAULT_PREFIX",
    "JsonType",
    "Link",
    "Migration",
    "Plan",
    "Prepared",
    "Scored",
    "SqlDb",
    "SqlDialect",
    "Tables",
    "UtcDateTime",
    "build_tables",
    "query_terms",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)
