"""``kern copy`` / ``kern export`` / ``kern import`` across the five backends, as a user runs them.

The chain of the acceptance: a sample database of 3 users, 1,000 sessions, 50,000 runs,
3,000 memories and 3,000 learnings (vectors on a share of them, some proposals) copied
SQLite -> Postgres -> DuckDB -> Mongo -> Redis -> SQLite ends identical to the start: equal
counts and checksums per table, computed here in-process, independently of the command's
own verification. Then each backend exports and imports a file by the commands, twice, and
a copy killed halfway is rerun to completion without a duplicate or a gap.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kern.db import connect
from kern.db.base import BaseDb
from kern.records import Run
from kern.testing.dataset import write_sample
from kern.transfer import tally_database
from kern.transfer.checksum import Tally, pages

BACKENDS = ("sqlite", "postgres", "duckdb", "mongo", "redis")
SAMPLE = {"users": 3, "sessions": 1_000, "runs": 50_000, "memories": 3_000, "learnings": 3_000}
SMALL = {"users": 3, "sessions": 20, "runs": 400, "memories": 60, "learnings": 60}


def kern(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kern.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def tally(url: str) -> Tally:
    db: BaseDb = connect(url, is_async=False)
    try:
        return tally_database(db)
    finally:
        db.close()


def seeded(url: str, **sample: int) -> str:
    db: BaseDb = connect(url, is_async=False)
    try:
        write_sample(db, **sample)
    finally:
        db.close()
    return url


def seqs_by_session(url: str) -> dict[str, list[int]]:
    db: BaseDb = connect(url, is_async=False)
    try:
        found: dict[str, list[int]] = {}
        for page in pages(db, "runs", limit=5_000):
            for run in page.records:
                assert isinstance(run, Run) and run.seq is not None
                found.setdefault(run.session_id, []).append(run.seq)
        return found
    finally:
        db.close()


def test_copy_through_every_backend_ends_identical(
    backend_url: Callable[[str], str], tmp_path: Path
) -> None:
    start = seeded(backend_url("sqlite"), **SAMPLE)
    expected = tally(start)
    assert expected.counts == {
        "sessions": 1_000,
        "runs": 50_000,
        "memories": 3_000,
        "learnings": 3_000,
    }
    chain = [start] + [backend_url(name) for name in ("postgres", "duckdb", "mongo", "redis")]
    chain.append(backend_url("sqlite"))
    for source, destination in itertools.pairwise(chain):
        result = ok(
            kern("copy", source, destination, "--json", "--checkpoint", str(tmp_path / "c.json"))
        )
        report = json.loads(result.stdout)
        assert report["verified"] is True, report
        assert report["copied"]["runs"] == 50_000
        assert report["source_tally"] == expected.as_dict(), (source, destination)
    end = tally(chain[-1])
    assert end.counts == expected.counts
    assert end.differences(expected) == [], end.as_dict()


@pytest.mark.parametrize("backend", BACKENDS)
def test_export_then_import_twice_on_each_backend(
    backend: str, backend_url: Callable[[str], str], tmp_path: Path
) -> None:
    original = seeded(backend_url("sqlite"), **SMALL)
    first = tmp_path / "first.jsonl"
    ok(kern("export", "--db", original, "--output", str(first)))

    url = backend_url(backend)
    imported = json.loads(ok(kern("import", str(first), "--db", url, "--json")).stdout)
    again = json.loads(ok(kern("import", str(first), "--db", url, "--json")).stdout)
    assert imported["complete"] and again["complete"]
    assert tally(url).differences(tally(original)) == []

    second = tmp_path / "second.jsonl"
    ok(kern("export", "--db", url, "--output", str(second)))
    end_lines = [json.loads(f.read_text().splitlines()[-1]) for f in (first, second)]
    assert end_lines[0]["checksums"] == end_lines[1]["checksums"]
    assert (
        end_lines[0]["counts"]
        == end_lines[1]["counts"]
        == {"sessions": 20, "runs": 400, "memories": 60, "learnings": 60}
    )

    # The next turn of an imported session continues its seq.
    db: BaseDb = connect(url, is_async=False)
    try:
        last = db.get_last_runs("s000000", 1)[0]
        assert db.append_run(Run(session_id="s000000", input="next")).seq == last.seq + 1
    finally:
        db.close()


@pytest.mark.parametrize("destination_backend", ["postgres", "mongo"])
def test_copy_killed_halfway_resumes_without_duplicate_or_gap(
    destination_backend: str, backend_url: Callable[[str], str], tmp_path: Path
) -> None:
    source = seeded(backend_url("sqlite"), **SAMPLE)
    destination = backend_url(destination_backend)
    checkpoint = tmp_path / "copy.json"
    command = [
        sys.executable,
        "-m",
        "kern.cli",
        "copy",
        source,
        destination,
        "--checkpoint",
        str(checkpoint),
        "--batch",
        "500",
        "--json",
    ]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and child.poll() is None:
        saved = _read(checkpoint)
        if saved and saved.get("copied", {}).get("runs", 0) >= 10_000:
            break
        time.sleep(0.02)
    assert child.poll() is None, "the copy ended before it could be killed halfway"
    child.send_signal(signal.SIGKILL)
    child.wait()
    halfway = _read(checkpoint)
    assert halfway is not None and 10_000 <= halfway["copied"]["runs"] < 50_000

    result = json.loads(
        ok(kern("copy", source, destination, "--checkpoint", str(checkpoint), "--json")).stdout
    )
    assert result["resumed"] is True and result["verified"] is True
    assert not checkpoint.exists(), "a finished copy leaves no checkpoint behind"
    seqs = seqs_by_session(destination)
    assert sum(len(s) for s in seqs.values()) == 50_000
    for session_id, numbers in seqs.items():
        assert sorted(numbers) == list(range(1, len(numbers) + 1)), session_id

    # Rerun after completion: idempotent, still identical.
    rerun = json.loads(ok(kern("copy", source, destination, "--json")).stdout)
    assert rerun["verified"] is True and rerun["resumed"] is False


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
