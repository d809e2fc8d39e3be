"""What only the Redis backend does: URLs and clients, key layout and hash slots, TTLs,
constant-cost history by the server's own counters, stale index entries, and two
processes carrying one conversation. The contract itself: test_conformance.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.crc import key_slot
from redis_probes import command_calls, diff  # beside conftest.py, which puts it on sys.path

import kern.db
from kern.agent import Agent
from kern.db.redis import AsyncRedisDb, RedisDb, codec, docs
from kern.db.redis.plans import Lua
from kern.errors import (
    ConfigurationError,
    KernError,
    StorageUnavailableError,
    SyncAsyncMismatchError,
    UnserializableError,
    VersionConflictError,
)
from kern.ids import MAX_DEPTH, check_text
from kern.models.openai import OpenAIChat
from kern.records import Learning, Memory, Message, Run, RunStatus, Session
from kern.testing.scripted_server import ScriptedServer

Space = Callable[[str], tuple[str, str]]


def turn(session_id: str, i: int, **fields: Any) -> Run:
    return Run(
        session_id=session_id,
        input=f"question {i}",
        messages=[
            Message(role="user", content=f"question {i}"),
            Message(role="assistant", content=f"answer {i}"),
        ],
        output=f"answer {i}",
        **fields,
    )


def keys_under(url: str, prefix: str, *, cluster: bool = False) -> list[str]:
    """The keys under ``prefix`` (a test looking at the layout; kern itself never scans)."""
    client: Any = redis.cluster.RedisCluster.from_url(url) if cluster else redis.Redis.from_url(url)
    try:
        return sorted(key.decode() for key in client.scan_iter(match=f"{prefix}*", count=1000))
    finally:
        client.close()


# -- URLs, clients and arguments ------------------------------------------------------------
def test_url_forms_and_connect(redis_space: Space) -> None:
    url, prefix = redis_space("redis_url")
    db = kern.db.connect(url, key_prefix=prefix)
    adb = kern.db.connect(url, is_async=True, key_prefix=prefix)
    assert type(db) is RedisDb and type(adb) is AsyncRedisDb
    assert db.backend_name == adb.backend_name == "redis"
    assert db.key_prefix == prefix and db.cluster is False and db.session_ttl is None
    stored = db.append_run(turn("s", 0))
    db.close()

    async def read_back() -> Run | None:
        try:
            return await adb.get_run(stored.run_id)
        finally:
            await adb.close()

    assert asyncio.run(read_back()) == stored


def test_urls_are_parsed_without_connecting_and_passwords_stay_hidden() -> None:
    db = RedisDb(db_url="rediss://kern:s3cret@redis.example.com:6380/2")
    assert "s3cret" not in repr(db) and "***" in repr(db)
    assert repr(db).startswith("RedisDb('rediss://kern:***@redis.example.com:6380/2'")
    db.close()
    unix = RedisDb(db_url="unix:///run/redis/redis.sock?db=1", key_prefix="app:")
    assert unix.key_prefix == "app:"
    unix.close()


def test_other_backend_urls_name_the_right_class() -> None:
    with pytest.raises(ConfigurationError, match="PostgresDb") as error:
        RedisDb(db_url="postgresql://kern:s3cret@localhost:5432/app")
    assert "kern-memory[postgres]" in str(error.value) and "s3cret" not in str(error.value)
    with pytest.raises(ConfigurationError, match="MongoDb"):
        AsyncRedisDb(db_url="mongodb://localhost:27017")
    with pytest.raises(ConfigurationError, match="SqliteDb"):
        RedisDb(db_url="sqlite:///tmp/x.db")
    with pytest.raises(ConfigurationError, match="could not read db_url"):
        RedisDb(db_url="localhost:6379")
    with pytest.raises(ConfigurationError, match="redis://"):
        RedisDb(db_url="http://localhost:6379")


def test_exactly_one_of_url_or_client() -> None:
    with pytest.raises(ConfigurationError, match="exactly one of db_url or client"):
        RedisDb()
    with pytest.raises(ConfigurationError, match="both"):
        RedisDb(db_url="redis://localhost:6379/0", client=redis.Redis())


def test_async_client_on_sync_class_names_the_fix() -> None:
    for client in (
        redis.asyncio.Redis(),
        redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=1),  # connects lazily
    ):
        with pytest.raises(SyncAsyncMismatchError, match=r"AsyncRedisDb\(client=") as error:
            RedisDb(client=client)
        assert "redis.asyncio" in str(error.value)


def test_sync_client_on_async_class_names_the_fix() -> None:
    with pytest.raises(SyncAsyncMismatchError, match=r"RedisDb\(client=") as error:
        AsyncRedisDb(client=redis.Redis())
    assert "redis.asyncio.Redis" in str(error.value)


def test_other_objects_and_bad_arguments_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="redis-py client"):
        RedisDb(client=object())
    with pytest.raises(ConfigurationError, match="RedisCluster"):
        RedisDb(client=redis.Redis(), cluster=True)
    with pytest.raises(ConfigurationError, match="key_prefix"):
        RedisDb(db_url="redis://localhost:6379/0", key_prefix="a{b}:")
    for ttl in (0, -5, 1.5, True, "60"):
        with pytest.raises(ConfigurationError, match="session_ttl"):
            RedisDb(db_url="redis://localhost:6379/0", session_ttl=ttl)  # type: ignore[arg-type]


def test_agent_run_on_the_async_db_names_the_fix(redis_space: Space) -> None:
    url, prefix = redis_space("redis_url")
    model = OpenAIChat(id="x", base_url="http://127.0.0.1:9/v1", api_key="k")
    agent = Agent(model=model, db=AsyncRedisDb(db_url=url, key_prefix=prefix))
    with pytest.raises(SyncAsyncMismatchError):
        agent.run("hello", session_id="s")


def test_a_users_client_is_used_and_left_open(redis_space: Space) -> None:
    """A client of the user's (here with decode_responses=True) works, and closing the db
    leaves it open for the user."""
    url, prefix = redis_space("redis_url")
    client = redis.Redis.from_url(url, decode_responses=True)
    db = RedisDb(client=client, key_prefix=prefix)
    assert db.client is client
    db.upsert_session(
        Session(session_id="s", user_id="u", state={"k": [1, "ü"]}), expected_version=None
    )
    runs = [db.append_run(turn("s", i, user_id="u")) for i in range(3)]
    assert db.get_last_runs("s", 2) == runs[1:]
    memory = db.upsert_memory(Memory(user_id="u", content="likes green tea"))
    assert [hit.memory for hit in db.search_memories("u", "tea")] == [memory]
    assert db.forget_user("u")["runs"] == 3
    db.close()
    assert client.ping() is True
    with pytest.raises(KernError, match="closed"):
        db.get_session("s")
    client.close()


async def test_async_db_with_a_users_client(redis_space: Space) -> None:
    url, prefix = redis_space("redis_url")
    client = redis.asyncio.Redis.from_url(url)
    db = AsyncRedisDb(client=client, key_prefix=prefix)
    runs = await asyncio.gather(*(db.append_run(turn("s", i)) for i in range(30)))
    assert sorted(run.seq for run in runs) == list(range(1, 31))
    await db.close()
    assert await client.ping() is True
    await client.aclose()


# -- the key layout ----------------------------------------------------------------------
def test_every_key_of_a_session_shares_one_hash_slot(redis_space: Space) -> None:
    url, prefix = redis_space("redis_url")
    db = RedisDb(db_url=url, key_prefix=prefix)
    sid = "weird {session} id: 1}"
    db.upsert_session(Session(session_id=sid, user_id="u"), expected_version=None)
    statuses = (RunStatus.COMPLETED, RunStatus.ERROR, RunStatus.RUNNING)
    for i, status in enumerate(statuses):
        db.append_run(turn(sid, i, user_id="u", status=status))
    db.append_run(turn(sid, 9, user_id="other", parent_run_id="p"))
    db.close()

    marker = "{s:weird%20%7Bsession%7D%20id%3A%201%7D}"
    session_keys = [key for key in keys_under(url, prefix) if marker in key]
    assert {key.removeprefix(prefix + marker + ":") for key in session_keys} >= {
        "session",
        "seq",
        "runs",
        "users",
        "r:all",
        "r:top",
        "r:st:completed",
        "r:st:error",
        "r:top:st:running",
        "ru:u",
        "ru:other",
    }
    assert len({key_slot(key.encode()) for key in session_keys}) == 1


def test_no_read_path_scans(redis_space: Space) -> None:
    """Every read goes through a key it can name: no SCAN, no KEYS, on the server's own
    counters (a server private to this test session)."""
    url, prefix = redis_space("counting_url")
    db = RedisDb(db_url=url, key_prefix=prefix)
    db.upsert_session(Session(session_id="s", user_id="u", component_id="c"), expected_version=None)
    run = db.append_run(turn("s", 0, user_id="u"))
    memory = db.upsert_memory(Memory(user_id="u", agent_id="a", content="likes tea"))
    learning = db.upsert_learning(Learning(kind="k", user_id="u", content={"fact": "tea"}))
    before = command_calls(db.client, cluster=False)
    db.get_session("s")
    db.list_sessions(user_id="u", component_id="c")
    db.list_sessions()
    db.get_run(run.run_id)
    db.get_last_runs("s", 3, top_level_only=True, status=RunStatus.COMPLETED)
    db.get_memory(memory.memory_id)
    db.list_memories("u", agent_id="a")
    db.search_memories("u", "tea")
    db.get_learning(learning.learning_id)
    db.query_learnings(kind="k", user_id="u", status=learning.status)
    db.search_learnings("tea")
    db.forget_user("u")
    used = diff(before, command_calls(db.client, cluster=False))
    db.close()
    assert used and not {"scan", "keys", "sscan", "hscan", "zscan"} & set(used), used


# -- constant cost of history --------------------------------------------------------------
async def _seed(url: str, prefix: str, sid: str, n: int) -> None:
    db = AsyncRedisDb(db_url=url, key_prefix=prefix)
    try:
        for start in range(0, n, 200):
            await asyncio.gather(
                *(
                    db.append_run(turn(sid, i, parent_run_id=None if i % 3 else "leader"))
                    for i in range(start, min(n, start + 200))
                )
            )
    finally:
        await db.close()


@pytest.mark.parametrize("server", ["counting_url", "cluster_nodes"])
def test_last_runs_issue_the_same_commands_at_any_session_length(
    redis_space: Space, server: str
) -> None:
    """Loading the last 3 runs of a 10,000-run session sends the server exactly the
    commands it sends for a 10-run one (INFO commandstats, summed over a cluster's nodes),
    for every filter the Agent uses."""
    url, prefix = redis_space(server)
    cluster = server == "cluster_nodes"
    asyncio.run(_seed(url, prefix, "long", 10_000))
    asyncio.run(_seed(url, prefix, "short", 10))
    db = RedisDb(db_url=url, key_prefix=prefix)
    try:
        for filters in (
            {},
            {"top_level_only": True},
            {"top_level_only": True, "status": RunStatus.COMPLETED},
            {"before_seq": 9},
        ):
            costs = []
            for sid in ("short", "long"):
                db.get_last_runs(sid, 3, **filters)  # scripts loaded, connections open
                before = command_calls(db.client, cluster=cluster)
                runs = db.get_last_runs(sid, 3, **filters)
                costs.append(diff(before, command_calls(db.client, cluster=cluster)))
                assert len(runs) == 3
            short, long = costs
            assert short == long, (filters, short, long)
            assert sum(short.values()) <= 4, short  # EVALSHA + ZREVRANGEBYSCORE + HMGET
    finally:
        db.close()


# -- session TTL ------------------------------------------------------------------------------
def test_session_ttl_covers_every_key_of_the_session_and_is_refreshed(redis_space: Space) -> None:
    url, prefix = redis_space("redis_url")
    db = RedisDb(db_url=url, key_prefix=prefix, session_ttl=600)
    assert db.session_ttl == 600
    db.upsert_session(Session(session_id="s", user_id="u"), expected_version=None)
    first = db.append_run(turn("s", 0, user_id="u"))
    raw = redis.Redis.from_url(url)
    try:
        session_keys = [k for k in keys_under(url, prefix) if "{s:s}" in k and ":tok:" not in k]
        assert len(session_keys) >= 8
        assert all(0 < raw.ttl(k) <= 600 for k in session_keys), session_keys
        assert 0 < raw.ttl(db.ctx.keys.claim(first.run_id)) <= 600
        for key in session_keys:
            raw.expire(key, 100)
        db.append_run(turn("s", 1, user_id="u"))
        assert all(raw.ttl(k) > 100 for k in session_keys)  # the write refreshed them all
        assert raw.ttl(db.ctx.keys.memory_index("u")) == -2  # user data has no TTL...
        db.upsert_memory(Memory(user_id="u", content="kept"))
        assert raw.ttl(db.ctx.keys.memory_index("u")) == -1  # ...and never expires
    finally:
        raw.close()
        db.close()


def test_an_expired_session_is_gone_everywhere(redis_space: Space) -> None:
    url, prefix = redis_space("redis_url")
    db = RedisDb(db_url=url, key_prefix=prefix, session_ttl=1)
    db.upsert_session(Session(session_id="s", user_id="u"), expected_version=None)
    run = db.append_run(turn("s", 0, user_id="u"))
    deadline = time.monotonic() + 10
    while db.get_session("s") is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert db.get_session("s") is None
    assert db.get_last_runs("s", 3) == []
    assert db.get_run(run.run_id) is None
    assert db.list_sessions(user_id="u") == []
    assert db.append_run(turn("s", 1)).seq == 1  # a new conversation under the old id
    db.close()


# -- stale index entries ----------------------------------------------------------------------
def test_stale_index_entries_are_skipped_and_dropped(redis_space: Space) -> None:
    """An index entry whose record is gone (a writer that crashed between its steps, an
    expired session) is never returned, does not shift pages, and is removed once old."""
    url, prefix = redis_space("redis_url")
    db = RedisDb(db_url=url, key_prefix=prefix)
    stored = [
        db.upsert_session(Session(session_id=f"s{i}", user_id="u"), expected_version=None)
        for i in range(3)
    ]
    index = db.ctx.keys.session_index("u", None, None)
    memories = db.ctx.keys.memory_index("u")
    raw = redis.Redis.from_url(url)
    try:
        old = int((time.time() - 3600) * 1_000_000)
        fresh = int(time.time() * 1_000_000) + 10_000_000  # newest of all: first in order
        raw.zadd(index, {"crashed-long-ago": fresh - 1, "being-written": fresh})
        raw.zadd(index, {"ancient": old})
        raw.zadd(memories, {"gone-memory": old})
        # "being-written" is young: a writer may be about to store it, so it stays.
        raw.zadd(index, {"crashed-long-ago": old + 1})

        newest_first = [s.session_id for s in reversed(stored)]
        assert [s.session_id for s in db.list_sessions(user_id="u")] == newest_first
        assert [s.session_id for s in db.list_sessions(user_id="u", offset=1, limit=1)] == [
            newest_first[1]
        ]
        assert db.list_memories("u") == []
        left = {m.decode() for m in raw.zrange(index, 0, -1)}
        assert left == {"being-written", *newest_first}
        assert raw.zcard(memories) == 0
    finally:
        raw.close()
        db.close()


def test_two_writers_of_one_memory_leave_its_indexes_whole(redis_space: Space) -> None:
    """The worst interleaving of two upserts of one memory (a slow writer removes the
    entries of the version it replaced after the final version re-entered them): the
    final version is still listed and found, because each writer puts its entries back
    and the slow one restores a newer version's."""
    url, prefix = redis_space("redis_url")
    db = RedisDb(db_url=url, key_prefix=prefix)
    spec = db._memories
    first = db.upsert_memory(Memory(user_id="u", agent_id="x", content="likes green tea"))
    slow = docs.upsert(
        db.ctx, spec, first.model_copy(update={"agent_id": "y", "content": "coffee"})
    )
    final = docs.upsert(db.ctx, spec, first.model_copy(update={"content": "likes tea a lot"}))

    def step(plan: Any, results: Any) -> Any:
        try:
            return db._runner.execute(plan.send(results))
        except StopIteration:
            return None

    final_results = step(final, None)  # final: joins its indexes
    slow_results = step(slow, None)  # slow: joins its indexes
    slow_results = step(slow, slow_results)  # slow: writes (replacing the first version)
    final_results = step(final, final_results)  # final: writes (replacing slow's)
    final_results = step(final, final_results)  # final: leaves slow's indexes
    while slow_results is not None:  # slow, late: leaves the first version's indexes...
        slow_results = step(slow, slow_results)
    while final_results is not None:
        final_results = step(final, final_results)

    stored = db.get_memory(first.memory_id)
    assert stored is not None and (stored.agent_id, stored.content) == ("x", "likes tea a lot")
    assert db.list_memories("u", agent_id="x") == [stored]
    assert db.list_memories("u", agent_id="y") == []
    assert [hit.memory for hit in db.search_memories("u", "tea")] == [stored]
    assert db.search_memories("u", "coffee") == []
    db.close()


# -- lost replies and leftovers -------------------------------------------------------------
@pytest.mark.parametrize("script", ["append_run", "append_run_local"])
def test_a_resent_append_returns_the_seq_its_first_attempt_took(
    redis_space: Space, script: str
) -> None:
    """redis-py resends a command whose reply was lost (a dropped connection): the append
    script, sent twice with the same token, stores the run once and answers the same seq."""
    url, prefix = redis_space("redis_url")
    db = RedisDb(db_url=url, key_prefix=prefix)
    db.append_run(turn("s", 0))
    base = db.ctx.keys.session_base("s")
    run = turn("s", 1)
    keys = (base + "runs", db.ctx.keys.claim(run.run_id))[: 1 if script == "append_run" else 2]
    args: tuple[Any, ...] = (base, run.run_id, codec.run_body(run), "1", "completed", "", "")
    args += (0, 0)
    extra = () if script == "append_run" else ("s", db.ctx.keys.run_sessions)
    first = db._runner.call(Lua(script, keys, (*args, "token-1", *extra)))
    again = db._runner.call(Lua(script, keys, (*args, "token-1", *extra)))
    other = db._runner.call(Lua(script, keys, (*args, "token-2", *extra)))
    assert int(first[0]) == int(again[0]) == 2
    assert int(other[0]) == 0  # another caller with the same run_id: a duplicate
    assert [r.seq for r in db.get_last_runs("s", 10)] == [1, 2]
    db.close()


@pytest.mark.parametrize("server", ["redis_url", "cluster_nodes"])
def test_a_leftover_claim_does_not_block_the_run_id(redis_space: Space, server: str) -> None:
    """A run id claimed by a session that does not hold the run (an append that died
    between its claim and its write) can still be appended, once."""
    url, prefix = redis_space(server)
    db = RedisDb(db_url=url, key_prefix=prefix)
    run = turn("s", 0)
    db.client.set(db.ctx.keys.claim(run.run_id), db.ctx.keys.session_base("elsewhere"))
    stored = db.append_run(run)
    assert stored.seq == 1 and db.get_run(run.run_id) == stored
    with pytest.raises(ValueError):
        db.append_run(turn("other", 0).model_copy(update={"run_id": run.run_id}))
    db.close()


# -- Redis Cluster -----------------------------------------------------------------------------
def test_cluster_url_argument_and_client_forms(redis_space: Space) -> None:
    url, prefix = redis_space("cluster_nodes")
    plain = url.removesuffix("?cluster=true")
    client = redis.cluster.RedisCluster.from_url(plain)
    for db in (
        RedisDb(db_url=url, key_prefix=prefix),
        RedisDb(db_url=plain, cluster=True, key_prefix=prefix),
        RedisDb(client=client, key_prefix=prefix),
    ):
        assert db.cluster is True and "cluster=True" in repr(db)
        db.append_run(turn("s", 0))
        db.close()
    with pytest.raises(SyncAsyncMismatchError, match="AsyncRedisDb"):
        RedisDb(client=redis.asyncio.cluster.RedisCluster.from_url(plain))
    with pytest.raises(SyncAsyncMismatchError, match=r"RedisDb\(client="):
        AsyncRedisDb(client=client)
    check = RedisDb(client=client, key_prefix=prefix)
    assert [run.seq for run in check.get_last_runs("s", 10)] == [1, 2, 3]
    client.close()


def test_cluster_spreads_users_and_keeps_each_session_in_one_slot(redis_space: Space) -> None:
    url, prefix = redis_space("cluster_nodes")
    db = RedisDb(db_url=url, key_prefix=prefix)
    for n in range(6):
        sid, user = f"s{n}", f"u{n}"
        db.upsert_session(Session(session_id=sid, user_id=user), expected_version=None)
        db.append_run(turn(sid, 0, user_id=user))
        db.upsert_memory(Memory(user_id=user, content=f"fact {n}"))
    plain = url.removesuffix("?cluster=true")
    found = keys_under(plain, prefix, cluster=True)
    for n in range(6):
        slots = {key_slot(k.encode()) for k in found if f"{{s:s{n}}}" in k}
        assert len(slots) == 1
    nodes = db.client.get_primaries()
    owners = {db.client.get_node_from_key(f"{prefix}{{s:s{n}}}:session").name for n in range(6)}
    assert len(nodes) == 3 and len(owners) > 1  # sessions live on several nodes
    counts = db.forget_user("u3")
    assert counts == {"sessions": 1, "runs": 1, "memories": 1, "learnings": 0}
    assert not [k for k in keys_under(plain, prefix, cluster=True) if "u3" in k]
    db.close()


# -- two processes, two turns ------------------------------------------------------------------
CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from kern.agent import Agent
    from kern.db.redis import AsyncRedisDb, RedisDb, codec, docs
    from kern.models.openai import OpenAIChat

    url, prefix, base_url, flavour, text = sys.argv[1:6]
    model = OpenAIChat(id="scripted", base_url=base_url, api_key="test")
    if flavour == "async":
        async def main():
            db = AsyncRedisDb(db_url=url, key_prefix=prefix)
            agent = Agent(model=model, db=db, add_history_to_context=True, num_history_runs=3)
            try:
                await agent.arun(text, session_id="chat-1", user_id="ada")
            finally:
                await db.close()
        asyncio.run(main())
    else:
        db = RedisDb(db_url=url, key_prefix=prefix)
        agent = Agent(model=model, db=db, add_history_to_context=True, num_history_runs=3)
        agent.run(text, session_id="chat-1", user_id="ada")
        db.close()
    """
)


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_two_processes_two_turns_history_carried(
    redis_space: Space, scripted: ScriptedServer, flavour: str
) -> None:
    url, prefix = redis_space("redis_url")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    for text in ("I am building a local-first web app.", "Which framework fits it best?"):
        subprocess.run(
            [sys.executable, "-c", CHILD, url, prefix, scripted.base_url, flavour, text],
            check=True,
            env=env,
            timeout=120,
        )
    first, second = scripted.chat_requests()
    contents = [m.get("content") for m in second["messages"]]
    assert "I am building a local-first web app." in contents  # turn 1, from the database
    assert contents[-1] == "Which framework fits it best?"
    assert not any("local-first" in (m.get("content") or "") for m in first["messages"][:-1])

    db = RedisDb(db_url=url, key_prefix=prefix)
    runs = db.get_last_runs("chat-1", 10)
    session = db.get_session("chat-1")
    db.close()
    assert [run.seq for run in runs] == [1, 2]
    assert session is not None and session.user_id == "ada"


def _count_round_trips(runner: Any) -> list[int]:
    """Counts the steps ``runner`` sends (each one round trip on a single server)."""
    sent: list[int] = []
    execute = runner.execute

    def counted(step: Any) -> Any:
        sent.append(len(step))
        return execute(step)

    runner.execute = counted
    return sent


@pytest.mark.parametrize("agent_id", [None, "helper"])
def test_recall_pipelines_the_search_and_the_newest_memories(
    redis_space: Space, agent_id: str | None
) -> None:
    """The backend's own memory store reads recall's memories in the round trips of the
    longer of its two reads, and gets what the two contract reads get."""
    url, prefix = redis_space("redis_url")
    db = RedisDb(db_url=url, key_prefix=prefix)
    try:
        for n in range(12):
            text = f"Ada visited city number {n}." if n % 3 else f"Ada drinks tea, cup {n}."
            db.upsert_memory(Memory(user_id="ada", agent_id=agent_id, content=text))
        db.upsert_memory(Memory(user_id="bob", content="Bob drinks tea."))
        search = db.search_memories("ada", "tea", agent_id=agent_id, limit=2)
        newest = db.list_memories("ada", agent_id=agent_id, limit=3)

        sent = _count_round_trips(db._runner)
        ranked, recent = db.recall_memories("ada", "tea", agent_id=agent_id, limit=2, recent=3)
        assert (ranked, recent) == (search, newest)
        together = len(sent)
        db.search_memories("ada", "tea", agent_id=agent_id, limit=2)
        db.list_memories("ada", agent_id=agent_id, limit=3)
        apart = len(sent) - together
        assert together == 2 and apart == 4, sent

        assert db.recall_memories("ada", "", agent_id=agent_id, limit=2, recent=3) == ([], newest)
    finally:
        db.close()


async def test_async_recall_pipelines_too(redis_space: Space) -> None:
    url, prefix = redis_space("redis_url")
    db = AsyncRedisDb(db_url=url, key_prefix=prefix)
    try:
        for text in ("Ada drinks tea.", "Ada has a dog.", "Ada lives in Oslo."):
            await db.upsert_memory(Memory(user_id="ada", content=text))
        ranked, recent = await db.recall_memories("ada", "tea", limit=1, recent=2)
        assert [hit.memory.content for hit in ranked] == ["Ada drinks tea."]
        assert [m.content for m in recent] == ["Ada lives in Oslo.", "Ada has a dog."]
    finally:
        await db.close()


# -- raw storage --------------------------------------------------------------------------------
def raw_entries(client: Any, prefix: str) -> list[str]:
    """Every key under ``prefix`` with its value(s), one text per key, read with redis-py
    (not through kern): strings, hashes (fields and values, sorted: a hash's own order may
    change without a write), sets, sorted sets (members) and lists. A RedisCluster client
    scans every primary."""
    out = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        kind = codec.text(client.type(key))
        values: list[Any]
        if kind == "string":
            values = [client.get(key)]
        elif kind == "hash":
            values = [part for pair in sorted(client.hgetall(key).items()) for part in pair]
        elif kind == "set":
            values = sorted(client.smembers(key))
        elif kind == "zset":
            values = client.zrange(key, 0, -1)
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        else:  # a key kern never writes: shown, never skipped
            values = [f"<{kind}>"]
        shown = " | ".join(codec.text(v) if isinstance(v, bytes) else str(v) for v in values)
        out.append(f"{codec.text(key)} ({kind}): {shown}")
    return sorted(out)


def _raw_client(url: str, *, cluster: bool) -> Any:
    plain = url.removesuffix("?cluster=true")
    return redis.cluster.RedisCluster.from_url(plain) if cluster else redis.Redis.from_url(plain)


# -- commit_turn: a run and its session in one script ------------------------------------------
SERVERS = ["redis_url", "cluster_nodes"]


@pytest.mark.parametrize("server", SERVERS)
def test_commit_turn_stores_the_run_and_the_session_together(
    redis_space: Space, server: str
) -> None:
    url, prefix = redis_space(server)
    db = RedisDb(db_url=url, key_prefix=prefix)
    try:
        first = Session(session_id="s", user_id="u", component_id="c", state={"turns": 1})
        run1, stored1 = db.commit_turn(turn("s", 1, user_id="u"), first, expected_version=None)
        assert run1.seq == 1 and stored1.version == 1
        assert db.get_session("s") == stored1 and db.get_run(run1.run_id) == run1
        second = stored1.model_copy(update={"state": {"turns": 2}, "component_id": "d"})
        run2, stored2 = db.commit_turn(turn("s", 2, user_id="u"), second, expected_version=1)
        assert run2.seq == 2 and stored2.version == 2 and stored2.created_at == stored1.created_at
        assert stored2.updated_at >= run2.created_at
        assert db.get_session("s") == stored2
        assert db.get_last_runs("s", 10) == [run1, run2]
        assert db.list_sessions(user_id="u") == [stored2]
        assert db.list_sessions(component_id="d") == [stored2]
        assert db.list_sessions(component_id="c") == []  # left the old version's index
        assert db.append_run(turn("s", 3)).seq == 3  # append_run continues the same counter
        with pytest.raises(ValueError, match="session_id"):
            db.commit_turn(turn("elsewhere", 4), stored2, expected_version=2)
    finally:
        db.close()


@pytest.mark.parametrize("server", SERVERS)
def test_commit_turn_version_conflict_stores_no_run(redis_space: Space, server: str) -> None:
    url, prefix = redis_space(server)
    db = RedisDb(db_url=url, key_prefix=prefix)
    raw = _raw_client(url, cluster=server == "cluster_nodes")
    try:
        run1, stored = db.commit_turn(
            turn("s", 1, user_id="u"), Session(session_id="s", user_id="u"), expected_version=None
        )
        for expected in (None, 0, 2, 7):  # create of an existing session; stale; ahead
            lost = turn("s", 2, user_id="u")
            with pytest.raises(VersionConflictError) as error:
                db.commit_turn(
                    lost, stored.model_copy(update={"state": {"x": 1}}), expected_version=expected
                )
            assert error.value.actual == 1
            assert db.get_run(lost.run_id) is None
            if server == "redis_url":  # one script: not even the run id's claim is taken
                assert raw.exists(db.ctx.keys.claim(lost.run_id)) == 0
        assert db.get_session("s") == stored
        assert db.get_last_runs("s", 10) == [run1]
        assert raw.get(db.ctx.keys.session_base("s") + "seq") == b"1"
        missing = turn("gone", 1)
        with pytest.raises(VersionConflictError):
            db.commit_turn(missing, Session(session_id="gone"), expected_version=3)
        assert db.get_run(missing.run_id) is None and db.get_session("gone") is None
    finally:
        raw.close()
        db.close()


@pytest.mark.parametrize("server", SERVERS)
def test_commit_turn_retried_with_the_same_run_id_stores_nothing_more(
    redis_space: Space, server: str
) -> None:
    """A retry after a lost reply (the same run id) writes nothing and answers the stored run
    and session, whatever the retry carries; a run id another session holds is refused."""
    url, prefix = redis_space(server)
    db = RedisDb(db_url=url, key_prefix=prefix)
    raw = _raw_client(url, cluster=server == "cluster_nodes")
    try:
        run = turn("s", 1, user_id="u")
        session = Session(session_id="s", user_id="u", state={"n": 1})
        stored = db.commit_turn(run, session, expected_version=None)
        before = raw_entries(raw, prefix)
        changed = session.model_copy(update={"state": {"n": 2}})
        for expected in (None, 1, 5):
            assert db.commit_turn(run, changed, expected_version=expected) == stored
        assert raw_entries(raw, prefix) == before  # not one byte written
        assert db.get_last_runs("s", 10) == [stored[0]]

        other = Session(session_id="t", user_id="u")
        with pytest.raises(ValueError, match="already stored"):
            db.commit_turn(run.model_copy(update={"session_id": "t"}), other, expected_version=None)
        assert db.get_session("t") is None and db.get_last_runs("t", 10) == []
        logged = db.append_run(turn("log", 1))  # a run id stored without a session row
        with pytest.raises(ValueError, match="already stored"):
            db.commit_turn(logged, Session(session_id="log"), expected_version=None)
        assert db.get_session("log") is None
    finally:
        raw.close()
        db.close()


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("broken", ["run index", "session index"])
def test_a_script_error_in_commit_turn_leaves_neither_half(
    redis_space: Space, server: str, broken: str
) -> None:
    """The halves cannot come apart: the run and the session are written by one script,
    which Redis runs atomically (no other command runs in between, and a crash of the server
    loses the whole script or none of it), and which makes every check before its first
    write. Here a key the commit must write holds another type (something else wrote under
    kern's prefix): the commit fails with the server's error and stores neither half; once
    the key is fixed, the same commit succeeds."""
    url, prefix = redis_space(server)
    db = RedisDb(db_url=url, key_prefix=prefix)
    raw = _raw_client(url, cluster=server == "cluster_nodes")
    try:
        first, stored = db.commit_turn(
            turn("s", 1, user_id="u"), Session(session_id="s", user_id="u"), expected_version=None
        )
        if broken == "run index":  # in the session's slot: written by the script itself
            bad = db.ctx.keys.session_base("s") + "r:st:error"
        else:  # in the user's slot: the script (single server) or the step before it (cluster)
            bad = db.ctx.keys.session_index("u", "new-component", None)
        raw.set(bad, "not an index")
        nxt = turn("s", 2, user_id="u", status=RunStatus.ERROR)
        update = stored.model_copy(update={"state": {"n": 2}, "component_id": "new-component"})
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            db.commit_turn(nxt, update, expected_version=1)
        assert db.get_session("s") == stored
        assert db.get_run(nxt.run_id) is None and db.get_last_runs("s", 10) == [first]
        assert raw.get(db.ctx.keys.session_base("s") + "seq") == b"1"
        raw.delete(bad)
        run2, stored2 = db.commit_turn(nxt, update, expected_version=1)
        assert (run2.seq, stored2.version) == (2, 2)
        assert db.get_last_runs("s", 10, status=RunStatus.ERROR) == [run2]
    finally:
        raw.close()
        db.close()


def test_commit_turn_is_one_round_trip_on_a_single_server(redis_space: Space) -> None:
    url, prefix = redis_space("counting_url")
    db = RedisDb(db_url=url, key_prefix=prefix)
    try:
        _, stored = db.commit_turn(
            turn("s", 0, user_id="u"), Session(session_id="s", user_id="u"), expected_version=None
        )
        sent = _count_round_trips(db._runner)
        before = command_calls(db.client, cluster=False)
        _, stored = db.commit_turn(turn("s", 1, user_id="u"), stored, expected_version=1)
        used = diff(before, command_calls(db.client, cluster=False))
        assert sent == [1], sent  # one step of one script
        assert used.get("evalsha") == 1 and "eval" not in used, used
        assert not {"scan", "keys"} & set(used), used
    finally:
        db.close()


def test_commit_turn_on_a_cluster_takes_three_round_trips(redis_space: Space) -> None:
    """Claim and indexes before, the turn's script, the indexes after (see kern.db.redis.turns)."""
    url, prefix = redis_space("cluster_nodes")
    db = RedisDb(db_url=url, key_prefix=prefix)
    try:
        _, stored = db.commit_turn(
            turn("s", 0, user_id="u"), Session(session_id="s", user_id="u"), expected_version=None
        )
        sent = _count_round_trips(db._runner)
        db.commit_turn(turn("s", 1, user_id="u"), stored, expected_version=1)
        assert len(sent) == 3 and sent[1] == 1, sent
    finally:
        db.close()


def test_commit_turn_keeps_the_session_ttl(redis_space: Space) -> None:
    url, prefix = redis_space("redis_url")
    db = RedisDb(db_url=url, key_prefix=prefix, session_ttl=600)
    raw = redis.Redis.from_url(url)
    try:
        run, _ = db.commit_turn(
            turn("s", 0, user_id="u"), Session(session_id="s", user_id="u"), expected_version=None
        )
        session_keys = [k for k in keys_under(url, prefix) if "{s:s}" in k]
        assert len(session_keys) >= 8
        assert all(0 < raw.ttl(k) <= 600 for k in session_keys), session_keys
        assert 0 < raw.ttl(db.ctx.keys.claim(run.run_id)) <= 600
    finally:
        raw.close()
        db.close()


async def test_async_commit_turn(redis_space: Space) -> None:
    url, prefix = redis_space("redis_url")
    db = AsyncRedisDb(db_url=url, key_prefix=prefix)
    try:
        session = Session(session_id="s", user_id="u")
        run, stored = await db.commit_turn(
            turn("s", 0, user_id="u"), session, expected_version=None
        )
        assert await db.commit_turn(run, session, expected_version=None) == (run, stored)
        with pytest.raises(VersionConflictError):
            await db.commit_turn(turn("s", 1), stored, expected_version=None)
        run2, stored2 = await db.commit_turn(turn("s", 1), stored, expected_version=1)
        assert (run2.seq, stored2.version) == (2, 2)
        assert await db.get_last_runs("s", 10) == [run, run2]
        assert await db.get_session("s") == stored2
    finally:
        await db.close()


# -- forget_user leaves no byte ----------------------------------------------------------------
@pytest.mark.parametrize("server", SERVERS)
def test_forget_user_leaves_no_key_or_value_of_hers(redis_space: Space, server: str) -> None:
    """After forget_user, no key under the prefix holds her id, a word of hers (in memory
    and learning content, session state and run messages), or the id of any record of hers
    (runs, sessions, memories, learnings), in its name or its value: auxiliary keys
    included (the runs' ``tok:<run_id>`` resend tokens, a run-less session's counter)."""
    url, prefix = redis_space(server)
    db = RedisDb(db_url=url, key_prefix=prefix)
    raw = _raw_client(url, cluster=server == "cluster_nodes")
    marker = f"qz{uuid.uuid4().hex[:12]}"
    alice = f"alice-{uuid.uuid4().hex[:8]}"
    chat, loose = f"chat-{marker}", f"loose-{marker}"
    try:
        db.upsert_session(
            Session(session_id="bob-chat", user_id="bob", state={"n": 1}), expected_version=None
        )
        bob_run = db.append_run(turn("bob-chat", 0, user_id="bob"))
        bob_memory = db.upsert_memory(Memory(user_id="bob", content="bob likes tea"))

        said = [Message(role="user", content=f"tell me about {marker}")]
        hers = Session(
            session_id=chat,
            user_id=alice,
            component_id="assistant",
            state={"topic": marker, marker: [marker]},
        )
        run1, stored = db.commit_turn(
            Run(session_id=chat, user_id=alice, input=marker, messages=said),
            hers,
            expected_version=None,
        )
        run2, stored = db.commit_turn(
            Run(session_id=chat, user_id=alice, messages=said, output={"a": marker}),
            stored.model_copy(update={"summary": f"about {marker}"}),
            expected_version=1,
        )
        step = db.append_run(Run(session_id=chat, input=f"workflow step {marker}"))
        visiting = db.append_run(
            Run(session_id="bob-chat", user_id=alice, status=RunStatus.RUNNING, messages=said)
        )
        db.update_run(visiting.run_id, status=RunStatus.COMPLETED, output=f"{marker} done")
        stray = db.append_run(Run(session_id=loose, user_id=alice, output=f"loose {marker}"))
        memories = [
            db.upsert_memory(
                Memory(
                    user_id=alice,
                    agent_id="assistant",
                    content=f"{marker} likes pistachio",
                    topics=[marker],
                )
            ),
            db.upsert_memory(Memory(user_id=alice, content=f"second {marker} fact")),
        ]
        learnings = [
            db.upsert_learning(
                Learning(
                    kind="profile",
                    namespace="user",
                    user_id=alice,
                    entity_id="e1",
                    content={"fact": {"deep": marker}},
                )
            ),
            db.upsert_learning(
                Learning(
                    kind="context",
                    namespace="session",
                    session_id=chat,
                    content={"note": f"{marker} note"},
                )
            ),
        ]
        run_ids = [r.run_id for r in (run1, run2, step, visiting, stray)]
        needles = [
            marker,
            alice,
            *run_ids,
            *(m.memory_id for m in memories),
            *(learning.learning_id for learning in learnings),
        ]

        bob_session = db.get_session("bob-chat")
        before = raw_entries(raw, prefix)
        assert [e for e in before if marker in e] and [e for e in before if alice in e]
        tokens = [e for e in before if ":tok:" in e]
        assert {r.run_id for r in (step, visiting, stray)} <= {
            rid for rid in run_ids for e in tokens if rid in e
        }  # append_run's resend tokens exist: the case the issue found
        counts = db.forget_user(alice)
        assert counts == {"sessions": 1, "runs": 5, "memories": 2, "learnings": 2}

        after = raw_entries(raw, prefix)
        left = [e for e in after if any(n in e for n in needles)]
        assert not left, "\n".join(left)
        assert db.get_session("bob-chat") == bob_session
        assert db.get_last_runs("bob-chat", 10) == [bob_run]
        assert db.list_memories("bob") == [bob_memory]
        assert db.forget_user(alice) == {"sessions": 0, "runs": 0, "memories": 0, "learnings": 0}
    finally:
        raw.close()
        db.close()


def test_delete_session_takes_the_resend_tokens_too(redis_space: Space) -> None:
    url, prefix = redis_space("redis_url")
    db = RedisDb(db_url=url, key_prefix=prefix)
    try:
        runs = [db.append_run(turn("s", i)) for i in range(3)]
        assert len([k for k in keys_under(url, prefix) if ":tok:" in k]) == 3
        assert db.delete_session("s") is False  # no session row, but its runs go
        assert keys_under(url, prefix) == [db.ctx.keys.schema]
        assert all(db.get_run(r.run_id) is None for r in runs)
    finally:
        db.close()


# -- nesting depth ------------------------------------------------------------------------------
def nested(depth: int) -> dict[str, Any]:
    """A JSON object nesting ``depth`` containers (dicts and lists alternating), the word
    "leaf" innermost."""
    value: Any = "leaf"
    for level in range(depth - 1):
        value = {"k": value, "n": level} if level % 2 else [value, level, 1.5, True, None]
    return {"top": value}


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


@pytest.mark.parametrize("server", SERVERS)
def test_state_and_content_at_the_depth_limit_round_trip(redis_space: Space, server: str) -> None:
    """Session state and learning content nested as deep as core allows (64) are stored and
    read back exactly, through upsert_session, commit_turn and the learning calls. (kern's
    scripts never decode JSON, so Lua's cjson and its limit of 1000 play no part; the reader
    is pydantic, whose JSON parser stops at 200 levels in a whole record.)"""
    url, prefix = redis_space(server)
    deep = nested(MAX_DEPTH)
    assert depth_of(deep) == MAX_DEPTH
    with pytest.raises(UnserializableError):  # one level more is refused, by core
        check_text("state", {"over": deep})
    db = RedisDb(db_url=url, key_prefix=prefix)
    try:
        stored = db.upsert_session(
            Session(session_id="s", user_id="u", state=deep, metadata=deep), expected_version=None
        )
        assert db.get_session("s") == stored and stored.state == deep
        run, stored = db.commit_turn(
            Run(session_id="s", user_id="u", output=deep, metrics={"deep": nested(MAX_DEPTH - 1)}),
            stored.model_copy(update={"state": {"again": nested(MAX_DEPTH - 1)}}),
            expected_version=1,
        )
        assert db.get_session("s") == stored and db.get_run(run.run_id) == run
        assert db.get_last_runs("s", 5) == [run] and db.list_sessions(user_id="u") == [stored]
        _, later = db.commit_turn(turn("s", 2), stored, expected_version=2)  # the next turn
        assert later.version == 3

        learning = db.upsert_learning(Learning(kind="k", namespace="n", user_id="u", content=deep))
        assert db.get_learning(learning.learning_id) == learning
        assert db.query_learnings(user_id="u") == [learning]
        assert [hit.learning for hit in db.search_learnings("leaf", user_id="u")] == [learning]
    finally:
        db.close()


# -- storage faults ------------------------------------------------------------------------------
def _start_cluster_node(own_redis: Callable[..., Any], port: int | None = None) -> Any:
    """A one-node Redis Cluster of this test's own (its slots kept in its folder's nodes.conf,
    its data in an append-only file, so a restart on the same port brings both back)."""
    server = own_redis(
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--appendonly",
        "yes",
        port=port,
    )
    client = redis.Redis(port=server.port)
    try:
        if port is None:
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        deadline = time.monotonic() + 30
        while client.cluster("info")["cluster_state"] != "ok":
            assert time.monotonic() < deadline, "the one-node cluster did not come up"
            time.sleep(0.05)
    finally:
        client.close()
    return server


def _check_unavailable(error: pytest.ExceptionInfo[StorageUnavailableError], secret: str) -> None:
    cause = error.value.__cause__
    assert isinstance(cause, redis.ConnectionError | redis.TimeoutError), repr(cause)
    assert secret not in str(error.value), str(error.value)
    assert "unavailable" in str(error.value)


def test_an_outage_raises_storage_unavailable_and_the_next_call_after_restart_works(
    own_redis: Callable[..., Any],
) -> None:
    """While the server is down every call raises StorageUnavailableError (redis-py's error
    chained, the URL shown without its password); the first call after a restart on the same
    port works, scripts included (the restarted server has none cached)."""
    secret = f"pw-{uuid.uuid4().hex}"
    server = own_redis("--appendonly", "yes", password=secret)
    db = RedisDb(db_url=server.url)
    try:
        assert db.storage_target() == f"redis://:***@127.0.0.1:{server.port}/0"
        run, stored = db.commit_turn(
            turn("s", 0, user_id="u"), Session(session_id="s", user_id="u"), expected_version=None
        )
        server.stop()
        for call in (
            lambda: db.get_session("s"),
            lambda: db.commit_turn(turn("s", 1), stored, expected_version=1),
            lambda: db.get_last_runs("s", 3),
            lambda: db.forget_user("u"),
        ):
            with pytest.raises(StorageUnavailableError) as error:
                call()
            _check_unavailable(error, secret)
            assert f"127.0.0.1:{server.port}" in str(error.value)
        server = own_redis("--appendonly", "yes", port=server.port, password=secret)
        assert db.client.script_exists(db._runner.scripts["commit_turn_local"].sha) == [False]
        assert db.get_session("s") == stored  # kept in the append-only file
        run2, _ = db.commit_turn(turn("s", 1), stored, expected_version=1)
        assert run2.seq == 2 and db.get_last_runs("s", 3) == [run, run2]
        assert db.forget_user("u")["sessions"] == 1
    finally:
        db.close()


async def test_an_outage_on_the_async_db(own_redis: Callable[..., Any]) -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    server = own_redis("--appendonly", "yes", password=secret)
    db = AsyncRedisDb(db_url=server.url)
    try:
        run, stored = await db.commit_turn(
            turn("s", 0), Session(session_id="s"), expected_version=None
        )
        server.stop()
        with pytest.raises(StorageUnavailableError) as error:
            await db.commit_turn(turn("s", 1), stored, expected_version=1)
        _check_unavailable(error, secret)
        with pytest.raises(StorageUnavailableError) as error:
            await db.get_session("s")
        _check_unavailable(error, secret)
        server = own_redis("--appendonly", "yes", port=server.port, password=secret)
        run2, _ = await db.commit_turn(turn("s", 1), stored, expected_version=1)
        assert await db.get_last_runs("s", 3) == [run, run2]
    finally:
        await db.close()


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_an_outage_of_a_cluster(own_redis: Callable[..., Any], flavour: str) -> None:
    """redis-py reports a cluster none of whose nodes answers with a RedisClusterException,
    not a ConnectionError: it comes out as StorageUnavailableError all the same (through
    ClusterUnreachableError, the driver's errors chained); a restart brings the db back."""
    server = _start_cluster_node(own_redis)
    url = f"redis://127.0.0.1:{server.port}/0?cluster=true"

    async def scenario() -> None:
        db: Any = RedisDb(db_url=url) if flavour == "sync" else AsyncRedisDb(db_url=url)

        async def call(name: str, *args: Any, **kwargs: Any) -> Any:
            result = getattr(db, name)(*args, **kwargs)
            return await result if flavour == "async" else result

        try:
            run, stored = await call(
                "commit_turn", turn("s", 0), Session(session_id="s"), expected_version=None
            )
            server.stop()
            with pytest.raises(StorageUnavailableError) as error:
                await call("commit_turn", turn("s", 1), stored, expected_version=1)
            _check_unavailable(error, "no secret here")
            assert isinstance(
                error.value.__cause__.__cause__, redis.exceptions.RedisClusterException
            )
            _start_cluster_node(own_redis, port=server.port)
            run2, _ = await call("commit_turn", turn("s", 1), stored, expected_version=1)
            assert await call("get_last_runs", "s", 3) == [run, run2]
        finally:
            closed = db.close()
            if flavour == "async":
                await closed

    asyncio.run(scenario())
