"""The schema as it should be, checked at start-up and put back where something is missing.

``kern_schema_versions`` says which migrations ran, not that their work is still there: a
table, index, trigger or full-text table dropped by hand (or lost with a restored backup of
one table) leaves the version row current, and the first write or search would then fail
with a driver error far from the cause. So ``SqlDb.create_tables`` also asks the database
which of the objects kern needs exist (one catalog query per Db instance) and, for each
migration name whose objects are incomplete, runs that name's ``restore`` under the
migration lock. Restores are idempotent and recreate only what is missing; a missing table
comes back empty (its rows went with it). What cannot be restored raises
``ConfigurationError`` naming the missing objects and the repair.

Object names are those the dialect's ``existing_objects`` reports: table, index, view and
trigger names as stored, ``<table>.<column>`` for a column a dialect checks (Postgres's
``search_vector``), and ``<name>:<setting>`` for a setting (SQLite's FTS5 secure-delete).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, Index, Table, inspect

from kern.db.sql.schema import Tables

log = logging.getLogger("kern.db.sql")
# A library logs; the application decides what is shown (no "No handler" fallback output).
log.addHandler(logging.NullHandler())

#: ``restore(conn, missing)``: put back the objects named in ``missing`` (a subset of the
#: expectation's objects), inside the migration transaction.
Restore = Callable[[Connection, frozenset[str]], None]


@dataclass(frozen=True)
class Expected:
    """What one migration name leaves in the database, and how to put back what is gone."""

    objects: tuple[str, ...]
    restore: Restore


#: Migration name -> what it leaves; restored in this order (tables before what uses them).
Expectations = dict[str, Expected]


def restore_table(table: Table, indexes: Iterable[Index] | None = None) -> Restore:
    """Create ``table`` with its indexes if it is missing, else only its missing indexes."""
    wanted = list(table.indexes if indexes is None else indexes)

    def restore(conn: Connection, missing: frozenset[str]) -> None:
        if table.name in missing:
            table.create(conn, checkfirst=True)
            return
        for index in wanted:
            if index.name in missing:
                index.create(conn, checkfirst=True)

    return restore


def table_expectations(tables: Tables) -> Expectations:
    """The generic tables and their explicit indexes (what ``table_plan`` creates); a lost
    table comes back as stored now (memories and learnings with their vector columns)."""
    return {
        table.name: Expected(
            (table.name, *sorted(str(index.name) for index in table.indexes)),
            restore_table(table),
        )
        for table in tables.as_stored().values()
    }


def inspected_objects(conn: Connection, tables: Tables) -> set[str]:
    """Tables, views and indexes of the tables' schema, through SQLAlchemy's inspector:
    the portable answer for dialects without a catalog query of their own."""
    inspector = inspect(conn)
    schema = tables.metadata.schema
    found = set(inspector.get_table_names(schema=schema))
    found |= set(inspector.get_view_names(schema=schema))
    for table in tables.by_logical_name().values():
        if table.name in found:
            found |= {str(ix["name"]) for ix in inspector.get_indexes(table.name, schema=schema)}
    return found


def missing_objects(expected: Expectations, present: set[str]) -> dict[str, frozenset[str]]:
    """Per migration name, its objects that ``present`` lacks (names with none left out)."""
    gaps = {name: frozenset(e.objects) - present for name, e in expected.items()}
    return {name: gap for name, gap in gaps.items() if gap}


def describe(missing: Mapping[str, frozenset[str]]) -> str:
    return ", ".join(sorted(obj for gap in missing.values() for obj in gap))


__all__ = [
    "Expectations",
    "Expected",
    "Restore",
    "describe",
    "inspected_objects",
    "missing_objects",
    "restore_table",
    "table_expectations",
]
