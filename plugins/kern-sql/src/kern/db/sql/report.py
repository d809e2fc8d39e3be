"""What ``storage_report`` reads of a SQL database's schema, without changing anything.

The same machinery as the start-up check of ``create_tables`` (``kern.db.sql.verify``): the
objects each migration leaves, asked of the dialect's catalog in one query, so a table,
index, trigger or setting dropped by hand shows as missing exactly as ``create_tables``
would find it, but nothing is created, migrated or put back. ``kern_schema_versions`` is
read only if it exists: a database kern never wrote to reports no versions and every
table missing, without an error.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from kern.db.sql.dialect import SqlDialect
from kern.db.sql.migrations import read_versions
from kern.db.sql.schema import Tables
from kern.db.sql.verify import Expectations
from kern.db.transfer import RECORD_KINDS


@dataclass(frozen=True)
class SchemaState:
    """The stored versions, the objects missing, and the rows of each record table."""

    versions: dict[str, int]
    missing: list[str]
    counts: dict[str, int]


def schema_state(
    conn: Connection, tables: Tables, dialect: SqlDialect, expected: Expectations
) -> SchemaState:
    """Read ``expected``'s objects, the versions and the counts on ``conn`` (reads only)."""
    sv = tables.schema_versions.name
    names = sorted({obj for e in expected.values() for obj in e.objects} | {sv})
    present = dialect.existing_objects(conn, names)
    versions = read_versions(conn, tables) if sv in present else {}
    by_name = tables.by_logical_name()
    counts: dict[str, int] = {
        kind: int(conn.execute(select(func.count()).select_from(by_name[kind])).scalar_one())
        for kind in RECORD_KINDS
        if by_name[kind].name in present
    }
    return SchemaState(versions, sorted(set(names) - present), counts)


__all__ = ["SchemaState", "schema_state"]
