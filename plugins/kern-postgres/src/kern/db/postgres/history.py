"""The index every agent turn's history read goes through (a Postgres-only migration)."""

from __future__ import annotations

from sqlalchemy import Connection, Dialect

from kern.db.sql.migrations import Migration, Plan
from kern.db.sql.schema import Tables


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
    quote = dialect.identifier_preparer
    name = quote.quote(f"ix_{runs.name}_top_level")
    ddl = (
        f"CREATE INDEX IF NOT EXISTS {name} ON {quote.format_table(runs)} (session_id, seq) "
        "WHERE parent_run_id IS NULL"
    )

    def apply(conn: Connection) -> None:
        conn.exec_driver_sql(ddl)

    return {
        f"{runs.name}_top_level": [Migration(1, f"top-level history index of {runs.name}", apply)]
    }
