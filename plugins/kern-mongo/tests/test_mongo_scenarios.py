"""kern.testing's end-to-end scenarios on MongoDB (nx-27017 here)."""

from __future__ import annotations

from kern.testing import scenarios


def test_team_and_workflow_across_processes(mongo_kwargs, scripted):
    scenarios.team_and_workflow_across_processes(("kern.db.mongo:MongoDb", mongo_kwargs), scripted)
