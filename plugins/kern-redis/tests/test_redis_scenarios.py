"""kern.testing's end-to-end scenarios on Redis."""

from __future__ import annotations

from kern.testing import scenarios


def test_team_and_workflow_across_processes(redis_space, scripted):
    url, prefix = redis_space("redis_url")
    recipe = ("kern.db.redis:RedisDb", {"db_url": url, "key_prefix": prefix})
    scenarios.team_and_workflow_across_processes(recipe, scripted)
