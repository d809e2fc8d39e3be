"""Retention: how fast ``apply_retention`` removes rows, and what a call with nothing to
remove costs (a cron job's usual call), at two table sizes on each backend.

Each backend gets sessions of runs created evenly over 60 days, written in time order as
conversations interleave (with ``import_records``, which keeps timestamps), a quarter of
the sessions last updated on day 10. Then, on a fresh copy each time:

- ``nothing``: ``RetentionPolicy(runs_days=90, idle_session_days=90)``, nothing that old:
  the median time of 5 calls after a first one (should not grow with the table: each rule
  reads one index page);
- ``runs_days=30``: half of the runs go; rows removed per second;
- ``keep_last_runs=10``; ``idle_session_days=30`` (a quarter of the sessions, with their runs).

    uv run nox -s retention                                  # every backend, 20k and 100k runs
    uv run python benchmarks/retention.py --backends sqlite postgres --runs 20000

Servers as for the other benchmarks (benchmarks/targets).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from kern.db.transfer import RecordPage  # noqa: E402
from kern.records import Message, Run, Session  # noqa: E402
from kern.retention import RetentionPolicy  # noqa: E402

BACKENDS = ("sqlite", "postgres", "duckdb", "mongo", "redis")
DAY0 = datetime(2025, 1, 1, tzinfo=UTC)
NOW = DAY0 + timedelta(days=60)
RUNS_PER_SESSION = 50
PAGE = 1000

POLICIES = {
    "nothing": RetentionPolicy(runs_days=90, idle_session_days=90),
    "runs_days=30": RetentionPolicy(runs_days=30),
    "keep_last_runs=10": RetentionPolicy(keep_last_runs=10),
    "idle_session_days=30": RetentionPolicy(idle_session_days=30),
}


def fill(db: Any, runs: int) -> None:
    """``runs`` runs in sessions of ``RUNS_PER_SESSION``, spread evenly over 60 days."""
    sessions = max(1, runs // RUNS_PER_SESSION)
    span = timedelta(days=60) / RUNS_PER_SESSION
    batch: list[Session] = []
    for i in range(sessions):
        updated = DAY0 + timedelta(days=10 if i % 4 == 0 else 60)
        batch.append(
            Session(session_id=f"s{i}", user_id=f"u{i % 50}", created_at=DAY0, updated_at=updated)
        )
        if len(batch) == PAGE:
            db.import_records(RecordPage("sessions", batch))
            batch = []
    if batch:
        db.import_records(RecordPage("sessions", batch))
    pending: list[Run] = []
    for seq in range(1, RUNS_PER_SESSION + 1):  # in time order, as conversations interleave
        for i in range(sessions):
            text = f"question {seq} of session {i}"
            pending.append(
                Run(
                    session_id=f"s{i}",
                    user_id=f"u{i % 50}",
                    seq=seq,
                    input=text,
                    messages=[Message(role="user", content=text)],
                    output=f"answer {seq}",
                    created_at=DAY0 + span * seq + timedelta(seconds=i),
                )
            )
            if len(pending) == PAGE:
                db.import_records(RecordPage("runs", pending))
                pending = []
    if pending:
        db.import_records(RecordPage("runs", pending))


def measure(backend: str, runs: int, folder: Path) -> list[dict[str, Any]]:
    target = importlib.import_module(f"targets.{backend}")
    rows = []
    for name, policy in POLICIES.items():
        scratch = folder / f"{backend}-{runs}-{len(rows)}"
        scratch.mkdir()
        db = target.kern_db(scratch)
        try:
            db.create_tables()
            fill(db, runs)
            if name == "nothing":  # a cron job's usual call: warm, then the median of 5
                db.apply_retention(policy, now=NOW, batch_size=1000)
                times = []
                for _ in range(5):
                    started = time.perf_counter()
                    receipt = db.apply_retention(policy, now=NOW, batch_size=1000)
                    times.append(time.perf_counter() - started)
                seconds = sorted(times)[2]
            else:
                started = time.perf_counter()
                receipt = db.apply_retention(policy, now=NOW, batch_size=1000)
                seconds = time.perf_counter() - started
        finally:
            if backend == "postgres":
                from transfer import drop_postgres_schema

                drop_postgres_schema(db)
            db.close()
        removed = sum(receipt.deleted.values())
        batches = sum(part.batches for part in receipt.rules)
        rows.append(
            {
                "backend": backend,
                "runs": runs,
                "policy": name,
                "removed": receipt.deleted,
                "batches": batches,
                "seconds": round(seconds, 4),
                "rows_per_s": round(removed / seconds) if removed else None,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| backend | runs stored | policy | removed (sessions, runs) | batches | time | rows/s |",
        "|---|---:|---|---|---:|---:|---:|",
    ]
    for row in rows:
        removed = row["removed"]
        rate = f"{row['rows_per_s']:,}" if row["rows_per_s"] else "-"
        lines.append(
            f"| {row['backend']} | {row['runs']:,} | {row['policy']} | "
            f"{removed['sessions']:,}, {removed['runs']:,} | {row['batches']} | "
            f"{row['seconds'] * 1000:,.1f} ms | {rate} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--runs", nargs="+", type=int, default=[20_000, 100_000])
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.backends:
            for runs in args.runs:
                rows += measure(backend, runs, Path(folder))
    print(table(rows))


if __name__ == "__main__":
    main()
