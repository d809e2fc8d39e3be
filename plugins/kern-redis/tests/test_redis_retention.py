"""Retention on Redis (``kern.db.redis.retention``), checked against the raw keys: the three
rules sync and async, standalone and on a cluster; dry runs write nothing; bounded batches
and their cursors; what is never removed; the seq goes on; the indexes retention reads are
kept by every writer and backfilled for an older database; forget_user leaves no trace of
them; and a turn sends no more round trips than before. The rules on every backend: the
conformance topic ``retention``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
import redis
import redis.cluster

from kern.db.redis import AsyncRedisDb, RedisDb, codec
from kern.db.redis.plans import SyncRunner
from kern.db.transfer import RecordPage
from kern.errors import RetentionError
from kern.records import Message, Run, RunStatus, Session
from kern.retention import RetentionPolicy, RetentionRule, RuleKind

Space = Callable[[str], tuple[str, str]]

DAY0 = datetime(2024, 1, 1, 12, tzinfo=UTC)


def day(n: float) -> datetime:
    return DAY0 + timedelta(days=n)


def turn(session_id: str, seq: int | None = None, *, created: float, **fields: Any) -> Run:
    return Run(
        session_id=session_id,
        seq=seq,
        input=f"question {seq}",
        messages=[Message(role="user", content=f"question {seq}")],
        output=f"answer {seq}",
        created_at=day(created),
        **fields,
    )


class Raw:
    """The database as redis-py sees it, not through kern."""

    def __init__(self, url: str, prefix: str, *, cluster: bool) -> None:
        plain = url.removesuffix("?cluster=true")
        self.client: Any = (
            redis.cluster.RedisCluster.from_url(plain) if cluster else redis.Redis.from_url(url)
        )
        self.prefix = prefix
        self.cluster = cluster

    def base(self, session_id: str) -> str:
        return f"{self.prefix}{{s:{quote(session_id, safe='')}}}:"

    def runs(self, *session_ids: str) -> int:
        return sum(int(self.client.hlen(self.base(sid) + "runs")) for sid in session_ids)

    def sessions(self, *session_ids: str) -> int:
        return sum(int(self.client.exists(self.base(sid) + "session")) for sid in session_ids)

    def indexed(self, session_id: str) -> tuple[int, int]:
        """Entries of the session's seq index and of its created_at index."""
        base = self.base(session_id)
        return int(self.client.zcard(base + "r:all")), int(self.client.zcard(base + "r:ct"))

    def oldest_score(self, session_id: str) -> int | None:
        score = self.client.zscore(f"{self.prefix}{{ro}}:sess", session_id)
        return None if score is None else int(score)

    def all_keys(self) -> list[str]:
        """Every key under the prefix (a test looking at storage; kern never scans)."""
        found = self.client.scan_iter(match=f"{self.prefix}*", count=1000)
        return sorted(k.decode() for k in found)

    def snapshot(self) -> dict[str, Any]:
        """Every key with its type, value and whether it expires."""
        read = {
            "string": self.client.get,
            "hash": self.client.hgetall,
            "set": self.client.smembers,
            "zset": lambda key: self.client.zrange(key, 0, -1, withscores=True),
        }
        found = {}
        for key in self.all_keys():
            kind = self.client.type(key).decode()
            found[key] = (kind, read[kind](key), self.client.ttl(key) > 0)
        return found

    def close(self) -> None:
        self.client.close()


@pytest.fixture(params=["redis_url", "cluster_nodes"])
def where(request: pytest.FixtureRequest, redis_space: Space) -> Iterator[tuple[str, str, bool]]:
    url, prefix = redis_space(request.param)
    yield url, prefix, request.param == "cluster_nodes"


def _import_daily(db: RedisDb, sid: str, days: int, user: str | None = "u") -> list[Run]:
    runs = [turn(sid, n + 1, created=n, user_id=user) for n in range(days)]
    db.import_records(RecordPage("runs", runs))
    return runs


def _seqs(db: RedisDb, sid: str) -> list[int]:
    return [run.seq or 0 for run in db.get_last_runs(sid, 10_000)]


def _batches(db: Any, rule: RetentionRule, limit: int, *, dry_run: bool) -> list[int]:
    """What each batch of ``rule`` removed (or counted), run to its end by hand."""
    per_batch: list[int] = []
    after: str | None = None
    while True:
        batch = db.retention_batch(rule, limit=limit, after=after, dry_run=dry_run)
        per_batch.append(sum(batch.counts.values()) if rule.kind is not RuleKind.IDLE_SESSIONS
                         else batch.counts["sessions"])  # fmt: skip
        after = batch.after
        if after is None:
            return per_batch
        assert len(per_batch) < 20, "the cursor must move on"


# -- runs_before ---------------------------------------------------------------------------------
def test_thirty_days_of_sixty_go_exactly(where: tuple[str, str, bool]) -> None:
    """The acceptance case: a run a day for days 0..60, ``runs_days=30`` at day 60 removes
    the 30 runs older than day 30, and the receipt says so as a raw count does."""
    url, prefix, cluster = where
    db = RedisDb(db_url=url, key_prefix=prefix)
    raw = Raw(url, prefix, cluster=cluster)
    try:
        runs = _import_daily(db, "daily", 61)
        before = raw.runs("daily")

        receipt = db.apply_retention(RetentionPolicy(runs_days=30), now=day(60))

        after = raw.runs("daily")
        assert before == 61 and after == 31
        assert receipt.deleted == {"sessions": 0, "runs": before - after}
        assert receipt.finished and receipt.rules[0].batches == 1
        assert _seqs(db, "daily") == list(range(31, 62))
        assert raw.indexed("daily") == (31, 31)  # every index entry of the removed runs left
        assert all(raw.client.get(db.ctx.keys.claim(r.run_id)) is None for r in runs[:30])
        assert db.get_run(runs[30].run_id) == runs[30].model_copy(update={"seq": 31})
        # The session moved on in the index retention reads: to its oldest run left.
        assert raw.oldest_score("daily") == codec.micros(day(30))
        assert db.append_run(turn("daily", created=61)).seq == 62
        again = db.apply_retention(RetentionPolicy(runs_days=30), now=day(60))
        assert again.deleted["runs"] == 0 and raw.runs("daily") == 32
    finally:
        raw.close()
        db.close()


def test_the_newest_run_stays_and_the_seq_goes_on(redis_space: Space) -> None:
    url, prefix = redis_space("redis_url")
    db = RedisDb(db_url=url, key_prefix=prefix)
    try:
        for n in range(3):
            db.append_run(turn("s", created=n))
        receipt = db.apply_retention(RetentionPolicy(runs_days=1), now=day(400))
        assert receipt.deleted["runs"] == 2
        assert _seqs(db, "s") == [3]
        assert db.append_run(turn("s", created=401)).seq == 4
    finally:
        db.close()


def test_runs_under_a_running_run_stay_even_in_another_session(
    where: tuple[str, str, bool],
) -> None:
    """A running run, its steps in its session, and a member run in another session whose
    parent is running, all stay; once the parent finishes they go like any other."""
    url, prefix, _ = where
    db = RedisDb(db_url=url, key_prefix=prefix)
    try:
        boss = db.append_run(Run(session_id="team", status=RunStatus.RUNNING, created_at=day(1)))
        step = db.append_run(Run(session_id="team", parent_run_id=boss.run_id, created_at=day(1)))
        db.append_run(Run(session_id="team", created_at=day(2)))  # the newest
        member = db.append_run(
            Run(session_id="member", parent_run_id=boss.run_id, created_at=day(1))
        )
        free = db.append_run(Run(session_id="member", parent_run_id="gone", created_at=day(1)))
        db.append_run(Run(session_id="member", created_at=day(2)))  # the newest
        policy = RetentionPolicy(runs_days=10)

        dry = db.apply_retention(policy, now=day(60), dry_run=True)
        receipt = db.apply_retention(policy, now=day(60))

        assert dry.deleted["runs"] == receipt.deleted["runs"] == 1  # the one whose parent is gone
        assert db.get_run(free.run_id) is None
        for kept in (boss, step, member):
            assert db.get_run(kept.run_id) is not None
        db.update_run(boss.run_id, status=RunStatus.COMPLETED)
        assert db.apply_retention(policy, now=day(60)).deleted["runs"] == 3
        assert _seqs(db, "team") == [3] and _seqs(db, "member") == [3]
    finally:
        db.close()


def test_a_cursor_walks_five_old_runs_two_at_a_time(redis_space: Space) -> None:
    url, prefix = redis_space("redis_url")
    db = RedisDb(db_url=url, key_prefix=prefix)
    try:
        for created in (0, 1, 2, 3, 4, 50):
            db.append_run(turn("s", created=created))
        rule = RetentionRule(kind=RuleKind.RUNS_BEFORE, cutoff=day(30))
        assert _batches(db, rule, 2, dry_run=True) == [2, 2, 1]
        assert _seqs(db, "s") == [1, 2, 3, 4, 5, 6]
        assert _batches(db, rule, 2, dry_run=False) == [2, 2, 1]
        assert _seqs(db, "s") == [6]
    finally:
        db.close()


def test_batches_across_sessions_finish_what_they_start(where: tuple[str, str, bool]) -> None:
    url, prefix, _ = where
    db = RedisDb(db_url=url, key_prefix=prefix)
    try:
        sids = [f"s{n}" for n in range(5)]
        for sid in sids:
            for created in (0, 1, 50):
                db.append_run(turn(sid, created=created))
        policy = RetentionPolicy(runs_days=30)
        first = db.apply_retention(policy, now=day(60), batch_size=3, max_batches=1)
        assert not first.finished and first.deleted["runs"] == 3
        rest = db.apply_retention(policy, now=day(60), batch_size=3)
        assert rest.finished and first.deleted["runs"] + rest.deleted["runs"] == 10
        assert all(_seqs(db, sid) == [3] for sid in sids)
    finally:
        db.close()


# -- keep_last_runs ------------------------------------------------------------------------------
def test_keep_last_runs_counts_each_sessions_surplus(where: tuple[str, str, bool]) -> None:
    url, prefix, cluster = where
    db = RedisDb(db_url=url, key_prefix=prefix)
    raw = Raw(url, prefix, cluster=cluster)
    try:
        for n in range(1, 8):  # a run-only session (no session row): it counts too
            db.append_run(turn("long", created=n))
        running = db.append_run(Run(session_id="long", status=RunStatus.RUNNING, created_at=day(8)))
        child = db.append_run(
            Run(session_id="long", parent_run_id=running.run_id, created_at=day(8))
        )
        for n in (9, 10):
            db.append_run(turn("long", created=n))
        db.upsert_session(Session(session_id="short"), expected_version=None)
        db.append_run(turn("short", created=1))
        before = raw.runs("long", "short")

        dry = db.apply_retention(RetentionPolicy(keep_last_runs=2), dry_run=True)
        assert raw.runs("long", "short") == before
        receipt = db.apply_retention(RetentionPolicy(keep_last_runs=2))

        assert dry.deleted == receipt.deleted == {"sessions": 0, "runs": 7}
        assert before - raw.runs("long", "short") == 7
        assert _seqs(db, "long") == [8, 9, 10, 11]  # the running run and its step stay
        assert _seqs(db, "short") == [1]
        assert raw.indexed("long") == (4, 4)
        assert db.get_run(child.run_id) is not None
    finally:
        raw.close()
        db.close()


def test_keep_last_runs_walks_five_sessions_two_at_a_time(redis_space: Space) -> None:
    url, prefix = redis_space("redis_url")
    db = RedisDb(db_url=url, key_prefix=prefix)
    try:
        for n in range(5):
            for created in range(3):
                db.append_run(turn(f"s{n}", created=created + n))
        rule = RetentionRule(kind=RuleKind.KEEP_LAST_RUNS, keep=1)
        assert _batches(db, rule, 2, dry_run=True) == [4, 4, 2]
        assert _batches(db, rule, 2, dry_run=False) == [4, 4, 2]
        assert all(_seqs(db, f"s{n}") == [3] for n in range(5))
    finally:
        db.close()


def test_a_long_surplus_goes_in_chunks(redis_space: Space) -> None:
    url, prefix = redis_space("redis_url")
    db = RedisDb(db_url=url, key_prefix=prefix)
    try:
        runs = [turn("long", n, created=n / 1000) for n in range(1, 1203)]
        db.import_records(RecordPage("runs", runs))
        receipt = db.apply_retention(RetentionPolicy(keep_last_runs=2))
        assert receipt.deleted["runs"] == 1200
        assert _seqs(db, "long") == [1201, 1202]
    finally:
        db.close()


# -- idle_sessions -------------------------------------------------------------------------------
def _idle(db: RedisDb, sid: str, updated: float, runs: int, user: str = "u") -> None:
    session = Session(
        session_id=sid,
        user_id=user,
        component_id="agent",
        name=f"idle {sid}",
        created_at=day(updated - 1),
        updated_at=day(updated),
        version=1,
    )
    db.import_records(RecordPage("sessions", [session]))
    stored = [turn(sid, n, created=updated - 1, user_id=user) for n in range(1, runs + 1)]
    if stored:
        db.import_records(RecordPage("runs", stored))


def test_idle_sessions_go_whole(where: tuple[str, str, bool]) -> None:
    url, prefix, cluster = where
    db = RedisDb(db_url=url, key_prefix=prefix)
    raw = Raw(url, prefix, cluster=cluster)
    try:
        _idle(db, "idle", 10, 3)
        _idle(db, "recent", 95, 2)
        _idle(db, "busy", 10, 1)
        db.append_run(Run(session_id="busy", status=RunStatus.RUNNING, created_at=day(9)))
        sids = ("idle", "recent", "busy")
        before = (raw.sessions(*sids), raw.runs(*sids))

        dry = db.apply_retention(RetentionPolicy(idle_session_days=30), now=day(100), dry_run=True)
        assert (raw.sessions(*sids), raw.runs(*sids)) == before
        receipt = db.apply_retention(RetentionPolicy(idle_session_days=30), now=day(100))

        assert dry.deleted == receipt.deleted == {"sessions": 1, "runs": 3}
        assert (raw.sessions(*sids), raw.runs(*sids)) == (before[0] - 1, before[1] - 3)
        # Nothing of the session is left: no key of its slot, no index entry, no claim.
        assert not [k for k in raw.all_keys() if "{s:idle}" in k]
        assert raw.oldest_score("idle") is None
        assert {s.session_id for s in db.list_sessions(user_id="u")} == {"recent", "busy"}
        assert [s.session_id for s in db.list_sessions(component_id="agent")] == [
            "recent",
            "busy",
        ]
        found = {s.session_id for s in db.search_sessions("u", "idle", limit=10)}
        assert found == {"recent", "busy"}  # their names say "idle" too
    finally:
        raw.close()
        db.close()


def test_idle_sessions_walk_five_two_at_a_time(redis_space: Space) -> None:
    url, prefix = redis_space("redis_url")
    db = RedisDb(db_url=url, key_prefix=prefix)
    try:
        for n in range(5):
            _idle(db, f"s{n}", 10, 1)
        rule = RetentionRule(kind=RuleKind.IDLE_SESSIONS, cutoff=day(50))
        assert _batches(db, rule, 2, dry_run=True) == [2, 2, 1]
        assert _batches(db, rule, 2, dry_run=False) == [2, 2, 1]
        assert db.list_sessions() == []
    finally:
        db.close()


# -- dry runs, async, cursors ----------------------------------------------------------------------
def test_a_dry_run_writes_nothing(where: tuple[str, str, bool]) -> None:
    url, prefix, cluster = where
    db = RedisDb(db_url=url, key_prefix=prefix)
    raw = Raw(url, prefix, cluster=cluster)
    try:
        _import_daily(db, "daily", 40)
        _idle(db, "idle", 5, 2)
        before = raw.snapshot()
        policy = RetentionPolicy(runs_days=30, keep_last_runs=5, idle_session_days=20)
        dry = db.apply_retention(policy, now=day(45), dry_run=True)
        assert raw.snapshot() == before
        assert [part.counts for part in dry.rules] == [
            {"sessions": 1, "runs": 2},
            {"runs": 15 + 1},  # the idle session's older run too: each rule counts alone
            {"runs": 35},
        ]
    finally:
        raw.close()
        db.close()


async def test_the_three_rules_on_the_async_db(redis_space: Space) -> None:
    url, prefix = redis_space("redis_url")
    sync = RedisDb(db_url=url, key_prefix=prefix)
    db = AsyncRedisDb(db_url=url, key_prefix=prefix)
    raw = Raw(url, prefix, cluster=False)
    try:
        _import_daily(sync, "daily", 61)
        _idle(sync, "idle", 5, 2)
        for n in range(6):
            await db.append_run(turn("many", created=50 + n))
        policy = RetentionPolicy(runs_days=30, keep_last_runs=3, idle_session_days=20)

        dry = await db.apply_retention(policy, now=day(60), dry_run=True)
        receipt = await db.apply_retention(policy, now=day(60))

        assert [part.counts for part in receipt.rules] == [
            {"sessions": 1, "runs": 2},
            {"runs": 30},
            {"runs": 28 + 3},
        ]
        assert dry.rules[0].counts == receipt.rules[0].counts
        assert raw.runs("daily", "idle", "many") == 3 + 3
        assert [r.seq for r in await db.get_last_runs("daily", 10)] == [59, 60, 61]
        assert (await db.append_run(turn("daily", created=61))).seq == 62
        rule = RetentionRule(kind=RuleKind.KEEP_LAST_RUNS, keep=1)
        first = await db.retention_batch(rule, limit=1)
        assert first.after is not None
        second = await db.retention_batch(rule, limit=1, after=first.after)
        assert first.counts["runs"] + second.counts["runs"] == 5
    finally:
        raw.close()
        sync.close()
        await db.close()


def test_a_cursor_of_another_kind_is_refused(redis_space: Space) -> None:
    url, prefix = redis_space("redis_url")
    db = RedisDb(db_url=url, key_prefix=prefix)
    try:
        rule = RetentionRule(kind=RuleKind.RUNS_BEFORE, cutoff=day(30))
        with pytest.raises(RetentionError, match="not a cursor of a runs_before batch"):
            db.retention_batch(rule, limit=2, after='["s",1]')
    finally:
        db.close()


# -- the indexes retention reads -------------------------------------------------------------------
def test_every_writer_keeps_the_indexes_retention_reads(where: tuple[str, str, bool]) -> None:
    """append_run, commit_turn, import_records and fork_session each index a run by
    created_at and lower its session's score among sessions holding runs."""
    url, prefix, cluster = where
    db = RedisDb(db_url=url, key_prefix=prefix)
    raw = Raw(url, prefix, cluster=cluster)
    try:
        db.append_run(turn("a", created=5))
        db.append_run(turn("a", created=3))  # older than the first: the score follows
        _, session = db.commit_turn(
            turn("c", created=7), Session(session_id="c"), expected_version=None
        )
        db.commit_turn(turn("c", created=8), session, expected_version=session.version)
        db.upsert_session(Session(session_id="i"), expected_version=None)
        _import_daily(db, "i", 4)
        db.fork_session("i", at_seq=2, new_session_id="f")
        assert raw.oldest_score("a") == codec.micros(day(3))
        assert raw.oldest_score("c") == codec.micros(day(7))
        assert raw.oldest_score("i") == raw.oldest_score("f") == codec.micros(day(0))
        assert [raw.indexed(s) for s in ("a", "c", "i", "f")] == [(2, 2), (2, 2), (4, 4), (2, 2)]
        db.delete_session("c")
        assert raw.oldest_score("c") is None
    finally:
        raw.close()
        db.close()


def test_entries_of_expired_sessions_are_dropped_by_retention(redis_space: Space) -> None:
    """A session whose keys expired (``session_ttl``) leaves entries in the all-sessions index
    and among sessions holding runs; the idle and runs_before passes drop them, counting
    nothing, so later passes do not read them again."""
    url, prefix = redis_space("redis_url")
    db = RedisDb(db_url=url, key_prefix=prefix)
    raw = Raw(url, prefix, cluster=False)
    try:
        _idle(db, "gone", 10, 2)
        for key in raw.all_keys():
            if "{s:gone}" in key:
                raw.client.delete(key)  # what the TTL does
        policy = RetentionPolicy(idle_session_days=30, runs_days=30)
        receipt = db.apply_retention(policy, now=day(100))
        assert receipt.deleted == {"sessions": 0, "runs": 0}
        assert raw.client.zscore(f"{prefix}{{sa}}:sess", "gone") is None
        assert raw.oldest_score("gone") is None
    finally:
        raw.close()
        db.close()


def test_a_raise_racing_an_old_append_is_undone_on_a_cluster(redis_space: Space) -> None:
    """On a cluster retention moves a session up in ``{ro}`` outside the append's slot. An
    append of a run older than every run of its session, whose first step (the ``ZADD LT``)
    came before that move, lowers the score again after its script; so does one into a
    session retention just found empty and dropped from ``{ro}``."""
    url, prefix = redis_space("cluster_nodes")
    db = RedisDb(db_url=url, key_prefix=prefix)
    raw = Raw(url, prefix, cluster=True)
    index = f"{prefix}{{ro}}:sess"
    execute = db._runner.execute
    between: list[Callable[[], Any]] = []

    def racing(step: Any) -> list[Any]:
        replies = execute(step)
        if between:  # right after the append's first step: retention's move lands
            between.pop()()
        return replies

    db._runner.execute = racing  # type: ignore[method-assign]
    try:
        for created in (0, 50):
            db.append_run(turn("s", created=created))
        db.apply_retention(RetentionPolicy(runs_days=30), now=day(60))
        assert raw.oldest_score("s") == codec.micros(day(50))

        raw.client.zadd(index, {"s": codec.micros(day(5))})  # as before retention's move
        between.append(lambda: raw.client.zadd(index, {"s": codec.micros(day(50))}))
        db.append_run(turn("s", created=10))
        assert raw.oldest_score("s") == codec.micros(day(10))

        raw.client.zadd(index, {"gone": codec.micros(day(1))})  # its keys expired
        db.apply_retention(RetentionPolicy(runs_days=30), now=day(60))
        assert raw.oldest_score("gone") is None
        raw.client.zadd(index, {"gone": codec.micros(day(1))})  # as before the drop
        between.append(lambda: raw.client.zrem(index, "gone"))
        db.append_run(turn("gone", created=20))
        assert raw.oldest_score("gone") == codec.micros(day(20))
        receipt = db.apply_retention(RetentionPolicy(runs_days=1), now=day(61))
        assert receipt.deleted["runs"] == 1  # s's day 50; its newest (seq 3, day 10) stays
        assert _seqs(db, "s") == [3] and _seqs(db, "gone") == [1]
    finally:
        raw.close()
        db.close()


def test_an_older_database_gets_the_indexes_by_migration(where: tuple[str, str, bool]) -> None:
    url, prefix, cluster = where
    db = RedisDb(db_url=url, key_prefix=prefix)
    raw = Raw(url, prefix, cluster=cluster)
    try:
        _import_daily(db, "daily", 61)
        for n in range(3):
            db.append_run(turn("other", created=40 + n))
        db.close()
        # The layout of runs version 1: no created_at index, no sessions-by-oldest-run.
        for key in raw.all_keys():
            if key.endswith((":r:ct", "{ro}:sess")):
                raw.client.delete(key)
        raw.client.hset(f"{prefix}{{meta}}:schema", "runs", 1)

        db = RedisDb(db_url=url, key_prefix=prefix)
        db.create_tables()
        assert db.schema_versions()["runs"] == 2
        assert raw.indexed("daily") == (61, 61)
        assert raw.oldest_score("other") == codec.micros(day(40))
        receipt = db.apply_retention(RetentionPolicy(runs_days=30), now=day(60))
        assert receipt.deleted["runs"] == 30
    finally:
        raw.close()
        db.close()


def test_forget_user_leaves_no_trace_in_the_retention_indexes(where: tuple[str, str, bool]) -> None:
    url, prefix, cluster = where
    user = "ret-victim-7f3a"
    db = RedisDb(db_url=url, key_prefix=prefix)
    raw = Raw(url, prefix, cluster=cluster)
    try:
        _import_daily(db, f"daily-of-{user}", 40, user=user)
        db.append_run(turn(f"runs-of-{user}", created=1, user_id=user))
        db.append_run(turn(f"runs-of-{user}", created=2, user_id=user))
        db.append_run(turn("shared", created=1, user_id=user))
        db.append_run(turn("shared", created=2, user_id="bystander"))
        db.upsert_session(Session(session_id=f"owned-{user}", user_id=user), expected_version=None)
        db.append_run(turn(f"owned-{user}", created=3, user_id=user))
        db.apply_retention(RetentionPolicy(runs_days=30, keep_last_runs=5), now=day(45))

        counts = db.forget_user(user)

        # Left after retention: 5 daily runs, the newest of runs-of-, the owned session's.
        assert counts["runs"] == 5 + 1 + 1 and counts["sessions"] == 1
        left = [key for key in raw.all_keys() if user in key]
        assert left == []
        members = [m.decode() for m in raw.client.zrange(f"{prefix}{{ro}}:sess", 0, -1)]
        assert members == ["shared"]
        assert _seqs(db, "shared") == [2]
    finally:
        raw.close()
        db.close()


# -- a turn's round trips ------------------------------------------------------------------------
def test_a_turn_sends_no_more_round_trips(where: tuple[str, str, bool]) -> None:
    """A turn's round trips (steps sent) with the retention indexes kept: standalone, one
    script each; on a cluster, the claim's pipeline (with the ``{ro}`` ZADD in it), the
    script, and the session indexes' step of an update, as before."""
    url, prefix, cluster = where
    db = RedisDb(db_url=url, key_prefix=prefix)
    sent: list[int] = []
    execute = db._runner.execute

    def counting(step: Any) -> list[Any]:
        sent.append(len(step))
        return execute(step)

    db._runner.execute = counting  # type: ignore[method-assign]
    try:
        assert isinstance(db._runner, SyncRunner)
        _, session = db.commit_turn(
            Run(session_id="s"), Session(session_id="s"), expected_version=None
        )
        measured = {}
        for name, call in (
            ("read_turn", lambda: db.read_turn("s", 3)),
            ("append_run", lambda: db.append_run(Run(session_id="s"))),
            (
                "commit_turn",
                lambda: db.commit_turn(
                    Run(session_id="s"), session, expected_version=session.version
                ),
            ),
            (
                "commit_turn, new session",
                lambda: db.commit_turn(
                    Run(session_id="n"), Session(session_id="n"), expected_version=None
                ),
            ),
            ("append_run, new session", lambda: db.append_run(Run(session_id="m"))),
        ):
            sent.clear()
            call()
            measured[name] = len(sent)
        expected = (
            {"read_turn": 1, "append_run": 3, "commit_turn": 3}
            if cluster
            else {"read_turn": 1, "append_run": 1, "commit_turn": 1}
        )
        assert {k: measured[k] for k in expected} == expected, measured
        assert measured["commit_turn, new session"] == (2 if cluster else 1), measured
        assert measured["append_run, new session"] == (2 if cluster else 1), measured
    finally:
        db.close()
