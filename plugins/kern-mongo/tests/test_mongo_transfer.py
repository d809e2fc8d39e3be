"""Moving data on MongoDB: what the transfer conformance topic cannot see from outside.

Imports are bulk writes (two finds and one ``update`` command per page of runs, whatever its
size), exports read runs through the ``{session_id, seq}`` index and skip the runs of
unfinished commits, and ``storage_report`` is read-only: a fresh database stays empty, and
a collection or index dropped by hand is reported missing, not made again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mongo_probes import explain_find, plan_uses_index, shared_counter

from kern.db.mongo import AsyncMongoDb, MongoDb, calls
from kern.db.transfer import DEFAULT_PAGE, RecordPage
from kern.records import Embedding, Memory, Run, Session

COUNTER = shared_counter()
T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@pytest.fixture
def db(mongo_kwargs: dict[str, str]) -> Iterator[MongoDb]:
    db = MongoDb(**mongo_kwargs)
    yield db
    db.close()


def runs_of(sessions: int, per_session: int) -> list[Run]:
    return [
        Run(
            run_id=f"r-{s:05d}-{seq:03d}",
            session_id=f"s-{s:05d}",
            seq=seq,
            user_id=f"u-{s % 3}",
            input=f"question {seq}",
            output={"answer": seq},
            created_at=T0 + timedelta(seconds=seq),
        )
        for s in range(sessions)
        for seq in range(1, per_session + 1)
    ]


def pages_of(runs: list[Run], size: int = DEFAULT_PAGE) -> list[RecordPage]:
    return [
        RecordPage(kind="runs", records=runs[start : start + size])
        for start in range(0, len(runs), size)
    ]


def export_all(db: MongoDb, kind: Any, **kwargs: Any) -> list[Any]:
    records: list[Any] = []
    after = None
    while True:
        page = db.export_records(kind, after=after, **kwargs)
        records.extend(page.records)
        if page.cursor is None:
            return records
        after = page.cursor


# -- import: bulk writes ----------------------------------------------------------------------
def test_importing_50000_runs_sends_two_finds_and_one_update_per_page(db: MongoDb) -> None:
    runs = runs_of(1_000, 50)
    pages = pages_of(runs)
    db.create_tables()
    started = time.perf_counter()
    with COUNTER.counting(db.database_name) as tally:
        for page in pages:
            assert db.import_records(page) == len(page)
    seconds = time.perf_counter() - started
    # The pre-checks of each page (who holds its (session, seq) pairs; where its runs are
    # stored now), then its one bulk write.
    assert tally.commands == ["find", "find", "update"] * len(pages)
    print(f"\nimported {len(runs):,} runs in {seconds:.1f}s: {len(runs) / seconds:,.0f} runs/s")

    assert db.collections["runs"].count_documents({}) == len(runs)
    assert db.get_run(runs[12_345].run_id) == runs[12_345]
    assert db.append_run(Run(session_id="s-00007")).seq == 51


def test_export_of_runs_reads_the_session_seq_index(db: MongoDb, mongo: Any) -> None:
    for page in pages_of(runs_of(30, 10), 100):
        db.import_records(page)
    with COUNTER.counting(db.database_name) as tally:
        exported = export_all(db, "runs", limit=7)
    assert [(run.session_id, run.seq) for run in exported] == [
        (f"s-{s:05d}", seq) for s in range(30) for seq in range(1, 11)
    ]
    assert set(tally.commands) == {"find"}
    assert len(tally.commands) <= 2 * (300 // 7 + 1)  # at most two finds per page
    for find in tally.finds:
        explained = explain_find(mongo.client, db.database_name, find)
        assert plan_uses_index(explained), (find, explained)


def test_a_rerun_of_a_page_cut_short_completes_it(db: MongoDb) -> None:
    memories = [
        Memory(memory_id=f"m-{i}", user_id="ada", content=f"fact {i}", created_at=T0)
        for i in range(10)
    ]
    vectors = {f"m-{i}": Embedding(model="e", vector=[1.0, float(i)]) for i in range(0, 10, 3)}
    page = RecordPage(kind="memories", records=memories, embeddings=vectors)
    half = RecordPage(
        kind="memories",
        records=memories[::2],
        embeddings={key: vector for key, vector in vectors.items() if int(key[2:]) % 2 == 0},
    )
    db.import_records(half)
    db.import_records(page)
    db.import_records(page)
    exported = db.export_records("memories", user_id="ada")
    assert sorted(exported.records, key=lambda m: m.memory_id) == sorted(
        memories, key=lambda m: m.memory_id
    )
    assert exported.embeddings == vectors


def test_a_seq_held_by_another_run_stops_the_page_before_its_write(db: MongoDb) -> None:
    db.import_records(RecordPage(kind="runs", records=runs_of(1, 3)))
    intruder = Run(session_id="s-00000", seq=2, input="another run at seq 2")
    fine = Run(session_id="s-00000", seq=4)
    with COUNTER.counting(db.database_name) as tally, pytest.raises(ValueError) as refused:
        db.import_records(RecordPage(kind="runs", records=[fine, intruder]))
    assert tally.commands == ["find"]
    message = str(refused.value)
    assert all(part in message for part in ("s-00000", "seq 2", intruder.run_id, "r-00000-002"))
    assert db.get_run(fine.run_id) is None

    twins = [Run(session_id="s-9", seq=1), Run(session_id="s-9", seq=1)]
    with COUNTER.counting(db.database_name) as tally, pytest.raises(ValueError, match="page"):
        db.import_records(RecordPage(kind="runs", records=twins))
    assert tally.commands == []


def test_an_imported_run_replaces_a_stored_pending_one(db: MongoDb) -> None:
    """A run stored with the marker of an unfinished commit, imported again: the imported
    record is what is stored, a finished run (the marker goes)."""
    run = runs_of(1, 1)[0]
    db.import_records(RecordPage(kind="runs", records=[run]))
    marker = {"t": "x", "e": None, "user_id": "u-0"}
    db.collections["runs"].update_one({"_id": run.run_id}, {"$set": {"pending": marker}})
    db.import_records(RecordPage(kind="runs", records=[run]))
    assert "pending" not in db.collections["runs"].find_one({"_id": run.run_id})
    assert db.get_run(run.run_id) == run


# -- export: cursors and unfinished commits ------------------------------------------------------
def test_a_cursor_of_another_kind_or_backend_is_refused(db: MongoDb) -> None:
    db.import_records(RecordPage(kind="sessions", records=[Session(), Session()]))
    cursor = db.export_records("sessions", limit=1).cursor
    assert cursor is not None
    for wrong in (cursor, "not json", '["runs","s",true]', '["runs","s"]'):
        with pytest.raises(ValueError, match="cursor"):
            db.export_records("runs", after=wrong)


class Killed(BaseException):
    """The writer's process killed at a server call (nothing after it runs)."""


class DiesAt:
    """A collection whose ``method`` kills the caller instead of reaching the server."""

    def __init__(self, collection: Any, method: str) -> None:
        self._collection, self._method = collection, method

    def __getattr__(self, name: str) -> Any:
        if name == self._method:
            raise Killed(f"killed at {self._collection.name}.{name}")
        return getattr(self._collection, name)


def _interrupted_commit(
    mongo_kwargs: dict[str, str], table: str, method: str, session: Session, version: int
) -> Run:
    dying = MongoDb(**mongo_kwargs)
    dying.create_tables()
    dying.collections = {**dying.collections, table: DiesAt(dying.collections[table], method)}
    run = Run(session_id=session.session_id, input="the interrupted turn")
    with pytest.raises(Killed):
        dying.commit_turn(run, session, expected_version=version)
    dying.close()
    return run


def test_export_shows_the_runs_of_unfinished_commits_as_reads_do(
    db: MongoDb, mongo_kwargs: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit killed before its session write is not stored: the export skips its run
    (and goes on past it). One killed after it is stored: the export finishes it and shows
    it. Either way the export holds what ``get_run`` shows."""
    monkeypatch.setattr(calls, "client_bulk_write", lambda client: False)
    chat = db.upsert_session(Session(session_id="chat", user_id="ada"), expected_version=None)
    db.append_run(Run(session_id="chat", input="first"))
    lost = _interrupted_commit(mongo_kwargs, "sessions", "find_one_and_update", chat, 1)
    later = db.append_run(Run(session_id="chat", input="after the lost one"))
    assert db.collections["runs"].count_documents({"pending": {"$exists": True}}) == 1

    for user in (None, "ada"):
        exported = export_all(db, "runs", user_id=user, limit=1)
        assert lost.run_id not in [run.run_id for run in exported]
        assert exported[-1] == later
    assert db.get_run(lost.run_id) is None

    other = db.upsert_session(Session(session_id="other", user_id="ada"), expected_version=None)
    applied = _interrupted_commit(mongo_kwargs, "runs", "update_one", other, 1)
    exported = export_all(db, "runs", user_id="ada", limit=2)
    assert applied.run_id in [run.run_id for run in exported]
    assert (
        db.collections["runs"].find_one({"_id": applied.run_id, "pending": {"$exists": True}})
        is None
    )


# -- storage_report: read-only ------------------------------------------------------------------
def test_storage_report_of_a_new_database_creates_nothing(db: MongoDb, mongo: Any) -> None:
    database = mongo.client[db.database_name]
    before = sorted(database.list_collection_names())
    report = db.storage_report()
    assert sorted(database.list_collection_names()) == before == []
    assert report.backend == "mongo" and report.target == db.storage_target()
    assert report.schema_versions == {} and report.counts == {}
    assert set(report.expected_versions) == {
        "sessions",
        "runs",
        "memories",
        "learnings",
        "schema_versions",
    }
    assert report.missing == [
        f"collection {db.collection_prefix}{name}" for name in report.expected_versions
    ]
    assert not report.healthy
    assert report.server_version and "MongoDB" in report.server_version


def test_storage_report_shows_what_was_dropped_by_hand(
    db: MongoDb, mongo_kwargs: dict[str, str]
) -> None:
    db.import_records(RecordPage(kind="runs", records=runs_of(2, 3)))
    report = db.storage_report()
    assert report.healthy, report.missing
    assert report.counts == {"sessions": 0, "runs": 6, "memories": 0, "learnings": 0}
    assert {cap.name: cap.available for cap in report.capabilities}["vector search"]

    runs = db.collections["runs"]
    (unique,) = [
        name
        for name, info in runs.index_information().items()
        if [field for field, _ in info["key"]] == ["session_id", "seq"]
    ]
    runs.drop_index(unique)
    db.collections["learnings"].drop()
    report = db.storage_report()
    prefix = db.collection_prefix
    assert report.missing == [
        f"index {prefix}runs.session_seq on (session_id, seq)",
        f"collection {prefix}learnings",
    ]
    assert not report.healthy
    capability = {cap.name: cap for cap in report.capabilities}["vector search"]
    assert not capability.available and capability.fix
    # Nothing was put back by the report; create_tables (kern doctor --repair) does.
    assert "learnings" not in [
        name[len(prefix) :] for name in runs.database.list_collection_names()
    ]
    db.close()
    repaired = MongoDb(**mongo_kwargs)
    try:
        repaired.create_tables()
        assert repaired.storage_report().healthy
    finally:
        repaired.close()


def test_async_storage_report_is_read_only(mongo_kwargs: dict[str, str], mongo: Any) -> None:
    async def scenario() -> None:
        db = AsyncMongoDb(**mongo_kwargs)
        try:
            empty = await db.storage_report()
            assert mongo.client[db.database_name].list_collection_names() == []
            assert not empty.healthy
            await db.create_tables()
            assert (await db.storage_report()).healthy
        finally:
            await db.close()

    asyncio.run(scenario())
