"""Schema versions and forward-only migrations.

Each table (and each dialect's auxiliary object, such as SQLite's full-text index) has an
ordered list of migrations; version 1 creates it. ``kern_schema_versions`` holds one row per
name with the version reached. ``migrate`` runs inside one write transaction that the
dialect serialises across processes (SQLite: ``BEGIN IMMEDIATE``; Postgres: an advisory
lock), re-reads the versions under that lock and applies only what is still pending, so
several processes starting at once do the work exactly once.

Version 2 of memories and learnings adds their vector columns (``add_vectors``): two
nullable columns, so existing rows simply have no vector yet, and the index of the exact
scan. Version 2 of runs adds the ``(created_at, run_id)`` index that retention's
``runs_before`` reads (``add_index``). Each step checks what is there first, so running it
again changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Index, Table, inspect, select
from sqlalchemy.schema import CreateColumn

from kern.db.sql.schema import EMBEDDING, EMBEDDING_MODEL, Tables, runs_created_index
from kern.records import utcnow


@dataclass(frozen=True)
class Migration:
    """One step forward for one name. ``apply`` runs inside the migration transaction."""

    version: int
    description: str
    apply: Callable[[Connection], None]


#: name (a table name, with prefix) -> its migrations in version order.
Plan = dict[str, Sequence[Migration]]


def _create(table: Table) -> Callable[[Connection], None]:
    def apply(conn: Connection) -> None:
        table.create(conn, checkfirst=True)  # with the table's indexes

    return apply


def add_vectors(stored: Table, index: Index | None) -> Callable[[Connection], None]:
    """Add the vector columns of ``stored`` (a ``VectorTables`` table) that the table lacks,
    then ``index`` if given and missing. Nullable columns without a default: no database
    rewrites the table's rows for them."""

    def apply(conn: Connection) -> None:
        present = {c["name"] for c in inspect(conn).get_columns(stored.name, schema=stored.schema)}
        where = conn.dialect.identifier_preparer.format_table(stored)
        for name in (EMBEDDING_MODEL, EMBEDDING):
            if name not in present:
                column = CreateColumn(stored.c[name]).compile(dialect=conn.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {where} ADD COLUMN {column}")
        if index is not None:
            index.create(conn, checkfirst=True)

    return apply


def vector_migration(stored: Table, index: Index | None) -> Migration:
    """Version 2 of memories or learnings: their vector columns (see ``add_vectors``)."""
    return Migration(2, f"vector columns of {stored.name}", add_vectors(stored, index))


def add_index(table: Table, name: str) -> Callable[[Connection], None]:
    """Create ``table``'s index ``name`` if it is missing (a database made before it)."""
    (index,) = (ix for ix in table.indexes if ix.name == name)

    def apply(conn: Connection) -> None:
        index.create(conn, checkfirst=True)

    return apply


def table_plan(tables: Tables) -> Plan:
    """The migrations of the five generic tables. Add new steps at the end of a list."""
    plan: Plan = {
        table.name: [Migration(1, f"create {table.name}", _create(table))]
        for table in tables.by_logical_name().values()
    }
    vectors = tables.vectors
    for stored, index in (
        (vectors.memories, vectors.memories_index),
        (vectors.learnings, vectors.learnings_index),
    ):
        plan[stored.name] = [*plan[stored.name], vector_migration(stored, index)]
    # Version 2 of runs: the (created_at, run_id) index retention reads (a new database
    # gets it with the table; this step is then a no-op).
    runs = tables.runs
    created = Migration(
        2,
        f"index of {runs.name} by created_at",
        add_index(runs, runs_created_index(tables.prefix)),
    )
    plan[runs.name] = [*plan[runs.name], created]
    return plan


def target_versions(plan: Plan) -> dict[str, int]:
    return {name: steps[-1].version for name, steps in plan.items() if steps}


def read_versions(conn: Connection, tables: Tables) -> dict[str, int]:
    sv = tables.schema_versions
    return {name: version for name, version in conn.execute(select(sv.c.name, sv.c.version))}


def is_current(stored: Mapping[str, int], targets: Mapping[str, int]) -> bool:
    return all(stored.get(name, 0) >= version for name, version in targets.items())


def migrate(conn: Connection, tables: Tables, plan: Plan) -> list[tuple[str, int]]:
    """Apply pending steps of ``plan``; return the ``(name, version)`` pairs applied.

    Call inside the serialised write transaction. Versions newer than the plan (a database
    written by a newer kern) are left alone: migrations only go forward.
    """
    sv = tables.schema_versions
    sv.create(conn, checkfirst=True)
    stored = read_versions(conn, tables)
    applied: list[tuple[str, int]] = []
    for name, steps in plan.items():
        current = stored.get(name, 0)
        for step in steps:
            if step.version <= current:
                continue
            step.apply(conn)
            current = step.version
            applied.append((name, current))
        if current == stored.get(name, 0):
            continue
        values = {"version": current, "applied_at": utcnow()}
        if name in stored:
            conn.execute(sv.update().where(sv.c.name == name).values(values))
        else:
            conn.execute(sv.insert().values(name=name, **values))
    return applied
