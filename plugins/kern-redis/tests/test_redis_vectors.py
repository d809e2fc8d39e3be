"""Vectors on Redis: stored with their row in its slot, searched exactly within the filters'
indexes, backfilled from the vector state sets, forgotten with the user; sync and async, on
one server and on a Redis Cluster. The backend-independent scenarios are the conformance
suite's; these check what only this backend does (keys, slots, round trips, migration).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.crc import key_slot
from redis_probes import command_calls, diff  # beside conftest.py, which puts it on sys.path

from kern.db.redis import AsyncRedisDb, RedisDb, migrate
from kern.db.redis.indexes import GRACE_US, now_us
from kern.db.redis.keys import vector_models, vector_state
from kern.db.redis.plans import Lua, Scan
from kern.records import Embedding, Learning, LearningStatus, Memory

Space = Callable[[str], tuple[str, str]]
SERVERS = ["redis_url", "cluster_nodes"]
VERSIONS = {"sessions": 1, "runs": 2, "memories": 2, "learnings": 2}


def vec(model: str, *values: float) -> Embedding:
    return Embedding(model=model, vector=list(values))


def raw_client(url: str, *, cluster: bool, **options: Any) -> Any:
    """A plain redis-py client of the test's own (not kern's)."""
    plain = url.split("?", 1)[0]
    if cluster:
        return redis.cluster.RedisCluster.from_url(plain, **options)
    return redis.Redis.from_url(plain, **options)


def keys_under(raw: Any, prefix: str) -> list[str]:
    """Every key under ``prefix`` (the test looking at the layout; kern never scans)."""
    return sorted(key.decode() for key in raw.scan_iter(match=f"{prefix}*", count=1000))


def record_steps(runner: Any) -> list[Any]:
    """The steps ``runner`` sends from now on (each one round trip on a single server), as
    test_redis_backend.py counts them."""
    sent: list[Any] = []
    execute = runner.execute

    def counted(step: Any) -> Any:
        sent.append(list(step))
        return execute(step)

    runner.execute = counted
    return sent


@pytest.fixture
def open_db(redis_space: Space) -> Iterator[Callable[..., tuple[RedisDb, Any]]]:
    """``open_db(server, **options)`` -> ``(RedisDb, raw client)`` on a fresh key prefix of
    that server fixture; both closed after the test."""
    made: list[Any] = []

    def open_(server: str, **options: Any) -> tuple[RedisDb, Any]:
        url, prefix = redis_space(server)
        cluster = server == "cluster_nodes"
        db = RedisDb(db_url=url, key_prefix=prefix, **options)
        raw = raw_client(url, cluster=cluster)
        made.extend([db, raw])
        return db, raw

    yield open_
    for thing in made:
        thing.close()


# -- stored with the row --------------------------------------------------------------------
@pytest.mark.parametrize("server", SERVERS)
def test_a_vector_is_written_with_its_row_in_the_rows_slot(
    open_db: Callable[..., tuple[RedisDb, Any]], server: str
) -> None:
    db, raw = open_db(server)
    keys = db.ctx.keys
    sent = record_steps(db._runner)
    memory = db.upsert_memory(
        Memory(user_id="ada", content="likes tea"), embedding=vec("m", 1.0, 0.5, -2.0)
    )
    learning = db.upsert_learning(
        Learning(kind="insight", content={"text": "tea"}), embedding=vec("m", 0.25, 4.0)
    )
    for record, vector_key, values in (
        (keys.memory(memory.memory_id), keys.memory_vector(memory.memory_id), (1.0, 0.5, -2.0)),
        (
            keys.learning(learning.learning_id),
            keys.learning_vector(learning.learning_id),
            (0.25, 4.0),
        ),
    ):
        assert raw.hgetall(vector_key) == {
            b"model": b"m",
            b"vector": struct.pack(f"<{len(values)}f", *values),
        }
        assert key_slot(vector_key.encode()) == key_slot(record.encode())
        # One script writes the record and its vector: the same step, the same call.
        writes = [
            call
            for step in sent
            for call in step
            if isinstance(call, Lua) and call.script == "put_doc" and call.keys[0] == record
        ]
        assert len(writes) == 1 and writes[0].keys == (record, vector_key)
        assert writes[0].args[2:] == ("m", struct.pack(f"<{len(values)}f", *values))
    # The records themselves carry no vector: reads return them as before.
    assert db.get_memory(memory.memory_id) == memory
    assert db.get_learning(learning.learning_id) == learning


@pytest.mark.parametrize("server", SERVERS)
def test_an_upsert_without_a_vector_drops_the_stored_one(
    open_db: Callable[..., tuple[RedisDb, Any]], server: str
) -> None:
    db, raw = open_db(server)
    keys = db.ctx.keys
    memory = db.upsert_memory(Memory(user_id="ada", content="tea"), embedding=vec("m", 1, 0))
    learning = db.upsert_learning(Learning(kind="k", content={"a": "b"}), embedding=vec("m", 1, 0))
    assert db.search_memories_by_vector("ada", vec("m", 1, 0))
    assert db.search_learnings_by_vector(vec("m", 1, 0), kind="k")

    changed = db.upsert_memory(memory.model_copy(update={"content": "coffee"}))
    db.upsert_learning(learning.model_copy(update={"content": {"a": "c"}}))
    assert raw.exists(keys.memory_vector(memory.memory_id)) == 0
    assert raw.exists(keys.learning_vector(learning.learning_id)) == 0
    assert db.search_memories_by_vector("ada", vec("m", 1, 0)) == []
    assert db.search_learnings_by_vector(vec("m", 1, 0), kind="k") == []
    assert db.memories_without_embedding("m") == [changed]
    assert [row.learning_id for row in db.learnings_without_embedding("m")] == [
        learning.learning_id
    ]
    # Out of the model's state sets, into those of rows without a vector.
    assert raw.zrange(vector_state(keys.all_memories, "m"), 0, -1) == []
    assert raw.zrange(vector_state(keys.all_memories, None), 0, -1) == [memory.memory_id.encode()]


# -- search ---------------------------------------------------------------------------------
@pytest.mark.parametrize("server", SERVERS)
def test_memory_search_compares_one_models_vectors_of_one_user(
    open_db: Callable[..., tuple[RedisDb, Any]], server: str
) -> None:
    db, _ = open_db(server)
    tea = db.upsert_memory(Memory(user_id="ada", content="tea"), embedding=vec("m1", 1, 0, 0))
    coffee = db.upsert_memory(
        Memory(user_id="ada", content="coffee"), embedding=vec("m1", 0.8, 0.6, 0)
    )
    dog = db.upsert_memory(Memory(user_id="ada", content="dog"), embedding=vec("m1", 0, 0, 1))
    cat = db.upsert_memory(Memory(user_id="ada", content="cat"), embedding=vec("m2", 1, 0, 0))
    db.upsert_memory(Memory(user_id="ada", content="no vector"))
    bobs = db.upsert_memory(Memory(user_id="bob", content="tea"), embedding=vec("m1", 1, 0, 0))

    hits = db.search_memories_by_vector("ada", vec("m1", 1, 0, 0), limit=5)
    assert [hit.memory for hit in hits] == [tea, coffee, dog]
    assert [hit.score for hit in hits] == pytest.approx([1.0, 0.8, 0.0], abs=1e-6)
    assert [h.memory for h in db.search_memories_by_vector("ada", vec("m1", 1, 0, 0), limit=2)] == [
        tea,
        coffee,
    ]
    assert [h.memory for h in db.search_memories_by_vector("ada", vec("m2", 1, 0, 0))] == [cat]
    assert [h.memory for h in db.search_memories_by_vector("bob", vec("m1", 1, 0, 0))] == [bobs]
    assert db.search_memories_by_vector("carol", vec("m1", 1, 0, 0)) == []
    assert db.search_memories_by_vector("ada", vec("m3", 1, 0, 0)) == []
    assert db.search_memories_by_vector("ada", vec("m1", 1, 0, 0), limit=0) == []


@pytest.mark.parametrize("server", SERVERS)
def test_memory_search_by_agent(open_db: Callable[..., tuple[RedisDb, Any]], server: str) -> None:
    db, _ = open_db(server)
    mine = db.upsert_memory(
        Memory(user_id="ada", agent_id="helper", content="a"), embedding=vec("m", 1, 0)
    )
    db.upsert_memory(Memory(user_id="ada", agent_id="other", content="b"), embedding=vec("m", 1, 0))
    db.upsert_memory(Memory(user_id="ada", content="c"), embedding=vec("m", 1, 0))
    hits = db.search_memories_by_vector("ada", vec("m", 1, 0), agent_id="helper")
    assert [hit.memory for hit in hits] == [mine]
    assert len(db.search_memories_by_vector("ada", vec("m", 1, 0))) == 3
    # An agent moved away is no longer found through its old agent's index.
    db.upsert_memory(mine.model_copy(update={"agent_id": "other"}), embedding=vec("m", 1, 0))
    assert db.search_memories_by_vector("ada", vec("m", 1, 0), agent_id="helper") == []


@pytest.mark.parametrize("server", SERVERS)
def test_learning_search_keeps_every_filter(
    open_db: Callable[..., tuple[RedisDb, Any]], server: str
) -> None:
    db, _ = open_db(server)

    def put(name: str, model: str = "m", **fields: Any) -> str:
        row = Learning(**{"kind": "k", "namespace": "n", "user_id": "ada", **fields})
        stored = db.upsert_learning(
            row.model_copy(update={"content": {"name": name}}), embedding=vec(model, 1, 0)
        )
        return stored.learning_id

    ids = {
        "base": put("base"),
        "bob": put("bob", user_id="bob"),
        "other_ns": put("other_ns", namespace="other"),
        "other_kind": put("other_kind", kind="j"),
        "proposed": put("proposed", status=LearningStatus.PROPOSED),
        "m2": put("m2", model="m2"),
        "global": put("global", user_id=None),
    }

    def found(model: str = "m", **filters: Any) -> set[str]:
        hits = db.search_learnings_by_vector(vec(model, 1, 0), limit=20, **filters)
        names = {hit.learning.content["name"] for hit in hits}
        assert all(hit.score == pytest.approx(1.0) for hit in hits)
        return {str(name) for name in names}

    assert found(kind="k", namespace="n", user_id="ada") == {"base"}
    assert found(kind="k", namespace="n", user_id="ada", status=None) == {"base", "proposed"}
    assert found(kind="k", status=LearningStatus.PROPOSED) == {"proposed"}
    assert found(kind="k") == {"base", "bob", "other_ns", "global"}
    assert found(user_id="ada") == {"base", "other_ns", "other_kind"}
    assert found() == {"base", "bob", "other_ns", "other_kind", "global"}
    assert found("m2") == {"m2"}
    assert found("m3") == set()
    assert len(db.search_learnings_by_vector(vec("m", 1, 0), kind="k", limit=2)) == 2
    assert len(ids) == 7


# -- setting vectors later ------------------------------------------------------------------
@pytest.mark.parametrize("server", SERVERS)
def test_set_embeddings_sets_only_the_vector_of_stored_rows(
    open_db: Callable[..., tuple[RedisDb, Any]], server: str
) -> None:
    db, raw = open_db(server)
    keys = db.ctx.keys
    memory = db.upsert_memory(Memory(user_id="ada", content="tea"))
    other = db.upsert_memory(Memory(user_id="ada", content="dog"))
    learning = db.upsert_learning(Learning(kind="k", content={"a": "b"}))

    count = db.set_embeddings(
        "memories", {memory.memory_id: vec("m", 1, 0), "missing": vec("m", 1, 0)}
    )
    assert count == 1
    assert raw.exists(keys.memory_vector("missing")) == 0
    assert db.get_memory(memory.memory_id) == memory  # updated_at (and all else) kept
    assert [h.memory for h in db.search_memories_by_vector("ada", vec("m", 1, 0))] == [memory]
    assert db.memories_without_embedding("m") == [other]
    assert db.memories_without_embedding("m2") == [other, memory]

    # Another model's vector replaces it, and moves the row between the state sets.
    assert db.set_embeddings("memories", {memory.memory_id: vec("m2", 0, 1)}) == 1
    assert db.search_memories_by_vector("ada", vec("m", 1, 0)) == []
    assert [h.memory for h in db.search_memories_by_vector("ada", vec("m2", 0, 1))] == [memory]
    assert raw.hget(keys.memory_vector(memory.memory_id), "model") == b"m2"
    assert raw.zrange(vector_state(keys.all_memories, "m"), 0, -1) == []
    assert db.memories_without_embedding("m") == [other, memory]
    assert db.get_memory(memory.memory_id) == memory

    assert db.set_embeddings("learnings", {learning.learning_id: vec("m", 1, 0)}) == 1
    assert db.get_learning(learning.learning_id) == learning
    hits = db.search_learnings_by_vector(vec("m", 1, 0), kind="k")
    assert [hit.learning for hit in hits] == [learning]
    assert db.learnings_without_embedding("m") == []
    assert db.set_embeddings("learnings", {}) == 0
    assert db.set_embeddings("learnings", {"missing": vec("m", 1, 0)}) == 0


def test_set_embeddings_pipelines_every_row(open_db: Callable[..., tuple[RedisDb, Any]]) -> None:
    """Each step carries every row: the round trips do not grow with the batch."""
    db, _ = open_db("redis_url")
    rows = [db.upsert_memory(Memory(user_id="ada", content=f"fact {n}")) for n in range(40)]
    sent = record_steps(db._runner)
    assert db.set_embeddings("memories", {m.memory_id: vec("m", 1, n) for n, m in enumerate(rows)})
    assert len(sent) <= 5, [len(step) for step in sent]
    scripted = [step for step in sent if any(isinstance(call, Lua) for call in step)]
    assert len(scripted) == 1 and len(scripted[0]) == 40  # one script per row, one step


# -- what is left to embed -------------------------------------------------------------------
@pytest.mark.parametrize("server", SERVERS)
def test_rows_without_a_vector_come_in_a_stable_order(
    open_db: Callable[..., tuple[RedisDb, Any]], server: str
) -> None:
    db, _ = open_db(server)
    rows = [db.upsert_memory(Memory(user_id=f"u{n % 3}", content=f"fact {n}")) for n in range(5)]
    older = db.upsert_memory(Memory(user_id="u9", content="old"), embedding=vec("old", 1, 0))
    done = db.upsert_memory(Memory(user_id="u9", content="done"), embedding=vec("m", 1, 0))

    assert db.memories_without_embedding("m", limit=2) == rows[:2]
    assert db.memories_without_embedding("m", limit=2) == rows[:2]  # stable
    assert db.memories_without_embedding("m") == [*rows, older]
    assert db.memories_without_embedding("old") == [*rows, done]
    assert db.memories_without_embedding("m", limit=0) == []
    db.set_embeddings("memories", {m.memory_id: vec("m", 1, 0) for m in rows[:2]})
    assert db.memories_without_embedding("m", limit=2) == rows[2:4]
    db.set_embeddings("memories", {m.memory_id: vec("m", 1, 0) for m in [*rows, older]})
    assert db.memories_without_embedding("m") == []
    db.delete_memory(done.memory_id)
    # One set_embeddings call puts its rows in at one time: in id order among themselves.
    again = db.memories_without_embedding("old")
    assert sorted(m.memory_id for m in again) == sorted(m.memory_id for m in [*rows, older])


@pytest.mark.parametrize("server", SERVERS)
def test_learnings_without_a_vector_by_kind(
    open_db: Callable[..., tuple[RedisDb, Any]], server: str
) -> None:
    db, _ = open_db(server)
    k = [db.upsert_learning(Learning(kind="k", content={"n": n})) for n in range(3)]
    j = db.upsert_learning(Learning(kind="j", content={"n": 9}), embedding=vec("old", 1))
    x = db.upsert_learning(Learning(kind="x", content={"n": 10}))
    db.upsert_learning(Learning(kind="k", content={"n": 11}), embedding=vec("m", 1))

    assert db.learnings_without_embedding("m", kinds=["k"]) == k
    assert db.learnings_without_embedding("m", kinds=["j", "k"]) == [j, *k]
    assert db.learnings_without_embedding("m", kinds=["k", "j"], limit=4) == [*k, j]
    assert db.learnings_without_embedding("m") == [*k, x, j]
    assert db.learnings_without_embedding("m", kinds=[]) == []
    # A kind changed: the row leaves the old kind's sets.
    moved = db.upsert_learning(k[0].model_copy(update={"kind": "j"}))
    assert db.learnings_without_embedding("m", kinds=["k"]) == k[1:]
    assert db.learnings_without_embedding("m", kinds=["j"]) == [moved, j]


@pytest.mark.parametrize("server", SERVERS)
def test_stale_state_entries_are_skipped_and_dropped_when_old(
    open_db: Callable[..., tuple[RedisDb, Any]], server: str
) -> None:
    db, raw = open_db(server)
    keys = db.ctx.keys
    no_vector = vector_state(keys.all_memories, None)
    rows = [db.upsert_memory(Memory(user_id="ada", content=f"fact {n}")) for n in range(3)]
    embedded = db.upsert_memory(Memory(user_id="ada", content="e"), embedding=vec("m", 1))
    old = now_us() - 2 * GRACE_US
    # Entries older than the grace period whose row is gone or in another state, and a
    # recent one (a writer between its two steps may own it): all skipped, the old dropped.
    raw.zadd(no_vector, {"ghost-1": old, "ghost-2": old + 1, embedded.memory_id: old + 2})
    raw.zadd(no_vector, {"ghost-recent": now_us()})

    assert db.memories_without_embedding("m", limit=2) == rows[:2]
    left = [member.decode() for member in raw.zrange(no_vector, 0, -1)]
    assert left == [*(m.memory_id for m in rows), "ghost-recent"]
    assert db.memories_without_embedding("m") == rows


# -- deleting and forgetting -------------------------------------------------------------------
@pytest.mark.parametrize("server", SERVERS)
def test_delete_takes_the_vector_and_its_state_entries(
    open_db: Callable[..., tuple[RedisDb, Any]], server: str
) -> None:
    db, raw = open_db(server)
    keys = db.ctx.keys
    memory = db.upsert_memory(Memory(user_id="ada", content="tea"), embedding=vec("m", 1))
    learning = db.upsert_learning(Learning(kind="k", content={"a": 1}), embedding=vec("m", 1))
    assert db.delete_memory(memory.memory_id) and db.delete_learning(learning.learning_id)
    assert raw.exists(keys.memory_vector(memory.memory_id)) == 0
    assert raw.exists(keys.learning_vector(learning.learning_id)) == 0
    for base in (keys.all_memories, keys.all_learnings, keys.learning_base("kind", "k")):
        assert raw.zrange(vector_state(base, "m"), 0, -1) == []
    assert not db.delete_memory(memory.memory_id)


@pytest.mark.parametrize("server", SERVERS)
def test_forget_user_leaves_no_vector_of_hers(
    open_db: Callable[..., tuple[RedisDb, Any]], server: str
) -> None:
    db, raw = open_db(server)
    keys = db.ctx.keys
    hers = [
        db.upsert_memory(Memory(user_id="alice", content="a"), embedding=vec("m1", 1, 0)),
        db.upsert_memory(Memory(user_id="alice", content="b"), embedding=vec("m2", 0, 1)),
        db.upsert_memory(Memory(user_id="alice", content="c")),
    ]
    learning = db.upsert_learning(
        Learning(kind="k", user_id="alice", content={"a": 1}), embedding=vec("m1", 1, 0)
    )
    bobs = db.upsert_memory(Memory(user_id="bob", content="b"), embedding=vec("m1", 1, 0))
    ids = [*(m.memory_id for m in hers), learning.learning_id]

    assert db.forget_user("alice") == {"sessions": 0, "runs": 0, "memories": 3, "learnings": 1}
    left = keys_under(raw, db.key_prefix)
    assert [key for key in left if key.endswith(":vec")] == [keys.memory_vector(bobs.memory_id)]
    assert not [key for key in left if any(i in key for i in ids)]
    state_sets = [key for key in left if ":v:" in key or key.endswith(":nv")]
    members = {m.decode() for key in state_sets for m in raw.zrange(key, 0, -1)}
    assert members == {bobs.memory_id}
    models = {m.decode() for key in left if key.endswith(":vm") for m in raw.smembers(key)}
    assert models <= {"m1", "m2"}  # model names only, nothing of hers
    hits = db.search_memories_by_vector("bob", vec("m1", 1, 0))
    assert [hit.memory for hit in hits] == [bobs]
    assert db.memories_without_embedding("m1") == []


# -- round trips ---------------------------------------------------------------------------------
@pytest.mark.parametrize("server", ["counting_url", "cluster_nodes"])
def test_a_search_reads_the_candidates_vectors_in_one_step(
    open_db: Callable[..., tuple[RedisDb, Any]], server: str
) -> None:
    """Memories: the user's ids, their vectors (one HMGET each, pipelined), the best rows:
    three round trips on a single server. Learnings: one more, for the index sizes."""
    cluster = server == "cluster_nodes"
    db, _ = open_db(server)
    for n in range(20):
        db.upsert_memory(Memory(user_id="ada", content=f"a{n}"), embedding=vec("m", 1, n))
        db.upsert_memory(Memory(user_id="bob", content=f"b{n}"), embedding=vec("m", 1, n))
        db.upsert_learning(
            Learning(kind="k", namespace="n", user_id="ada", content={"n": n}),
            embedding=vec("m", 1, n),
        )
    db.search_memories_by_vector("ada", vec("m", 1, 0))  # scripts loaded, connections open

    sent = record_steps(db._runner)
    before = command_calls(db.client, cluster=cluster)
    hits = db.search_memories_by_vector("ada", vec("m", 1, 0), limit=3)
    used = diff(before, command_calls(db.client, cluster=cluster))
    assert [hit.memory.content for hit in hits] == ["a0", "a1", "a2"]
    assert [len(step) for step in sent] == [1, 20, 1], sent
    assert used.get("zrange") == 1 and used.get("hmget") == 20, used
    assert set(used) <= {"zrange", "hmget", "mget"}, used
    if not cluster:
        assert used == {"zrange": 1, "hmget": 20, "mget": 1}

    sent.clear()
    before = command_calls(db.client, cluster=cluster)
    found = db.search_learnings_by_vector(
        vec("m", 1, 0), kind="k", namespace="n", user_id="ada", limit=3
    )
    used = diff(before, command_calls(db.client, cluster=cluster))
    assert [hit.learning.content["n"] for hit in found] == [0, 1, 2]
    assert [len(step) for step in sent] == [4, 1, 20, 1], sent
    assert used.get("zcard") == 4 and used.get("hmget") == 20, used
    assert not {"scan", "keys"} & set(used), used


def test_no_vector_path_scans(redis_space: Space) -> None:
    """A new database only records its versions, and every vector operation goes through
    keys it can name: no SCAN or KEYS on the server's own counters."""
    url, prefix = redis_space("counting_url")
    db = RedisDb(db_url=url, key_prefix=prefix)
    try:
        before = command_calls(db.client, cluster=False)
        assert db.schema_versions() == VERSIONS
        memory = db.upsert_memory(Memory(user_id="u", content="tea"), embedding=vec("m", 1))
        plain = db.upsert_memory(Memory(user_id="u", content="dog"))
        learning = db.upsert_learning(Learning(kind="k", content={"a": 1}))
        db.search_memories_by_vector("u", vec("m", 1))
        db.search_learnings_by_vector(vec("m", 1), kind="k")
        db.memories_without_embedding("m")
        db.learnings_without_embedding("m", kinds=["k"])
        db.set_embeddings("memories", {plain.memory_id: vec("m", 1)})
        db.set_embeddings("learnings", {learning.learning_id: vec("m", 1)})
        db.delete_memory(memory.memory_id)
        db.forget_user("u")
        used = diff(before, command_calls(db.client, cluster=False))
        assert used and not {"scan", "keys", "sscan", "hscan", "zscan"} & set(used), used
    finally:
        db.close()


# -- clients and databases of before ------------------------------------------------------------
@pytest.mark.parametrize("server", SERVERS)
def test_vectors_with_a_client_that_decodes_responses(redis_space: Space, server: str) -> None:
    """A user's client made with ``decode_responses=True`` still reads the float32 bytes."""
    url, prefix = redis_space(server)
    client = raw_client(url, cluster=server == "cluster_nodes", decode_responses=True)
    db = RedisDb(client=client, key_prefix=prefix)
    try:
        bytes_ = vec("m", 1.0, -1.5, 2.0**-20)  # float32 bytes that are no UTF-8
        memory = db.upsert_memory(Memory(user_id="ada", content="tea"), embedding=bytes_)
        other = db.upsert_memory(Memory(user_id="ada", content="dog"))
        hits = db.search_memories_by_vector("ada", bytes_)
        assert [hit.memory for hit in hits] == [memory]
        assert hits[0].score == pytest.approx(1.0)
        assert db.memories_without_embedding("m") == [other]
        assert db.set_embeddings("memories", {other.memory_id: vec("m", 1.0, -1.5, 0.0)}) == 1
        assert len(db.search_memories_by_vector("ada", bytes_)) == 2
        assert db.forget_user("ada")["memories"] == 2
    finally:
        db.close()
        client.close()


@pytest.mark.parametrize("server", SERVERS)
async def test_async_vectors_with_a_client_that_decodes_responses(
    redis_space: Space, server: str
) -> None:
    url, prefix = redis_space(server)
    plain = url.split("?", 1)[0]
    client: Any
    if server == "cluster_nodes":
        client = redis.asyncio.cluster.RedisCluster.from_url(plain, decode_responses=True)
    else:
        client = redis.asyncio.Redis.from_url(plain, decode_responses=True)
    db = AsyncRedisDb(client=client, key_prefix=prefix)
    try:
        query = vec("m", 1.0, -1.5, 2.0**-20)
        memory = await db.upsert_memory(Memory(user_id="ada", content="tea"), embedding=query)
        learning = await db.upsert_learning(Learning(kind="k", content={"a": 1}), embedding=query)
        hits = await db.search_memories_by_vector("ada", query)
        assert [hit.memory for hit in hits] == [memory]
        found = await db.search_learnings_by_vector(query, kind="k")
        assert [hit.learning for hit in found] == [learning]
        assert await db.memories_without_embedding("m") == []
    finally:
        await db.close()
        await client.aclose()


def back_to_version_one(db: RedisDb, raw: Any) -> tuple[list[Memory], list[Learning]]:
    """Rows as a database written before vectors holds them (schema version 1 of memories
    and learnings: no vector keys, no state sets, those versions recorded)."""
    keys = db.ctx.keys
    memories = [
        db.upsert_memory(Memory(user_id=f"user-{n % 7}", content=f"fact {n}")) for n in range(40)
    ]
    learnings = [db.upsert_learning(Learning(kind=f"k{n % 2}", content={"n": n})) for n in range(6)]
    raw.set(keys.prefix + "{m:not-json}", "not a memory")  # matched by the scan, skipped
    bases = [
        keys.all_memories,
        keys.all_learnings,
        *(keys.learning_base("kind", k) for k in ("k0", "k1")),
    ]
    for base in bases:
        raw.delete(vector_state(base, None), vector_models(base))
    raw.hset(keys.schema, mapping={"memories": 1, "learnings": 1})
    assert not [k for k in keys_under(raw, keys.prefix) if k.endswith((":nv", ":vm", ":vec"))]
    return memories, learnings


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Migration steps in many rounds (SCAN cursors per node, index windows)."""
    monkeypatch.setattr(migrate, "SCAN_COUNT", 5)
    monkeypatch.setattr(migrate, "BATCH", 7)


@pytest.mark.parametrize("server", SERVERS)
def test_a_database_of_the_layout_before_vectors_is_migrated(
    open_db: Callable[..., tuple[RedisDb, Any]], server: str, small_batches: None
) -> None:
    """Such a database keeps working, and its rows are found to backfill."""
    db, raw = open_db(server)
    memories, learnings = back_to_version_one(db, raw)
    again = RedisDb(db_url=db.storage_target(), key_prefix=db.key_prefix, cluster=db.cluster)
    sent = record_steps(again._runner)
    try:
        assert again.schema_versions() == VERSIONS
        scans = [call for step in sent for call in step if isinstance(call, Scan)]
        assert len(scans) > 1 and scans[-1].cursor != 0  # went on from a cursor
        # Rows without vector keys: no vector, every other read as before.
        assert again.search_memories_by_vector("user-1", vec("m", 1)) == []
        assert again.list_memories("user-1") == db.list_memories("user-1")
        left = again.memories_without_embedding("m", limit=100)
        assert sorted(m.memory_id for m in left) == sorted(m.memory_id for m in memories)
        by_kind = again.learnings_without_embedding("m", kinds=["k1"])
        assert {row.learning_id for row in by_kind} == {
            row.learning_id for row in learnings if row.kind == "k1"
        }
        assert len(again.learnings_without_embedding("m")) == 6
        again.set_embeddings("memories", {m.memory_id: vec("m", 1) for m in left})
        assert again.memories_without_embedding("m") == []
        assert len(again.search_memories_by_vector("user-1", vec("m", 1), limit=10)) == 6
    finally:
        again.close()


@pytest.mark.parametrize("server", SERVERS)
async def test_the_async_db_migrates_too(
    open_db: Callable[..., tuple[RedisDb, Any]], server: str, small_batches: None
) -> None:
    db, raw = open_db(server)
    memories, _ = back_to_version_one(db, raw)
    again = AsyncRedisDb(db_url=db.storage_target(), key_prefix=db.key_prefix, cluster=db.cluster)
    try:
        assert await again.schema_versions() == VERSIONS
        left = await again.memories_without_embedding("m", limit=100)
        assert sorted(m.memory_id for m in left) == sorted(m.memory_id for m in memories)
        assert len(await again.learnings_without_embedding("m", kinds=["k0", "k1"])) == 6
    finally:
        await again.close()


# -- async ------------------------------------------------------------------------------------
@pytest.mark.parametrize("server", SERVERS)
async def test_async_vectors(redis_space: Space, server: str) -> None:
    url, prefix = redis_space(server)
    db = AsyncRedisDb(db_url=url, key_prefix=prefix)
    raw = raw_client(url, cluster=server == "cluster_nodes")
    keys = db.ctx.keys
    try:
        tea = await db.upsert_memory(
            Memory(user_id="ada", agent_id="a", content="tea"), embedding=vec("m", 1, 0)
        )
        dog = await db.upsert_memory(Memory(user_id="ada", content="dog"))
        await db.upsert_memory(Memory(user_id="bob", content="tea"), embedding=vec("m", 1, 0))
        learning = await db.upsert_learning(
            Learning(kind="k", user_id="ada", content={"a": 1}), embedding=vec("m", 0, 1)
        )
        hits = await db.search_memories_by_vector("ada", vec("m", 1, 0))
        assert [hit.memory for hit in hits] == [tea]
        assert await db.search_memories_by_vector("ada", vec("m", 1, 0), agent_id="b") == []
        found = await db.search_learnings_by_vector(vec("m", 0, 1), kind="k", user_id="ada")
        assert [hit.learning for hit in found] == [learning]
        assert await db.memories_without_embedding("m") == [dog]
        assert await db.learnings_without_embedding("m", kinds=["k"]) == []
        assert await db.set_embeddings("memories", {dog.memory_id: vec("m", 0.6, 0.8)}) == 1
        assert await db.get_memory(dog.memory_id) == dog
        hits = await db.search_memories_by_vector("ada", vec("m", 1, 0))
        assert [h.memory for h in hits] == [tea, dog]
        assert [h.score for h in hits] == pytest.approx([1.0, 0.6], abs=1e-6)
        await db.upsert_memory(tea)
        assert raw.exists(keys.memory_vector(tea.memory_id)) == 0
        assert await db.forget_user("ada") == {
            "sessions": 0,
            "runs": 0,
            "memories": 2,
            "learnings": 1,
        }
        left = keys_under(raw, prefix)
        assert len([key for key in left if key.endswith(":vec")]) == 1  # bob's
    finally:
        raw.close()
        await db.close()
