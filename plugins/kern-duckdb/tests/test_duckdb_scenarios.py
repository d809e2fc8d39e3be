"""kern.testing's end-to-end scenarios on DuckDB."""

from __future__ import annotations

from kern.testing import scenarios


def test_team_and_workflow_across_processes(scripted, tmp_path):
    recipe = ("kern.db.duckdb:DuckDb", {"db_file": str(tmp_path / "kern.duckdb")})
    scenarios.team_and_workflow_across_processes(recipe, scripted)
