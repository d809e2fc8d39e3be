"""The index every agent turn's history read goes through (a Postgres-only migration)."""

from __future__ import annotations

from sqlalchemy import Connection, Dialect

from kern.db.sql.migrations import Migration, Plan
from kern.db.sql.schema import Tables
from kern.db.sql.verify import Expectations, Expected


def _history_index(tables: Tables, dialect: Dialect) -> tuple[str, str]:
    """The index's name and the DDL that creates it (if missing)."""
    runs = tables.runs
    quote = dialect.identifier_preparer
    name = f"ix_{runs.name}_top_level"
    ddl = (
        f"CREATE INDEX IF NOT EXISTS {quote.quote(name)} ON {quote.format_table(runs)} "
        "(session_id, seq) WHERE parent_run_id IS NULL"
    )
    return name, ddl


def history_expectations(tables: Tables, dialect: Dialect) -> Expectations:
    """The history index as the start-up check sees it (created again if dropped)."""
    name, ddl = _history_index(tables, dialect)

    def restore(conn: Connection, missing: frozenset[str]) -> None:
        conn.exec_driver_sql(ddl)

    return {f"{tables.runs.name}_top_level": Expected((name,), restore)}


def history_plan(tables: Tables, dialect: Dialect) -> Plan:
    """A partial index for the history an agent turn reads: top-level runs of a session.

    ``get_last_runs(sid, n, top_level_only=True, status=...)`` filters on
    ``parent_run_id IS NULL``. Through ``(session_id, seq)`` that filter is applied row by
    row, and without fresh statistics (a table that just grew) the planner may prefer to
    fetch every row of the session and sort them. This index holds exactly the top-level
    runs in seq order, so the newest ones are its last entries whatever the statistics say,
    and a team session's member runs are not even in it.
    """
    runs = tables.runs
    _, ddl = _history_index(tables, dialect)

    def apply(conn: Connection) -> None:
        conn.exec_driver_sql(ddl)

    return {
        f"{runs.name}_top_level": [Migration(1, f"top-level history index of {runs.name}", apply)]
    }
