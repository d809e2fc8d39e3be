"""kern.testing's end-to-end scenarios on Postgres."""

from __future__ import annotations

from kern.testing import scenarios


def test_team_and_workflow_across_processes(scripted, pg_database, fresh_schema):
    recipe = (
        "kern.db.postgres:PostgresDb",
        {"db_url": str(pg_database.url), "schema": fresh_schema},
    )
    scenarios.team_and_workflow_across_processes(recipe, scripted)
