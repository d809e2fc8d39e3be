"""SQLite's optional features as ``storage_report`` lists them (``kern doctor``).

All three depend on the SQLite library the driver module links, not on the file: FTS5
(text search; kern's tables need it), FTS5's secure-delete (3.44 or newer: a deleted row's
words leave the index at once, ``kern.db.sqlite.fts``) and sqlite-vec (vector search in SQL,
``kern.db.sqlite.vectors``). Each says how to get it where it is missing: a newer SQLite
through ``pysqlite3``, which the standard ``sqlite3`` of many Pythons is not.
"""

from __future__ import annotations

import functools
from types import ModuleType

from kern.db.report import Capability
from kern.db.sqlite.fts import SECURE_DELETE_SINCE
from kern.db.sqlite.vectors import VectorIndex

#: How to open the database on the SQLite of ``pysqlite3`` (newer, loads extensions).
OPEN_WITH = "open the database with SqliteDb(..., sqlite_module='pysqlite3.dbapi2')"
PYSQLITE3 = f"pip install pysqlite3-binary (Linux x86_64) and {OPEN_WITH}"


@functools.cache
def has_fts5(dbapi: ModuleType) -> bool:
    """True if ``dbapi``'s SQLite has FTS5 (asked once per module, in a throw-away database)."""
    try:
        probe = dbapi.connect(":memory:")
        try:
            probe.execute("CREATE VIRTUAL TABLE probe USING fts5(text)")
        finally:
            probe.close()
    except Exception:  # the module's own OperationalError: "no such module: fts5"
        return False
    return True


def capabilities(dbapi: ModuleType, vector_index: VectorIndex) -> list[Capability]:
    """The features of the SQLite that ``dbapi`` links, and sqlite-vec as ``vector_index``
    (the Db's choice) says."""
    version = str(getattr(dbapi, "sqlite_version", "?"))
    since = ".".join(str(part) for part in SECURE_DELETE_SINCE)
    fts5 = has_fts5(dbapi)
    secure = tuple(getattr(dbapi, "sqlite_version_info", ())) >= SECURE_DELETE_SINCE
    return [
        Capability(
            "full-text search (FTS5)",
            fts5,
            f"SQLite {version} {'has' if fts5 else 'lacks'} FTS5, which kern's search needs",
            None if fts5 else f"use an SQLite built with FTS5: {PYSQLITE3}",
        ),
        Capability(
            "FTS5 secure-delete",
            secure,
            f"SQLite {version}: "
            + (
                "a deleted row's words leave the search index at once"
                if secure
                else f"before {since}, forget_user merges the search index to drop them"
            ),
            None if secure else f"use SQLite {since} or newer: {PYSQLITE3}",
        ),
        Capability(
            "sqlite-vec",
            vector_index.in_sql,
            vector_index.reason,
            None
            if vector_index.in_sql
            else "pip install 'kern-sqlite[vec]' pysqlite3-binary (Linux x86_64) and "
            f"{OPEN_WITH}, or run on a Python whose sqlite3 can load extensions",
        ),
    ]


__all__ = ["OPEN_WITH", "PYSQLITE3", "capabilities", "has_fts5"]
