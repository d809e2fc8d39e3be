"""``kern retention``: the policy from kern.toml or the options, a dry run that removes
nothing, a confirmation, and a receipt that matches a raw count of the SQLite file."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from kern.db.sqlite import SqliteDb
from kern.db.transfer import RecordPage
from kern.records import Run, Session, utcnow

from .conftest import run_kern


def _count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT count(*) FROM kern_{table}").fetchone()[0])


@pytest.fixture
def aged(tmp_path: Path) -> Path:
    """A folder with kern.db: session "daily" has a run a day for 61 days (day 60 is
    today; each an hour later in its day than now, so no run sits on a day's cutoff),
    session "stale" was last touched 100 days ago (2 runs), "fresh" today (1)."""
    now = utcnow()
    path = tmp_path / "kern.db"
    with SqliteDb(db_file=path) as db:
        for d in range(61):
            db.append_run(
                Run(
                    session_id="daily",
                    input=f"day {d}",
                    created_at=now - timedelta(days=60 - d, hours=-1),  # clear of a cutoff
                )
            )
        old = now - timedelta(days=100)
        db.import_records(
            RecordPage(
                "sessions",
                [Session(session_id="stale", user_id="ada", created_at=old, updated_at=old)],
            )
        )
        db.import_records(
            RecordPage("runs", [Run(session_id="stale", seq=i, created_at=old) for i in (1, 2)])
        )
        db.upsert_session(Session(session_id="fresh", user_id="ada"), expected_version=None)
        db.append_run(Run(session_id="fresh"))
    return tmp_path


def test_a_dry_run_counts_from_kern_toml_and_removes_nothing(aged: Path) -> None:
    (aged / "kern.toml").write_text(
        'db_url = "sqlite:///kern.db"\n\n[retention]\nruns_days = 30\nidle_session_days = 90\n'
    )
    before = _count(aged / "kern.db", "runs")

    dry = run_kern("retention", "--dry-run", cwd=aged)

    assert dry.code == 0, dry.stderr
    assert "would remove 1 sessions and" in dry.stdout
    assert "dry run: nothing was removed" in dry.stdout
    assert "sessions idle since" in dry.stdout and "runs before" in dry.stdout
    assert _count(aged / "kern.db", "runs") == before
    assert _count(aged / "kern.db", "sessions") == 2


def test_the_receipt_matches_a_raw_count(aged: Path) -> None:
    (aged / "kern.toml").write_text(
        'db_url = "sqlite:///kern.db"\n\n[retention]\nruns_days = 30\nidle_session_days = 90\n'
    )
    runs, sessions = _count(aged / "kern.db", "runs"), _count(aged / "kern.db", "sessions")

    unconfirmed = run_kern("retention", cwd=aged)  # stdin is not a terminal
    assert unconfirmed.code == 2 and "pass --yes" in unconfirmed.stderr
    assert _count(aged / "kern.db", "runs") == runs

    done = run_kern("retention", "--yes", "--json", cwd=aged)

    assert done.code == 0, done.stderr
    receipt = done.json
    assert receipt["dry_run"] is False and receipt["finished"] is True
    assert receipt["deleted"] == {
        "sessions": sessions - _count(aged / "kern.db", "sessions"),
        "runs": runs - _count(aged / "kern.db", "runs"),
    }
    # The idle session with its 2 runs; of "daily", the 30 runs older than 30 days.
    assert receipt["deleted"] == {"sessions": 1, "runs": 32}
    with SqliteDb(db_file=aged / "kern.db") as db:
        assert db.append_run(Run(session_id="daily")).seq == 62


def test_options_and_the_env_variable_without_kern_toml(aged: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{aged / 'kern.db'}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    done = run_kern(
        "retention",
        "--keep-last-runs",
        "5",
        "--batch-size",
        "2",
        "--yes",
        cwd=elsewhere,
        env={"KERN_DB_URL": url},
    )

    assert done.code == 0, done.stderr
    assert "removed 0 sessions and 56 runs" in done.stdout
    with SqliteDb(db_file=aged / "kern.db") as db:
        assert [r.seq for r in db.get_last_runs("daily", 100)] == [57, 58, 59, 60, 61]
        assert len(db.get_last_runs("stale", 10)) == 2


def test_max_batches_leaves_the_rest_for_the_next_run(aged: Path) -> None:
    url = f"sqlite:///{aged / 'kern.db'}"
    first = run_kern(
        "retention",
        "--db",
        url,
        "--runs-days",
        "30",
        "--batch-size",
        "4",
        "--max-batches",
        "1",
        "--yes",
        "--json",
    )
    assert first.code == 0, first.stderr
    assert first.json["finished"] is False and first.json["deleted"]["runs"] <= 4
    rest = run_kern("retention", "--db", url, "--runs-days", "30", "--yes", "--json")
    assert rest.json["finished"] is True
    assert first.json["deleted"]["runs"] + rest.json["deleted"]["runs"] == 31  # 30 + 1 stale


def test_errors_are_one_line(aged: Path) -> None:
    url = f"sqlite:///{aged / 'kern.db'}"
    none = run_kern("retention", "--db", url, "--dry-run", cwd=aged)
    assert none.code == 2
    assert none.stderr.startswith("kern retention: no retention policy: add a [retention]")
    assert len(none.stderr.strip().splitlines()) == 1

    bad = run_kern("retention", "--db", url, "--runs-days", "-3", cwd=aged)
    assert bad.code == 2 and "--runs-days" in bad.stderr

    (aged / "kern.toml").write_text("[retention]\nruns = 30\n")
    typo = run_kern("retention", "--db", url, "--dry-run", cwd=aged)
    assert typo.code in (1, 2)
    assert "unknown key 'runs'" in typo.stderr and "runs_days" in typo.stderr
    assert len(typo.stderr.strip().splitlines()) == 1
