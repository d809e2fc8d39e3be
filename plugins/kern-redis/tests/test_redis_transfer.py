"""What the Redis backend's bulk paths do beyond the conformance suite's transfer topic: the
cost of a large import on the server's own counters, runs no index lists found by a whole
export, cursors that resume across ``SCAN`` rounds, an import that moves a run between
sessions or is refused on a cluster, byte-identical re-imports, the session TTL, and a
storage report that leaves the database as it found it."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import redis.cluster
from redis_probes import command_calls, diff  # beside conftest.py, which puts it on sys.path

from kern.db.redis import RedisDb
from kern.db.transfer import MAX_PAGE, RECORD_KINDS, RecordKind, RecordPage
from kern.errors import KernError
from kern.records import Embedding, Learning, Memory, Message, Run, RunStatus, Session

Space = Callable[[str], tuple[str, str]]
T0 = datetime(2024, 5, 1, 9, 30, 0, 250000, tzinfo=UTC)


def steps_sent(db: RedisDb) -> list[int]:
    """The sizes of the steps ``db`` sends from now on (each one round trip on a single
    server)."""
    sent: list[int] = []
    execute = db._runner.execute

    def counted(step: Any) -> Any:
        sent.append(len(step))
        return execute(step)

    db._runner.execute = counted  # type: ignore[method-assign]
    return sent


def raw_dump(url: str, prefix: str, *, cluster: bool = False) -> list[tuple[Any, ...]]:
    """Every key under ``prefix`` with its type, value(s), sorted-set scores and TTL."""
    plain = url.removesuffix("?cluster=true")
    client: Any = (
        redis.cluster.RedisCluster.from_url(plain) if cluster else redis.Redis.from_url(plain)
    )
    try:
        out = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            kind = client.type(key).decode()
            value: Any
            if kind == "string":
                value = client.get(key)
            elif kind == "hash":
                value = sorted(client.hgetall(key).items())
            elif kind == "set":
                value = sorted(client.smembers(key))
            else:
                value = client.zrange(key, 0, -1, withscores=True)
            out.append((key, kind, value, client.ttl(key) > 0))
        return sorted(out)
    finally:
        client.close()


def export_all(
    db: RedisDb, kind: RecordKind, *, limit: int = MAX_PAGE, user_id: str | None = None
) -> RecordPage:
    records: list[Any] = []
    vectors: dict[str, Embedding] = {}
    after = None
    while True:
        page = db.export_records(kind, after=after, limit=limit, user_id=user_id)
        records += page.records
        vectors |= page.embeddings
        if page.cursor is None:
            return RecordPage(kind=kind, records=records, embeddings=vectors)
        after = page.cursor


def sample(user: str) -> dict[RecordKind, RecordPage]:
    """One user's rows of every kind, runs in two sessions, vectors on some rows."""
    chat = Session(
        session_id=f"chat-{user}",
        user_id=user,
        component_id="crew",
        state={"step": 2},
        version=4,
        created_at=T0,
        updated_at=T0 + timedelta(minutes=3),
    )
    runs = [
        Run(
            session_id=chat.session_id,
            seq=seq,
            user_id=user,
            parent_run_id=None if seq % 2 else "lead",
            status=RunStatus.COMPLETED if seq < 4 else RunStatus.RUNNING,
            input=f"turn {seq}",
            messages=[Message(role="user", content=f"turn {seq}")],
            created_at=T0 + timedelta(seconds=seq),
        )
        for seq in range(1, 6)
    ]
    memories = [
        Memory(user_id=user, agent_id="crew", content=f"fact {n} about lakes", created_at=T0)
        for n in range(3)
    ]
    learnings = [
        Learning(kind="profile", user_id=user, content={"fact": f"likes {n}"}, created_at=T0)
        for n in range(2)
    ]
    vector = Embedding(model="tiny", vector=[0.5, -1.25, 2.0])
    return {
        "sessions": RecordPage(kind="sessions", records=[chat]),
        "runs": RecordPage(kind="runs", records=runs),
        "memories": RecordPage(
            kind="memories", records=memories, embeddings={memories[0].memory_id: vector}
        ),
        "learnings": RecordPage(
            kind="learnings", records=learnings, embeddings={learnings[1].learning_id: vector}
        ),
    }


# -- the bulk path's cost ---------------------------------------------------------------------
def test_an_import_of_50000_runs_is_one_script_per_page_and_appends_continue(
    redis_space: Space,
) -> None:
    """On a single server a page of runs is ONE script call (one round trip), whatever
    sessions it spans; the commands run inside it are a fixed number per run; no SCAN."""
    url, prefix = redis_space("counting_url")
    db = RedisDb(db_url=url, key_prefix=prefix)
    sessions, per_session, page = 100, 500, 1_000
    runs = [
        Run(
            run_id=f"r-{s:03d}-{n:03d}",
            session_id=f"s-{s:03d}",
            seq=n + 1,
            user_id=f"u-{s % 3}",
            input=f"question {n}",
            output=f"answer {n}",
            created_at=T0 + timedelta(seconds=n),
        )
        for s in range(sessions)
        for n in range(per_session)
    ]
    try:
        db.create_tables()
        sent = steps_sent(db)
        before = command_calls(db.client, cluster=False)
        started = time.perf_counter()
        for start in range(0, len(runs), page):
            assert db.import_records(RecordPage(kind="runs", records=runs[start : start + page]))
        seconds = time.perf_counter() - started
        used = diff(before, command_calls(db.client, cluster=False))
        pages = len(runs) // page
        assert sent == [1] * pages, sent
        # (+1: the first call may find the script not loaded yet, then load it and resend)
        assert pages <= used["evalsha"] <= pages + 1, used
        assert not {"scan", "keys", "eval"} & set(used), used
        # 13: with the created_at index retention reads (one ZADD per run)
        assert sum(used.values()) <= 13 * len(runs), used
        print(f"\nimported {len(runs):,} runs in {seconds:.2f} s: {len(runs) / seconds:,.0f}/s")

        for s in (0, 57, 99):
            sid = f"s-{s:03d}"
            assert db.append_run(Run(session_id=sid, input="next")).seq == per_session + 1
            assert [r.seq for r in db.get_last_runs(sid, 2)] == [per_session, per_session + 1]
        assert db.get_run("r-042-017") == runs[42 * per_session + 17]
    finally:
        db.close()


# -- whole-database exports ---------------------------------------------------------------------
@pytest.mark.parametrize("server", ["redis_url", "cluster_nodes"])
def test_the_whole_export_finds_runs_of_sessions_without_a_row(
    redis_space: Space, server: str
) -> None:
    url, prefix = redis_space(server)
    db = RedisDb(db_url=url, key_prefix=prefix)
    try:
        loose = [db.append_run(Run(session_id="no-row", input=f"step {n}")) for n in range(3)]
        visiting = db.append_run(Run(session_id="no-row", user_id="ann", input="hers"))
        whole = export_all(db, "runs", limit=2)
        assert whole.records == [*loose, visiting]
        assert export_all(db, "runs", user_id="ann").records == [visiting]
        assert export_all(db, "sessions").records == []
    finally:
        db.close()


@pytest.mark.parametrize("server", ["redis_url", "cluster_nodes"])
def test_whole_exports_in_small_pages_hold_every_row_once(redis_space: Space, server: str) -> None:
    """Pages far smaller than a SCAN round: the ids a page has no room for ride in the
    cursor; runs of a session split across pages keep their seq order."""
    url, prefix = redis_space(server)
    db = RedisDb(db_url=url, key_prefix=prefix)
    try:
        memories = [Memory(user_id=f"u{n % 7}", content=f"note {n}") for n in range(240)]
        db.import_records(RecordPage(kind="memories", records=memories))
        runs = [
            Run(session_id=f"s{s}", seq=n, created_at=T0) for s in range(30) for n in range(1, 8)
        ]
        db.import_records(RecordPage(kind="runs", records=runs))
        for limit in (1, 7, 100):
            found: list[Any] = list(export_all(db, "memories", limit=limit).records)
            assert sorted(m.memory_id for m in found) == sorted(m.memory_id for m in memories)
        for limit in (3, 50):
            exported: list[Any] = list(export_all(db, "runs", limit=limit).records)
            assert sorted((r.session_id, r.seq) for r in exported) == sorted(
                (r.session_id, r.seq) for r in runs
            )
            by_session: dict[str, list[int]] = {}
            for run in exported:
                by_session.setdefault(run.session_id, []).append(run.seq or 0)
            assert all(seqs == list(range(1, 8)) for seqs in by_session.values()), by_session
    finally:
        db.close()


def test_a_cursor_of_another_export_is_refused(redis_space: Space) -> None:
    url, prefix = redis_space("redis_url")
    db = RedisDb(db_url=url, key_prefix=prefix)
    try:
        db.import_records(sample("ann")["memories"])
        first = db.export_records("memories", limit=1, user_id="ann")
        assert first.cursor is not None
        with pytest.raises(ValueError, match="not a cursor of this export"):
            db.export_records("learnings", after=first.cursor, user_id="ann")
        with pytest.raises(ValueError, match="not a cursor of this export"):
            db.export_records("memories", after=first.cursor, user_id="bob")
        with pytest.raises(ValueError, match="not a cursor"):
            db.export_records("memories", after="not json")
    finally:
        db.close()


# -- imports --------------------------------------------------------------------------------------
@pytest.mark.parametrize("server", ["redis_url", "cluster_nodes"])
def test_a_copy_between_prefixes_is_exact_and_a_second_import_writes_the_same_bytes(
    redis_space: Space, server: str
) -> None:
    url, source_prefix = redis_space(server)
    _, prefix = redis_space(server)
    source = RedisDb(db_url=url, key_prefix=source_prefix)
    db = RedisDb(db_url=url, key_prefix=prefix)
    cluster = server == "cluster_nodes"
    try:
        for page in sample("ann").values():
            source.import_records(page)
        for kind in RECORD_KINDS:
            db.import_records(export_all(source, kind))
        first = raw_dump(url, prefix, cluster=cluster)
        for kind in RECORD_KINDS:
            db.import_records(export_all(source, kind, limit=2))
        assert raw_dump(url, prefix, cluster=cluster) == first
        for kind in RECORD_KINDS:  # the same rows, in an order of each keyspace's own
            copied, original = export_all(db, kind), export_all(source, kind)
            assert sorted(map(repr, copied.records)) == sorted(map(repr, original.records))
            assert copied.embeddings == original.embeddings, kind
        hits = db.search_memories("ann", "lakes")
        assert len(hits) == 3
        assert db.forget_user("ann") == {"sessions": 1, "runs": 5, "memories": 3, "learnings": 2}
        assert [key for key in raw_dump(url, prefix, cluster=cluster) if b"ann" in key[0]] == []
    finally:
        source.close()
        db.close()


@pytest.mark.parametrize("server", ["redis_url", "cluster_nodes"])
def test_an_import_never_moves_a_stored_run_to_another_session(
    redis_space: Space, server: str
) -> None:
    """A run stored in one session and given for another is refused (the contract: an
    import never moves a stored run), with nothing of the page written; the same run at
    its own place is replaced, and a leftover claim (its run gone) is taken over."""
    url, prefix = redis_space(server)
    db = RedisDb(db_url=url, key_prefix=prefix)
    cluster = server == "cluster_nodes"
    try:
        stored = db.append_run(Run(session_id="old", user_id="ann", input="x"))
        bystander = Run(session_id="new", seq=1, input="fine on its own")
        moved = stored.model_copy(update={"session_id": "new", "seq": 4})
        before = raw_dump(url, prefix, cluster=cluster)
        with pytest.raises(ValueError, match="seq 1 of session 'old'") as refused:
            db.import_records(RecordPage(kind="runs", records=[bystander, moved]))
        assert stored.run_id in str(refused.value) and "'new'" in str(refused.value)
        assert raw_dump(url, prefix, cluster=cluster) == before
        assert db.get_run(stored.run_id) == stored

        finished = stored.model_copy(update={"status": RunStatus.ERROR, "user_id": "bob"})
        db.import_records(RecordPage(kind="runs", records=[finished]))
        assert db.get_run(stored.run_id) == finished
        assert db.get_last_runs("old", 5, status=RunStatus.COMPLETED) == []
        assert db.get_last_runs("old", 5, status=RunStatus.ERROR) == [finished]
        assert export_all(db, "runs", user_id="ann").records == []
        assert export_all(db, "runs", user_id="bob").records == [finished]

        gone = db.append_run(Run(session_id="left", input="y"))
        assert db.delete_session("left") is False  # no session row, but its runs go
        assert db.get_run(gone.run_id) is None
        again = gone.model_copy(update={"session_id": "new", "seq": 2})
        db.import_records(RecordPage(kind="runs", records=[again]))
        assert db.get_run(gone.run_id) == again
    finally:
        db.close()


@pytest.mark.parametrize("server", ["redis_url", "cluster_nodes"])
def test_a_replaced_row_leaves_the_entries_of_the_old_one(redis_space: Space, server: str) -> None:
    url, prefix = redis_space(server)
    db = RedisDb(db_url=url, key_prefix=prefix)
    keys = db.ctx.keys
    try:
        chat = Session(session_id="chat", user_id="ann", component_id="crew")
        memory = Memory(user_id="ann", agent_id="crew", content="alpine huts")
        vector = Embedding(model="tiny", vector=[1.0, 2.0])
        db.import_records(RecordPage(kind="sessions", records=[chat]))
        db.import_records(
            RecordPage(kind="memories", records=[memory], embeddings={memory.memory_id: vector})
        )
        moved = chat.model_copy(update={"user_id": "bob", "component_id": None})
        rewritten = memory.model_copy(update={"agent_id": None, "content": "rail travel"})
        db.import_records(RecordPage(kind="sessions", records=[moved]))
        db.import_records(RecordPage(kind="memories", records=[rewritten]))

        assert db.list_sessions(user_id="ann") == [] and db.list_sessions(component_id="crew") == []
        assert db.list_sessions(user_id="bob") == [moved]
        assert db.list_memories("ann", agent_id="crew") == []
        assert db.memories_without_embedding("tiny") == [rewritten]
        plain = url.removesuffix("?cluster=true")
        raw: Any = (
            redis.cluster.RedisCluster.from_url(plain)
            if server == "cluster_nodes"
            else redis.Redis.from_url(plain)
        )
        try:
            stale = [
                keys.session_index("ann", None, None),
                keys.memory_token("ann", "alpin"),
                keys.memory_index("ann", "crew"),
                keys.all_memories + "v:tiny",
            ]
            assert [
                raw.zscore(key, "chat") or raw.zscore(key, memory.memory_id) for key in stale
            ] == [None] * len(stale)
            assert raw.exists(keys.memory_vector(memory.memory_id)) == 0
        finally:
            raw.close()
    finally:
        db.close()


def test_a_refused_page_on_a_cluster_writes_nothing(redis_space: Space) -> None:
    url, prefix = redis_space("cluster_nodes")
    db = RedisDb(db_url=url, key_prefix=prefix)
    try:
        held = db.append_run(Run(session_id="b", input="held"))
        before = raw_dump(url, prefix, cluster=True)
        page = [Run(session_id=f"a{n}", seq=1, user_id="ann") for n in range(5)]
        intruder = Run(session_id="b", seq=held.seq, input="intruder")
        with pytest.raises(ValueError, match="seq 1 of session 'b'") as refused:
            db.import_records(RecordPage(kind="runs", records=[*page, intruder]))
        assert held.run_id in str(refused.value) and intruder.run_id in str(refused.value)
        assert raw_dump(url, prefix, cluster=True) == before
    finally:
        db.close()


def test_two_runs_of_a_page_at_one_seq_are_refused_before_anything_is_sent(
    redis_space: Space,
) -> None:
    url, prefix = redis_space("redis_url")
    db = RedisDb(db_url=url, key_prefix=prefix)
    try:
        db.create_tables()
        twins = [Run(session_id="s", seq=3), Run(session_id="s", seq=3)]
        sent = steps_sent(db)
        with pytest.raises(ValueError, match="holds that seq"):
            db.import_records(RecordPage(kind="runs", records=twins))
        assert sent == []
    finally:
        db.close()


def test_imported_sessions_and_runs_keep_the_session_ttl(redis_space: Space) -> None:
    url, prefix = redis_space("redis_url")
    db = RedisDb(db_url=url, key_prefix=prefix, session_ttl=600)
    try:
        data = sample("ann")
        db.import_records(data["sessions"])
        db.import_records(data["runs"])
        chat = data["sessions"].records[0]
        assert isinstance(chat, Session)
        session_keys = [
            key for key in raw_dump(url, prefix) if b"{s:" in key[0] or b"{r:" in key[0]
        ]
        assert session_keys and all(has_ttl for *_, has_ttl in session_keys), session_keys
        assert db.get_session(chat.session_id) == chat
    finally:
        db.close()


# -- the storage report ----------------------------------------------------------------------------
@pytest.mark.parametrize("server", ["redis_url", "cluster_nodes"])
def test_the_storage_report_leaves_the_database_as_it_found_it(
    redis_space: Space, server: str
) -> None:
    url, prefix = redis_space(server)
    db = RedisDb(db_url=url, key_prefix=prefix)
    cluster = server == "cluster_nodes"
    try:
        fresh = db.storage_report()
        assert raw_dump(url, prefix, cluster=cluster) == [], "the report wrote something"
        assert fresh.schema_versions == {} and fresh.missing == [] and not fresh.healthy
        assert fresh.pending_migrations and fresh.server_version
        assert fresh.server_version.startswith(("Redis ", "Valkey "))
        assert "***" not in url and fresh.target == db.storage_target()
        assert {c.name for c in fresh.capabilities} >= {"text search", "vector search"}

        for page in sample("ann").values():
            db.import_records(page)
        report = db.storage_report()
        assert report.healthy, report
        assert report.counts == {"sessions": 1, "memories": 3, "learnings": 2}

        plain = url.removesuffix("?cluster=true")
        client: Any = (
            redis.cluster.RedisCluster.from_url(plain) if cluster else redis.Redis.from_url(plain)
        )
        try:
            client.delete(db.ctx.keys.schema)
        finally:
            client.close()
        other = RedisDb(db_url=url, key_prefix=prefix)
        try:
            lost = other.storage_report()
        finally:
            other.close()
        assert lost.missing and db.ctx.keys.schema in lost.missing[0]
    finally:
        db.close()


def test_the_storage_report_of_a_closed_db_is_refused(redis_space: Space) -> None:
    url, prefix = redis_space("redis_url")
    db = RedisDb(db_url=url, key_prefix=prefix)
    db.close()
    with pytest.raises(KernError, match="is closed"):
        db.storage_report()
