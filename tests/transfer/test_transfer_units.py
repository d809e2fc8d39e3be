"""kern.transfer on SQLite, in-process and through the commands: the line format, the
checksums, the checkpoint, ``kern doctor``, and the errors a person reads."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from kern.db.sqlite import SqliteDb
from kern.db.transfer import RecordPage
from kern.records import Embedding, Memory
from kern.testing.dataset import sample_pages, write_sample
from kern.transfer import export_lines, import_lines, tally_database
from kern.transfer.checksum import Tally, canonical
from kern.transfer.copy import Checkpoint, CheckpointError
from kern.transfer.lines import FORMAT_VERSION, ExportFormatError

SMALL = {"users": 2, "sessions": 12, "runs": 120, "memories": 30, "learnings": 30}


def kern(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kern.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.fixture
def source(tmp_path: Path) -> SqliteDb:
    db = SqliteDb(db_file=str(tmp_path / "source.db"))
    write_sample(db, **SMALL)
    yield db
    db.close()


def test_checksum_ignores_order_and_time_zone_but_sees_every_field() -> None:
    moment = datetime(2025, 1, 1, 12, 0, 0, 5, tzinfo=UTC)
    a = Memory(memory_id="m1", user_id="u", content="x", created_at=moment, updated_at=moment)
    b = Memory(memory_id="m2", user_id="u", content="y", created_at=moment, updated_at=moment)
    shifted = a.model_copy(update={"created_at": moment.astimezone(timezone(timedelta(hours=2)))})
    assert canonical(a) == canonical(shifted)

    forward, backward = Tally(), Tally()
    forward.add_page(RecordPage(kind="memories", records=[a, b]))
    backward.add_page(RecordPage(kind="memories", records=[b, a]))
    assert forward.differences(backward) == []

    vector = {"m1": Embedding(model="e", vector=[1.0, 0.5])}
    for changed in (
        RecordPage(kind="memories", records=[a.model_copy(update={"content": "z"}), b]),
        RecordPage(kind="memories", records=[a, b], embeddings=vector),
        RecordPage(kind="memories", records=[a]),
    ):
        other = Tally()
        other.add_page(changed)
        assert other.differences(forward) == ["memories"]


def test_export_lines_round_trip_and_end_line(source: SqliteDb, tmp_path: Path) -> None:
    buffer = io.StringIO()
    written = export_lines(source, buffer.write, limit=7)
    lines = buffer.getvalue().splitlines()
    header, end = json.loads(lines[0]), json.loads(lines[-1])
    assert header["format"] == "kern-export" and header["version"] == FORMAT_VERSION
    assert header["source"]["backend"] == "sqlite" and header["source"]["schema_versions"]
    assert (
        end["counts"]
        == written.counts
        == {"sessions": 12, "runs": 120, "memories": 30, "learnings": 30}
    )
    kinds = [json.loads(line)["kind"] for line in lines[1:-1]]
    assert kinds == sorted(kinds, key=["sessions", "runs", "memories", "learnings"].index)

    target = SqliteDb(db_file=str(tmp_path / "target.db"))
    try:
        report = import_lines(target, lines, limit=5)
        assert report.mismatches == []
        assert tally_database(target).differences(tally_database(source)) == []
        assert import_lines(target, lines).mismatches == []  # idempotent
        assert tally_database(target).counts == written.counts
    finally:
        target.close()


def test_export_by_user_holds_only_that_user(source: SqliteDb) -> None:
    buffer = io.StringIO()
    export_lines(source, buffer.write, user_id="user-1")
    records = [json.loads(line) for line in buffer.getvalue().splitlines()[1:-1]]
    assert records
    for line in records:
        record = line["record"]
        if line["kind"] in ("sessions", "memories"):
            assert record["user_id"] == "user-1"


def test_import_refuses_damaged_newer_and_cut_files(source: SqliteDb, tmp_path: Path) -> None:
    buffer = io.StringIO()
    export_lines(source, buffer.write)
    lines = buffer.getvalue().splitlines()
    target = SqliteDb(db_file=str(tmp_path / "target.db"))
    try:
        newer = json.dumps({**json.loads(lines[0]), "version": FORMAT_VERSION + 1})
        with pytest.raises(ExportFormatError, match="upgrade kern"):
            import_lines(target, [newer, *lines[1:]])
        with pytest.raises(ExportFormatError, match="line 3 is not JSON"):
            import_lines(target, [lines[0], lines[1], "{oops", *lines[3:]])
        with pytest.raises(ExportFormatError, match="not start with a kern export header"):
            import_lines(target, lines[1:])
        with pytest.raises(ExportFormatError, match="cut short"):
            import_lines(target, lines[:50])
        # What the cut file held is in; the whole file completes it without doubling.
        assert import_lines(target, lines).mismatches == []
        assert tally_database(target).differences(tally_database(source)) == []
    finally:
        target.close()


def test_checkpoint_belongs_to_one_copy(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    checkpoint = Checkpoint.load(path, "a", "b", None)
    checkpoint.cursors["runs"] = "x"
    checkpoint.save()
    assert Checkpoint.load(path, "a", "b", None).cursors == {"runs": "x"}
    with pytest.raises(CheckpointError, match="--restart"):
        Checkpoint.load(path, "a", "c", None)


def test_sample_pages_are_deterministic_and_lazy() -> None:
    first = [page.records[0] for page in sample_pages(**SMALL, page_size=10)]
    again = [page.records[0] for page in sample_pages(**SMALL, page_size=10)]
    assert first == again
    pages = sample_pages(users=3, sessions=1000, runs=500_000)
    assert next(pages).kind == "sessions"  # made as consumed: no 500,000 runs up front


def test_commands_export_import_copy_on_sqlite(source: SqliteDb, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'source.db'}"
    dump = tmp_path / "dump.jsonl"
    exported = kern("export", "--db", url, "--output", str(dump))
    assert exported.returncode == 0, exported.stderr
    assert "runs" in exported.stderr and "120" in exported.stderr

    # Through stdout as the README shows it, and KERN_DB_URL for the database.
    piped = subprocess.run(
        f"{sys.executable} -m kern.cli export > {tmp_path / 'piped.jsonl'}",
        shell=True,
        capture_output=True,
        text=True,
        env={**os.environ, "KERN_DB_URL": url},
    )
    assert piped.returncode == 0, piped.stderr
    assert len((tmp_path / "piped.jsonl").read_text().splitlines()) == 2 + 12 + 120 + 30 + 30

    target = f"sqlite:///{tmp_path / 'imported.db'}"
    result = kern("import", str(dump), "--db", target, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["imported"]["runs"]["rows"] == 120

    copied = kern(
        "copy",
        url,
        f"sqlite:///{tmp_path / 'copy.db'}",
        "--json",
        "--checkpoint",
        str(tmp_path / "cp.json"),
    )
    assert copied.returncode == 0, copied.stderr
    report = json.loads(copied.stdout)
    assert report["verified"] is True and report["copied"]["runs"] == 120
    human = kern(
        "copy",
        url,
        f"sqlite:///{tmp_path / 'copy2.db'}",
        "--checkpoint",
        str(tmp_path / "cp2.json"),
    )
    assert human.returncode == 0, human.stderr
    assert "equal" in human.stdout and "rows/s" in human.stdout


def test_command_errors_are_one_line_with_exit_2(source: SqliteDb, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'source.db'}"
    (tmp_path / "bad.jsonl").write_text('{"format": "something else"}\n')
    cases = [
        (kern("import", str(tmp_path / "missing.jsonl"), "--db", url), "cannot read"),
        (kern("import", str(tmp_path / "bad.jsonl"), "--db", url), "kern export header"),
        (kern("copy", url, url), "the same database"),
        (kern("export", "--db", url, "--batch", "0"), "--batch"),
        (kern("export", "--db", "nosuch://x"), "nosuch"),
    ]
    for result, words in cases:
        assert result.returncode == 2, (result.args, result.stderr)
        assert words in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) <= 2, result.stderr


def test_doctor_sees_a_dropped_table_and_repairs_it(source: SqliteDb, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'source.db'}"
    healthy = kern("doctor", "--db", url, "--json")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    report = json.loads(healthy.stdout)
    assert report["backend"] == "sqlite" and report["missing"] == []
    assert report["counts"]["runs"] == 120

    with sqlite3.connect(tmp_path / "source.db") as raw:
        raw.execute("DROP TABLE kern_memories")
    broken = kern("doctor", "--db", url)
    assert broken.returncode == 1
    assert "kern_memories" in broken.stdout and "kern doctor --repair" in broken.stdout

    repaired = kern("doctor", "--db", url, "--repair", "--json")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    after = json.loads(repaired.stdout)
    assert "kern_memories" in " ".join(after["missing"])
    assert after["repaired"]["missing"] == [] and after["healthy"] is True

    fresh = kern("doctor", "--db", f"sqlite:///{tmp_path / 'new.db'}")
    assert fresh.returncode == 1 and "not created yet" in fresh.stdout
