"""kern's shared SQLAlchemy Core layer for the SQL backends (not a backend by itself).

``SqlDb`` implements the storage contract once; a backend (``kern.db.sqlite``, later
Postgres and DuckDB) supplies an engine and a ``SqlDialect`` with what its database does
differently. See ``kern.db.sql.dialect`` for the seams.
"""

from kern.db.sql.db import SqlDb
from kern.db.sql.dialect import Scored, SqlDialect
from kern.db.sql.migrations import Migration, Plan
from kern.db.sql.prepared import Link, Prepared
from kern.db.sql.schema import DEFAULT_PREFIX, JsonType, Tables, UtcDateTime, build_tables
from kern.db.sql.search import query_terms

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
