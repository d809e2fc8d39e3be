"""Retention policies: declared in code, on the Db, through ``connect`` or in kern.toml; bad
ones refused with the fix named; the receipt; a backend without ``retention_batch``.

The rules themselves are checked on every backend by the conformance topic ``retention``
(kern.testing.conformance.retention) and, against raw counts, by each plugin's tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kern.db import connect
from kern.db.base import BaseDb
from kern.db.sqlite import AsyncSqliteDb, SqliteDb
from kern.errors import RetentionError
from kern.records import Run
from kern.retention import RetentionPolicy, RetentionRule, RuleKind
from kern.retention.config import configured_policy

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_the_rules_come_in_order_with_their_cutoffs() -> None:
    policy = RetentionPolicy(runs_days=30, keep_last_runs=200, idle_session_days=90.5)

    rules = policy.rules(NOW)

    assert [rule.kind for rule in rules] == [
        RuleKind.IDLE_SESSIONS,
        RuleKind.RUNS_BEFORE,
        RuleKind.KEEP_LAST_RUNS,
    ]
    assert rules[0].cutoff == NOW - timedelta(days=90.5)
    assert rules[1].cutoff == NOW - timedelta(days=30)
    assert rules[2].keep == 200
    assert RetentionPolicy().is_empty and RetentionPolicy().rules(NOW) == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"runs_days": -1}, "runs_days: Input should be greater than 0"),
        ({"keep_last_runs": 0}, "keep_last_runs: Input should be greater than or equal to 1"),
        ({"runs": 30}, "unknown key 'runs' (known: runs_days, keep_last_runs, idle_session_"),
        ({"runs_days": "a month"}, "runs_days: Input should be a valid number"),
    ],
)
def test_a_bad_policy_names_the_key(values: dict[str, object], message: str) -> None:
    with pytest.raises(RetentionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RetentionPolicy.from_mapping(values)


def test_a_rule_is_complete() -> None:
    with pytest.raises(ValueError, match="takes keep"):
        RetentionRule(kind=RuleKind.KEEP_LAST_RUNS, cutoff=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        RetentionRule(kind=RuleKind.RUNS_BEFORE, cutoff=datetime(2026, 1, 1))


def test_kern_toml_and_pyproject_declare_the_policy(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        "[tool.kern]\ndb_url = 'sqlite:///kern.db'\n\n[tool.kern.retention]\nruns_days = 14\n"
    )
    assert configured_policy(project / "src") == RetentionPolicy(runs_days=14)

    (project / "kern.toml").write_text("db_url = 'sqlite:///kern.db'\n")
    assert configured_policy(project) is None  # the first file found decides

    (project / "kern.toml").write_text("[retention]\nkeep_last_runs = 50\n")
    assert configured_policy(project) == RetentionPolicy(keep_last_runs=50)

    (project / "kern.toml").write_text("[retention]\nkeep_last = 50\n")
    with pytest.raises(RetentionError, match=r"\[retention\] of .*kern.toml.*unknown key"):
        configured_policy(project)


def _aged(db: SqliteDb) -> None:
    for d in range(61):
        db.append_run(Run(session_id="s", created_at=NOW - timedelta(days=60 - d)))


def test_the_policy_declared_on_the_db_or_through_connect_is_applied(tmp_path: Path) -> None:
    with SqliteDb(db_file=tmp_path / "a.db") as db:
        _aged(db)
        with pytest.raises(RetentionError, match="no retention policy"):
            db.apply_retention(now=NOW)
        db.retention = RetentionPolicy(runs_days=30)
        assert db.apply_retention(now=NOW).deleted == {"sessions": 0, "runs": 30}

    with connect(f"sqlite:///{tmp_path / 'b.db'}", retention={"keep_last_runs": 10}) as db:
        _aged(db)
        receipt = db.apply_retention(now=NOW)
        assert receipt.policy == RetentionPolicy(keep_last_runs=10)
        assert receipt.deleted["runs"] == 51
        assert receipt.backend == "sqlite"
        dumped = receipt.model_dump(mode="json")  # what a script stores or sends
        assert dumped["deleted"] == {"sessions": 0, "runs": 51} and dumped["finished"] is True


def test_a_policy_given_to_the_call_wins_over_the_declared_one(tmp_path: Path) -> None:
    with SqliteDb(db_file=tmp_path / "a.db") as db:
        _aged(db)
        db.retention = RetentionPolicy(runs_days=1)
        receipt = db.apply_retention(RetentionPolicy(runs_days=59), now=NOW, dry_run=True)
        assert receipt.deleted["runs"] == 1 and receipt.dry_run
        assert len(db.get_last_runs("s", 100)) == 61


async def test_the_async_db_applies_the_same_policy(tmp_path: Path) -> None:
    with SqliteDb(db_file=tmp_path / "a.db") as db:
        _aged(db)
    db = AsyncSqliteDb(db_file=tmp_path / "a.db")
    try:
        receipt = await db.apply_retention(RetentionPolicy(runs_days=30), now=NOW)
        assert receipt.deleted == {"sessions": 0, "runs": 30}
        assert [r.seq for r in await db.get_last_runs("s", 2)] == [60, 61]
    finally:
        await db.close()


def test_a_backend_without_retention_batch_says_so(tmp_path: Path) -> None:
    """A third-party backend written before retention still loads; applying a policy to it
    is an error naming the backend and what it lacks, and nothing is deleted."""

    class OlderBackend(SqliteDb):
        retention_batch = BaseDb.retention_batch

    with OlderBackend(db_file=tmp_path / "a.db") as db:
        _aged(db)
        with pytest.raises(NotImplementedError, match="OlderBackend does not implement "):
            db.apply_retention(RetentionPolicy(runs_days=1), now=NOW)
        assert len(db.get_last_runs("s", 100)) == 61
