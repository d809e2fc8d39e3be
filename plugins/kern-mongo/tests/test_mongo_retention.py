"""Retention on MongoDB (``kern.db.mongo.retention``): the three rules, sync and async, with
the receipt checked against raw ``count_documents``; what every rule keeps; dry runs;
cursors over batches (ties in time included); every lookup through an index; and the
``created`` index that runs' schema version 3 brings to an existing database.

The rules' behaviour shared by every backend is in the conformance suite (topic
``retention``); here, what MongoDB adds to it and the cases its own code has to get right.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mongo_probes import explain_find, plan_uses_index, shared_counter

from kern.db.mongo import AsyncMongoDb, MongoDb, codec
from kern.db.transfer import RecordPage
from kern.errors import RetentionError
from kern.records import Run, RunStatus, Session, SessionType
from kern.retention import RetentionBatch, RetentionPolicy, RetentionRule, RuleKind

COUNTER = shared_counter()

#: Day 0 of the tests' calendar.
DAY0 = datetime(2024, 1, 1, 12, tzinfo=UTC)


def day(n: float) -> datetime:
    return DAY0 + timedelta(days=n)


class Store:
    """A ``MongoDb`` or an ``AsyncMongoDb`` called the same way (the async one on one event
    loop kept for the test), and its raw collections through the session's sync client."""

    def __init__(self, db: Any, client: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        self.db = db
        self.client = client
        self.loop = loop

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.db, name)
        loop = self.loop
        if loop is None:
            return method  # type: ignore[no-any-return]
        return lambda *args, **kwargs: loop.run_until_complete(method(*args, **kwargs))

    def raw(self, table: str) -> Any:
        return self.client[self.db.database_name][f"{self.db.collection_prefix}{table}"]

    def count(self, table: str) -> int:
        return int(self.raw(table).count_documents({}))

    def seqs(self, session_id: str) -> list[int]:
        return [doc["seq"] for doc in self.raw("runs").find({"session_id": session_id})]


@pytest.fixture(params=["sync", "async"])
def store(
    request: pytest.FixtureRequest, mongo: Any, mongo_kwargs: dict[str, Any]
) -> Iterator[Store]:
    if request.param == "sync":
        db = MongoDb(**mongo_kwargs)
        db.create_tables()
        yield Store(db, mongo.client, None)
        db.close()
        return
    loop = asyncio.new_event_loop()
    adb = AsyncMongoDb(**mongo_kwargs)
    loop.run_until_complete(adb.create_tables())
    try:
        yield Store(adb, mongo.client, loop)
    finally:
        loop.run_until_complete(adb.close())
        loop.close()


@pytest.fixture
def db(mongo: Any, mongo_kwargs: dict[str, Any]) -> Iterator[Store]:
    """The sync store only (for the command counter and explain)."""
    db = MongoDb(**mongo_kwargs)
    db.create_tables()
    yield Store(db, mongo.client, None)
    db.close()


def runs_on_days(
    session_id: str, days: list[float], *, first_seq: int = 1, **fields: Any
) -> list[Run]:
    return [
        Run(session_id=session_id, seq=seq, created_at=day(d), input=f"turn {seq}", **fields)
        for seq, d in enumerate(days, start=first_seq)
    ]


def session_on(session_id: str, updated: float) -> Session:
    return Session(
        session_id=session_id,
        session_type=SessionType.AGENT,
        user_id="ada",
        created_at=day(updated - 1),
        updated_at=day(updated),
        version=1,
    )


def put(store: Store, *records: Session | Run) -> None:
    """Store records as they are (timestamps, seqs): one import per kind."""
    sessions = [record for record in records if isinstance(record, Session)]
    runs = [record for record in records if isinstance(record, Run)]
    if sessions:
        store.import_records(RecordPage("sessions", sessions))
    if runs:
        store.import_records(RecordPage("runs", runs))


def put_pending(store: Store, run: Run, *, expected: int | None = 1) -> None:
    """``run`` as a commit_turn interrupted after its run's insert leaves it: with the
    ``pending`` marker (``kern.db.mongo.ops``)."""
    assert run.seq is not None
    doc = codec.run_doc(run, run.seq)
    doc["pending"] = {"t": "interrupted", "e": expected, "user_id": run.user_id}
    store.raw("runs").insert_one(doc)


# -- the acceptance case ---------------------------------------------------------------------
def test_runs_days_30_removes_exactly_the_runs_older_than_30_days(store: Store) -> None:
    runs = runs_on_days("s", [float(d) for d in range(61)])  # day 0 .. day 60, seq 1 .. 61
    put(store, session_on("s", 60), *runs)
    before = store.count("runs")

    receipt = store.apply_retention(RetentionPolicy(runs_days=30), now=day(60))

    removed = before - store.count("runs")
    assert receipt.deleted["runs"] == removed == 30
    assert receipt.finished and not receipt.dry_run
    left = sorted(store.raw("runs").find({}), key=lambda doc: doc["seq"])
    assert [codec.read_stamp(doc, "created_at") for doc in left] == [day(d) for d in range(30, 61)]
    assert store.get_run(runs[29].run_id) is None and store.get_run(runs[30].run_id) is not None
    assert store.append_run(Run(session_id="s", created_at=day(60))).seq == 62
    again = store.apply_retention(RetentionPolicy(runs_days=30), now=day(60))
    assert again.deleted == {"sessions": 0, "runs": 0}


# -- the three rules -------------------------------------------------------------------------
def test_idle_sessions_go_with_all_their_runs(store: Store) -> None:
    put(
        store,
        session_on("idle", 10),
        session_on("recent", 95),
        session_on("busy", 10),
        session_on("committing", 10),
        *runs_on_days("idle", [9, 9, 9]),
        *runs_on_days("recent", [94]),
        *runs_on_days("busy", [9]),
        *runs_on_days("busy", [9], first_seq=2, status=RunStatus.RUNNING),
        *runs_on_days("committing", [9]),
    )
    put_pending(store, runs_on_days("committing", [9], first_seq=2)[0])
    before = {table: store.count(table) for table in ("sessions", "runs")}

    receipt = store.apply_retention(RetentionPolicy(idle_session_days=30), now=day(100))

    assert receipt.deleted == {"sessions": 1, "runs": 3}
    assert {table: before[table] - store.count(table) for table in before} == receipt.deleted
    assert store.get_session("idle") is None and store.seqs("idle") == []
    for kept in ("recent", "busy", "committing"):
        assert store.raw("sessions").find_one({"_id": kept}) is not None
    assert sorted(store.seqs("committing")) == [1, 2]


def test_runs_before_keeps_running_work_the_newest_run_and_unfinished_commits(
    store: Store,
) -> None:
    done, running = runs_on_days("wf", [0, 1], status=RunStatus.COMPLETED)
    running = running.model_copy(update={"status": RunStatus.RUNNING})
    (step,) = runs_on_days("wf", [2], first_seq=3, parent_run_id=running.run_id)
    (finished_step,) = runs_on_days("wf", [2], first_seq=4, parent_run_id=done.run_id)
    (last_settled,) = runs_on_days("wf", [3], first_seq=5)
    put(store, done, running, step, finished_step, last_settled, *runs_on_days("other", [0, 1]))
    put_pending(store, runs_on_days("wf", [4], first_seq=6)[0])  # an unfinished commit
    before = store.count("runs")

    receipt = store.apply_retention(RetentionPolicy(runs_days=10), now=day(60))

    # Gone: wf's first run and the finished step under it; other's first run.
    assert receipt.deleted == {"sessions": 0, "runs": 3} and before - store.count("runs") == 3
    assert sorted(store.seqs("wf")) == [2, 3, 5, 6]  # running, its step, newest settled, pending
    assert store.seqs("other") == [2]  # its newest run stays
    assert store.append_run(Run(session_id="other")).seq == 3
    assert store.raw("runs").count_documents({"session_id": "wf", "pending": {"$exists": True}})
    # Finished, the workflow's runs go like any others.
    store.update_run(running.run_id, status=RunStatus.COMPLETED)
    receipt = store.apply_retention(RetentionPolicy(runs_days=10), now=day(60))
    assert receipt.deleted["runs"] == 3  # wf's 2 and 3; other's 2, no longer its newest
    assert sorted(store.seqs("wf")) == [5, 6] and store.seqs("other") == [3]


def test_keep_last_runs_in_each_session(store: Store) -> None:
    runs = runs_on_days("long", [1, 2, 3, 4, 5, 6, 7, 8])
    running = runs[2].model_copy(update={"status": RunStatus.RUNNING})  # seq 3
    runs[2] = running
    runs[3] = runs[3].model_copy(update={"parent_run_id": running.run_id})  # seq 4
    put(store, session_on("long", 8), *runs, *runs_on_days("short", [1, 2]))
    put(store, *runs_on_days("no-session-document", [1, 2, 3, 4]))
    put_pending(store, runs_on_days("long", [1], first_seq=9)[0])
    before = store.count("runs")

    receipt = store.apply_retention(RetentionPolicy(keep_last_runs=3))

    # long: the highest settled seq is 8 (9 is pending): seq <= 5 go but 3 (running) and 4
    # (its step). no-session-document: seq 1. short keeps both.
    assert receipt.deleted == {"sessions": 0, "runs": 4} and before - store.count("runs") == 4
    assert sorted(store.seqs("long")) == [3, 4, 6, 7, 8, 9]
    assert sorted(store.seqs("short")) == [1, 2]
    assert sorted(store.seqs("no-session-document")) == [2, 3, 4]
    assert store.append_run(Run(session_id="no-session-document")).seq == 5


def test_the_next_append_continues_the_seq_whatever_the_rules_removed(store: Store) -> None:
    put(store, session_on("s", 5), *runs_on_days("s", [0, 1, 2, 3]))
    receipt = store.apply_retention(
        RetentionPolicy(runs_days=1, keep_last_runs=1), now=day(90), batch_size=1
    )
    assert receipt.deleted["runs"] == 3 and store.seqs("s") == [4]
    assert store.append_run(Run(session_id="s")).seq == 5
    assert (
        store.commit_turn(Run(session_id="s"), store.get_session("s"), expected_version=1)[0].seq
        == 6
    )


# -- dry runs and cursors --------------------------------------------------------------------
def test_a_dry_run_counts_what_the_real_one_removes_and_writes_nothing(store: Store) -> None:
    put(
        store,
        session_on("idle", 1),
        session_on("live", 50),
        *runs_on_days("idle", [0, 1]),
        *runs_on_days("live", [0, 1, 2, 40, 41]),
    )
    documents = {table: list(store.raw(table).find({})) for table in ("sessions", "runs")}
    rules = [
        RetentionRule(kind=RuleKind.IDLE_SESSIONS, cutoff=day(20)),
        RetentionRule(kind=RuleKind.RUNS_BEFORE, cutoff=day(30)),
        RetentionRule(kind=RuleKind.KEEP_LAST_RUNS, keep=1),
    ]
    dry = [store.retention_batch(rule, limit=100, dry_run=True) for rule in rules]
    assert {table: list(store.raw(table).find({})) for table in documents} == documents
    assert dry == [
        RetentionBatch(counts={"sessions": 1, "runs": 2}),
        RetentionBatch(counts={"runs": 4}),  # live's 1, 2, 3 and idle's 1
        RetentionBatch(counts={"runs": 5}),  # live's 1 .. 4 and idle's 1
    ]
    for rule, counted in zip(rules, dry, strict=True):
        for table in documents:
            documents[table] = list(store.raw(table).find({}))
        real = store.retention_batch(rule, limit=100)
        removed = {table: len(documents[table]) - store.count(table) for table in real.counts}
        assert real.counts == removed
        assert set(real.counts) == set(counted.counts)


def _walk(store: Store, rule: RetentionRule, *, dry_run: bool) -> list[RetentionBatch]:
    batches: list[RetentionBatch] = []
    after = None
    while True:
        batch = store.retention_batch(rule, limit=2, after=after, dry_run=dry_run)
        batches.append(batch)
        after = batch.after
        if after is None:
            return batches
        assert len(batches) < 10, "the cursor must move on"


@pytest.mark.parametrize("dry_run", [True, False])
def test_batches_of_two_over_five_old_runs(store: Store, dry_run: bool) -> None:
    put(store, *runs_on_days("s", [0, 1, 2, 3, 4, 50]))
    rule = RetentionRule(kind=RuleKind.RUNS_BEFORE, cutoff=day(30))
    batches = _walk(store, rule, dry_run=dry_run)
    assert [batch.counts["runs"] for batch in batches] == [2, 2, 1]
    assert sorted(store.seqs("s")) == ([1, 2, 3, 4, 5, 6] if dry_run else [6])


def test_runs_created_in_the_same_microsecond_are_walked_once_each(store: Store) -> None:
    """The cursor continues inside a group of equal times (session_id, then seq)."""
    put(
        store,
        *runs_on_days("a", [0, 0, 0, 9]),
        *runs_on_days("b", [0, 0, 9]),
    )
    rule = RetentionRule(kind=RuleKind.RUNS_BEFORE, cutoff=day(5))
    assert [b.counts["runs"] for b in _walk(store, rule, dry_run=True)] == [2, 2, 1]
    assert [b.counts["runs"] for b in _walk(store, rule, dry_run=False)] == [2, 2, 1]
    assert sorted(store.seqs("a")) == [4] and sorted(store.seqs("b")) == [3]


@pytest.mark.parametrize("dry_run", [True, False])
@pytest.mark.parametrize(
    "updated",
    [[1, 2, 3, 4, 5], [3, 3, 3, 3, 3], [1, 2, 2, 2, 3], [1, 2, 2, 3, 3]],
    ids=["apart", "one-time", "three-at-once", "pairs"],
)
def test_batches_of_two_over_five_idle_sessions(
    store: Store, updated: list[int], dry_run: bool
) -> None:
    """Sessions updated in the same microsecond are taken in _id order, across batches."""
    sessions = [session_on(f"s{i}", d) for i, d in enumerate(updated)]
    put(store, session_on("recent", 40), *sessions, *runs_on_days("s3", [0]))
    rule = RetentionRule(kind=RuleKind.IDLE_SESSIONS, cutoff=day(20))
    batches = _walk(store, rule, dry_run=dry_run)
    assert [batch.counts["sessions"] for batch in batches] == [2, 2, 1]
    assert sum(batch.counts["runs"] for batch in batches) == 1
    assert store.count("sessions") == (6 if dry_run else 1)


@pytest.mark.parametrize("dry_run", [True, False])
def test_batches_of_two_over_five_sessions_keeping_their_last_run(
    store: Store, dry_run: bool
) -> None:
    put(store, *[run for i in range(5) for run in runs_on_days(f"s{i}", [0, 1, 2])])
    rule = RetentionRule(kind=RuleKind.KEEP_LAST_RUNS, keep=1)
    batches = _walk(store, rule, dry_run=dry_run)
    assert [batch.counts["runs"] for batch in batches] == [4, 4, 2]
    assert store.count("runs") == (15 if dry_run else 5)


def test_a_cursor_of_another_rule_is_refused(store: Store) -> None:
    put(store, *runs_on_days("s", [0, 1, 2, 3]))
    old = RetentionRule(kind=RuleKind.RUNS_BEFORE, cutoff=day(30))
    after = store.retention_batch(old, limit=2, dry_run=True).after
    assert after is not None
    idle = RetentionRule(kind=RuleKind.IDLE_SESSIONS, cutoff=day(30))
    with pytest.raises(RetentionError, match="not a cursor of a idle_sessions batch"):
        store.retention_batch(idle, limit=2, after=after)
    with pytest.raises(RetentionError, match="cursor"):
        store.retention_batch(old, limit=2, after="not json")
    with pytest.raises(RetentionError, match="cursor"):
        store.retention_batch(old, limit=2, after='["runs_before", 5]')
    assert store.count("runs") == 4


# -- indexes ---------------------------------------------------------------------------------
def test_every_lookup_of_a_retention_walks_an_index(db: Store) -> None:
    """Each find and each delete's filter, as sent, explained by the server: an index, never
    a collection scan (nx-27017 reports SQLite's plan; MongoDB its stages)."""
    (running,) = runs_on_days("live", [2], first_seq=9, status=RunStatus.RUNNING)
    put(
        db,
        session_on("idle-a", 1),
        session_on("idle-b", 1),
        session_on("idle-c", 1),
        session_on("live", 50),
        *runs_on_days("idle-a", [0, 1]),
        *runs_on_days("live", [0, 0, 0, 1, 2, 3, 40, 41]),
        running,
        *runs_on_days("live", [2], first_seq=10, parent_run_id=running.run_id),
        *runs_on_days("live", [43], first_seq=11),
    )
    with COUNTER.counting(db.db.database_name) as tally:
        receipt = db.apply_retention(
            RetentionPolicy(idle_session_days=20, runs_days=30, keep_last_runs=2),
            now=day(45),
            batch_size=2,
        )
    assert receipt.finished and receipt.deleted["runs"] > 0 and receipt.deleted["sessions"] == 3
    assert tally.lookups
    for lookup in tally.lookups:
        plan = explain_find(db.client, db.db.database_name, lookup)
        assert plan_uses_index(plan), (lookup, plan["queryPlanner"])


def test_the_created_index_comes_to_an_existing_database(
    db: Store, mongo: Any, mongo_kwargs: dict[str, Any]
) -> None:
    runs = db.raw("runs")
    (created,) = [
        name
        for name, info in runs.index_information().items()
        if [field for field, _ in info["key"]] == ["created_at_us", "session_id", "seq"]
    ]
    # A database of the version before: without the index, its runs at version 2.
    runs.drop_index(created)
    db.raw("schema_versions").update_one({"_id": "runs"}, {"$set": {"version": 2}})
    report = db.storage_report()
    assert f"index {db.db.collection_prefix}runs.created on (created_at_us, session_id, seq)" in (
        report.missing
    )
    reopened = MongoDb(**mongo_kwargs)
    try:
        reopened.create_tables()
        fields = [[field for field, _ in info["key"]] for info in runs.index_information().values()]
        assert ["created_at_us", "session_id", "seq"] in fields
        assert db.raw("schema_versions").find_one({"_id": "runs"})["version"] == 3
        assert reopened.storage_report().healthy
    finally:
        reopened.close()
