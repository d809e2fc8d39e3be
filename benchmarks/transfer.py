"""Moving data: ``kern copy`` into each backend (rows/s), and ``kern export``'s peak memory.

1. Copy: a sample database (``kern.testing.dataset``: 3 users, 1,000 sessions, 50,000 runs,
   3,000 memories, 3,000 learnings) is written to SQLite, then copied into a fresh database
   of each backend with ``kern.transfer.copy_database`` (what ``kern copy`` runs), pages of
   1,000. Reported: rows per second of the copy (every kind, source reads included), and of
   the verification that follows (both sides counted and checksummed).
2. Export memory: ``kern export --output /dev/null`` in a child process on SQLite sources of
   50,000 and 500,000 runs; its peak resident memory (``ru_maxrss``). Flat means the second
   is not ten times the first.

    uv run nox -s transfer                      # both, every backend
    uv run python benchmarks/transfer.py --backends sqlite duckdb --runs 20000
    uv run python benchmarks/transfer.py --skip-copy --export-runs 50000 500000

Servers as for the other benchmarks (benchmarks/targets): Postgres on 127.0.0.1:5432 or
``KERN_BENCH_POSTGRES_URL``, Redis on 127.0.0.1:6379, Mongo on 27017 or a throwaway
nx-27017.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from kern.db.sqlite import SqliteDb  # noqa: E402
from kern.testing.dataset import write_sample  # noqa: E402
from kern.transfer import copy_database, tally_database  # noqa: E402

BACKENDS = ("sqlite", "postgres", "duckdb", "mongo", "redis")

PEAK = """
import resource, sys
from kern.cli import main
code = main(["export", "--db", sys.argv[1], "--output", "/dev/null"])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
raise SystemExit(code)
"""


def sample(folder: Path, runs: int) -> tuple[Path, dict[str, int], float]:
    path = folder / f"source-{runs}.db"
    db = SqliteDb(db_file=path)
    started = time.perf_counter()
    try:
        written = write_sample(db, runs=runs)
    finally:
        db.close()
    return path, written, time.perf_counter() - started


def destination(backend: str, folder: Path) -> Any:
    target = importlib.import_module(f"targets.{backend}")
    scratch = folder / backend
    scratch.mkdir()
    return target, target.kern_db(scratch)


def drop_postgres_schema(db: Any) -> None:
    import psycopg
    from targets.postgres import conninfo

    with psycopg.connect(conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{db.schema}" CASCADE')


def measure_copy(backends: list[str], runs: int, folder: Path) -> list[dict[str, Any]]:
    path, written, seconds = sample(folder, runs)
    total = sum(written.values())
    print(f"sample: {written} written to SQLite in {seconds:.1f} s", flush=True)
    source = SqliteDb(db_file=path)
    results = []
    try:
        for backend in backends:
            target, db = destination(backend, folder)
            try:
                report = copy_database(source, db, verify=False)
                started = time.perf_counter()
                equal = tally_database(db).differences(tally_database(source)) == []
                verify_s = time.perf_counter() - started
            finally:
                if backend == "postgres":
                    drop_postgres_schema(db)
                db.close()
                stop = getattr(target, "_stop", None)
                if stop is not None:
                    stop(folder / backend)
            row = {
                "backend": backend,
                "rows": total,
                "copy_s": round(report.seconds, 2),
                "rows_per_s": round(total / report.seconds),
                "verify_s": round(verify_s, 2),
                "identical": equal,
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    finally:
        source.close()
    return results


def measure_export(sizes: list[int], folder: Path) -> list[dict[str, Any]]:
    results = []
    for runs in sizes:
        path, written, _ = sample(folder, runs)
        started = time.perf_counter()
        child = subprocess.run(
            [sys.executable, "-c", PEAK, f"sqlite:///{path}"],
            capture_output=True,
            text=True,
            check=True,
        )
        seconds = time.perf_counter() - started
        peak_kib = int(child.stdout.strip().splitlines()[-1])
        row = {
            "runs": runs,
            "rows": sum(written.values()),
            "export_s": round(seconds, 1),
            "peak_rss_mib": round(peak_kib / 1024, 1),
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--runs", type=int, default=50_000)
    parser.add_argument("--export-runs", type=int, nargs="+", default=[50_000, 500_000])
    parser.add_argument("--skip-copy", action="store_true")
    parser.add_argument("--skip-export", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kern-transfer-") as scratch:
        folder = Path(scratch)
        copies = [] if args.skip_copy else measure_copy(args.backends, args.runs, folder)
        exports = [] if args.skip_export else measure_export(args.export_runs, folder)
    print("\n| backend | rows | copy s | rows/s | verify s | identical |")
    print("|---|---:|---:|---:|---:|---|")
    for row in copies:
        print(
            f"| {row['backend']} | {row['rows']:,} | {row['copy_s']} | {row['rows_per_s']:,} "
            f"| {row['verify_s']} | {'yes' if row['identical'] else 'NO'} |"
        )
    if exports:
        print("\n| runs | rows | export s | peak RSS MiB |")
        print("|---:|---:|---:|---:|")
        for row in exports:
            print(
                f"| {row['runs']:,} | {row['rows']:,} | {row['export_s']} | {row['peak_rss_mib']} |"
            )


if __name__ == "__main__":
    main()
