"""What only the Mongo backend does: URLs and clients, errors, the stored documents, indexes
for every read, bounded search, and turns carried across processes.

The storage contract itself is checked by the conformance suite (test_conformance.py).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from bson import ObjectId
from mongo_probes import (  # beside conftest.py, which puts this folder on sys.path
    examined,
    explain_find,
    plan_uses_index,
    raw_documents,
    shared_counter,
)
from nx_server import NxServer
from pymongo import AsyncMongoClient, MongoClient
from pymongo.errors import ConnectionFailure, DuplicateKeyError, OperationFailure

import kern.db
from kern.agent import Agent
from kern.db.mongo import AsyncMongoDb, DocumentTooLargeError, MongoDb, calls, codec, search
from kern.errors import (
    ConfigurationError,
    InvalidTextError,
    KernError,
    StorageLoginError,
    StorageUnavailableError,
    SyncAsyncMismatchError,
    VersionConflictError,
)
from kern.records import (
    Learning,
    LearningStatus,
    Memory,
    Message,
    Run,
    RunStatus,
    Session,
    SessionType,
)
from kern.testing.scripted_server import ScriptedServer

COUNTER = shared_counter()


@pytest.fixture
def db(mongo_kwargs: dict[str, str]) -> Iterator[MongoDb]:
    db = MongoDb(**mongo_kwargs)
    yield db
    db.close()


def turn(session_id: str, i: int, **fields: Any) -> Run:
    return Run(
        session_id=session_id,
        input=f"question {i}",
        messages=[
            Message(role="user", content=f"question {i}"),
            Message(role="assistant", content=f"answer {i}"),
        ],
        **fields,
    )


def database_of(url: str) -> str:
    """The database a URL names (its path)."""
    return urlsplit(url).path.lstrip("/")


def raw(db: MongoDb, table: str) -> Any:
    """The pymongo collection behind a logical table, for looking at stored documents."""
    return db.collections[table]


# -- URLs, clients and databases ------------------------------------------------------------
def test_database_from_the_url_path(mongo: Any, mongo_url: str) -> None:
    db = MongoDb(db_url=mongo_url, collection_prefix=mongo.prefix)
    try:
        db.append_run(turn("s", 0))
        name = database_of(mongo_url)
        assert db.database_name == name
        assert f"{mongo.prefix}runs" in db.client[name].list_collection_names()
        assert repr(db) == f"MongoDb(database={name!r}, collection_prefix={mongo.prefix!r})"
    finally:
        db.close()


def test_database_argument_wins_over_the_url(mongo: Any) -> None:
    name = mongo.new_database()
    db = MongoDb(db_url=mongo.url("ignored"), database=name, collection_prefix=mongo.prefix)
    try:
        assert db.database_name == name
        assert db.append_run(turn("s", 0)).seq == 1
        assert db.client[name][f"{mongo.prefix}runs"].count_documents({}) == 1
    finally:
        db.close()


def test_defaults_database_kern_and_prefix_kern(mongo: Any) -> None:
    """No database in the URL and none given: "kern"; collections are kern_<table>.
    (Nothing is written: "kern" may be a real database on a shared server.)"""
    db = MongoDb(db_url=mongo.server.url)
    try:
        assert db.database_name == "kern"
        assert {table: c.name for table, c in db.collections.items()} == {
            "sessions": "kern_sessions",
            "runs": "kern_runs",
            "memories": "kern_memories",
            "learnings": "kern_learnings",
            "schema_versions": "kern_schema_versions",
        }
    finally:
        db.close()


def test_url_options_are_kept(mongo: Any, mongo_url: str) -> None:
    options = "maxPoolSize=7&serverSelectionTimeoutMS=5000"
    joined = f"{mongo_url}&{options}" if "?" in mongo_url else f"{mongo_url}?{options}"
    db = MongoDb(db_url=joined)
    try:
        assert db.database_name == database_of(mongo_url)
        assert db.client.options.pool_options.max_pool_size == 7
        assert db.client.options.server_selection_timeout == 5
    finally:
        db.close()


def test_a_client_of_yours_is_used_and_left_open(mongo: Any, mongo_url: str) -> None:
    client: MongoClient[Any] = MongoClient(mongo_url)
    try:
        db = MongoDb(client=client, collection_prefix=mongo.prefix)
        assert db.client is client
        assert db.database_name == database_of(mongo_url)  # the client's default
        stored = db.append_run(turn("s", 0))
        db.close()
        # closing the db did not close the user's client
        assert client[db.database_name][f"{mongo.prefix}runs"].find_one({"_id": stored.run_id})
        other = MongoDb(client=client, database="elsewhere_db")
        assert other.database_name == "elsewhere_db"
        other.close()
    finally:
        client.close()


async def test_async_db_on_pymongo_async_client(mongo: Any, mongo_url: str) -> None:
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_url)
    try:
        adb = AsyncMongoDb(client=client, collection_prefix=mongo.prefix)
        runs = await asyncio.gather(*(adb.append_run(turn("s", i)) for i in range(20)))
        assert sorted(r.seq for r in runs) == list(range(1, 21))
        await adb.close()
        assert await client[adb.database_name][f"{mongo.prefix}runs"].count_documents({}) == 20
    finally:
        await client.close()


def test_connect_picks_the_mongo_classes(mongo: Any, mongo_url: str) -> None:
    sync = kern.db.connect(mongo_url, collection_prefix=mongo.prefix)
    asynchronous = kern.db.connect(mongo_url, is_async=True, collection_prefix=mongo.prefix)
    try:
        assert type(sync) is MongoDb
        assert type(asynchronous) is AsyncMongoDb
        assert sync.backend_name == asynchronous.backend_name == "mongo"
        assert isinstance(asynchronous.client, AsyncMongoClient)
    finally:
        sync.close()
        asyncio.run(asynchronous.close())


# -- wrong input ----------------------------------------------------------------------------
def test_exactly_one_of_url_or_client() -> None:
    with pytest.raises(ConfigurationError, match="exactly one of db_url or client"):
        MongoDb()
    client: MongoClient[Any] = MongoClient("mongodb://127.0.0.1:1/", connect=False)
    with pytest.raises(ConfigurationError, match="got db_url, client"):
        MongoDb(db_url="mongodb://127.0.0.1:1/", client=client)
    client.close()


def test_other_backend_url_names_the_right_class() -> None:
    with pytest.raises(ConfigurationError, match="PostgresDb") as error:
        MongoDb(db_url="postgresql://kern:s3cret@localhost:5432/app")
    assert "kern-memory[postgres]" in str(error.value) and "s3cret" not in str(error.value)
    with pytest.raises(ConfigurationError, match="SqliteDb"):
        AsyncMongoDb(db_url="sqlite:///agent.db")
    with pytest.raises(ConfigurationError, match="RedisDb"):
        MongoDb(db_url="redis://localhost:6379/0")
    with pytest.raises(ConfigurationError, match="could not read"):
        MongoDb(db_url="not a url at all")


def test_malformed_mongo_url_does_not_echo_the_password() -> None:
    with pytest.raises(ConfigurationError, match="could not use db_url") as error:
        MongoDb(db_url="mongodb://kern:s3cret@localhost:notaport/app")
    assert "s3cret" not in str(error.value)


def test_sync_client_on_the_async_class_names_the_fix() -> None:
    client: MongoClient[Any] = MongoClient("mongodb://127.0.0.1:1/", connect=False)
    try:
        with pytest.raises(SyncAsyncMismatchError, match="AsyncMongoClient") as error:
            AsyncMongoDb(client=client)  # type: ignore[arg-type]
        assert "MongoDb(client=MongoClient" in str(error.value)
    finally:
        client.close()


def test_async_client_on_the_sync_class_names_the_fix() -> None:
    client: AsyncMongoClient[Any] = AsyncMongoClient("mongodb://127.0.0.1:1/", connect=False)
    with pytest.raises(SyncAsyncMismatchError, match="AsyncMongoDb") as error:
        MongoDb(client=client)  # type: ignore[arg-type]
    assert "pymongo.MongoClient" in str(error.value)


def test_motor_is_refused_with_the_fix() -> None:
    Motor = type("AsyncIOMotorClient", (), {"__module__": "motor.motor_asyncio"})
    with pytest.raises(ConfigurationError, match=r"pymongo\.AsyncMongoClient"):
        AsyncMongoDb(client=Motor())  # type: ignore[arg-type]
    with pytest.raises(SyncAsyncMismatchError, match="AsyncMongoDb"):
        MongoDb(client=Motor())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"needs a pymongo\.MongoClient"):
        MongoDb(client=object())  # type: ignore[arg-type]


def test_agent_run_on_the_async_db_names_arun(mongo_kwargs: dict[str, str]) -> None:
    adb = AsyncMongoDb(**mongo_kwargs)
    agent = Agent(db=adb, model="openai:scripted")
    try:
        with pytest.raises(SyncAsyncMismatchError, match="arun"):
            agent.run("hello", session_id="s")
    finally:
        asyncio.run(adb.close())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"database": "bad.name"}, "not a usable database name"),
        ({"database": "x" * 64}, "not a usable database name"),
        ({"collection_prefix": "bad-prefix$"}, "collection_prefix"),
    ],
)
def test_bad_names_are_refused(kwargs: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        MongoDb(db_url="mongodb://127.0.0.1:1/", **kwargs)


def test_a_closed_db_says_so(mongo_kwargs: dict[str, str]) -> None:
    db = MongoDb(**mongo_kwargs)
    db.append_run(turn("s", 0))
    db.close()
    db.close()  # twice is fine
    with pytest.raises(KernError, match="closed"):
        db.get_last_runs("s", 3)


# -- the stored documents -------------------------------------------------------------------
def _object_ids(value: Any) -> list[Any]:
    if isinstance(value, ObjectId):
        return [value]
    if isinstance(value, dict):
        return [found for item in value.values() for found in _object_ids(item)]
    if isinstance(value, list):
        return [found for item in value for found in _object_ids(item)]
    return []


def test_string_ids_everywhere_no_object_id(db: MongoDb) -> None:
    """Every document's _id is the record's own string id; no ObjectId in any field."""
    session = db.upsert_session(Session(user_id="u"), expected_version=None)
    run = db.append_run(turn(session.session_id, 0, user_id="u"))
    memory = db.upsert_memory(Memory(user_id="u", content="likes tea"))
    learning = db.upsert_learning(Learning(kind="k", user_id="u", content={"a": 1}))

    expected = {
        "sessions": session.session_id,
        "runs": run.run_id,
        "memories": memory.memory_id,
        "learnings": learning.learning_id,
    }
    for table, record_id in expected.items():
        docs = list(raw(db, table).find({}))
        assert [doc["_id"] for doc in docs] == [record_id]
        assert _object_ids(docs) == []
    versions = list(raw(db, "schema_versions").find({}))
    assert versions and all(isinstance(doc["_id"], str) for doc in versions)
    assert _object_ids(versions) == []


def test_timestamps_round_trip_to_the_microsecond(db: MongoDb) -> None:
    """A BSON date keeps milliseconds (for people and TTL indexes); the exact microseconds
    are stored beside it and are what comes back, timezone-aware in UTC."""
    created = datetime(2024, 5, 17, 14, 3, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    run = db.append_run(turn("s", 0, created_at=created))
    doc = raw(db, "runs").find_one({"_id": run.run_id})
    assert doc["created_at_us"] == 1715947389123456
    assert doc["created_at"].replace(tzinfo=UTC) == datetime(2024, 5, 17, 12, 3, 9, 123000, UTC)
    fetched = db.get_run(run.run_id)
    assert fetched is not None
    assert fetched.created_at == created
    assert fetched.created_at.tzinfo is UTC
    assert fetched.created_at.microsecond == 123456


def test_json_values_are_native_documents(db: MongoDb) -> None:
    """Plain JSON is stored as BSON sub-documents that other tools can read and query."""
    state = {"cart": [{"sku": "A-1", "qty": 2}], "vip": True, "ratio": 2.0}
    db.upsert_session(Session(session_id="s", state=state), expected_version=None)
    doc = raw(db, "sessions").find_one({"_id": "s"})
    assert doc["state"] == state
    assert isinstance(doc["state"]["ratio"], float) and doc["state"]["vip"] is True
    assert raw(db, "sessions").find_one({"state.cart.sku": "A-1"}) is not None


@pytest.mark.parametrize(
    "value",
    [
        {"example.com": {"visits": 3}},  # a dotted key
        {"$where": "not an operator"},  # a $-prefixed key
        {"big": 2**70, "small": -(2**64)},  # beyond 64-bit integers
        {"": "empty key"},
        {codec.JSON_TEXT: "looks like kern's own wrapper"},
        # (nesting beyond 64 levels and lone surrogates are refused at the contract's door)
    ],
)
def test_json_values_bson_cannot_hold_come_back_exactly(db: MongoDb, value: Any) -> None:
    sid = f"s-{abs(hash(json.dumps(value)))}"
    stored = db.upsert_session(
        Session(session_id=sid, state=value, metadata=value), expected_version=None
    )
    assert db.get_session(sid) == stored
    run = db.append_run(Run(session_id=sid, input=value, output=value, metrics=value))
    memory = db.upsert_memory(Memory(user_id="u", content="x", topics=["a"]))
    learning = db.upsert_learning(Learning(kind="k", content=value))

    assert db.get_run(run.run_id) == run
    assert db.get_memory(memory.memory_id) == memory
    assert db.get_learning(learning.learning_id) == learning
    fetched = db.get_session(sid)
    assert fetched is not None
    assert json.dumps(fetched.state, sort_keys=True) == json.dumps(value, sort_keys=True)
    finished = db.update_run(
        db.append_run(Run(session_id=sid, status=RunStatus.RUNNING)).run_id,
        status=RunStatus.COMPLETED,
        output=value,
        metrics=value,
    )
    assert finished.output == value and finished.metrics == value


def test_schema_versions_recorded_once(mongo_kwargs: dict[str, str]) -> None:
    first = MongoDb(**mongo_kwargs)
    first.create_tables()
    recorded = {doc["_id"]: doc for doc in raw(first, "schema_versions").find({})}
    assert {name: doc["version"] for name, doc in recorded.items()} == {
        "sessions": 2,
        "runs": 3,
        "memories": 2,
        "learnings": 2,
        "schema_versions": 1,
    }
    second = MongoDb(**mongo_kwargs)
    second.create_tables()
    second.append_run(turn("s", 0))
    again = {doc["_id"]: doc for doc in raw(second, "schema_versions").find({})}
    assert again == recorded  # same documents, same applied_at: nothing ran again
    first.close()
    second.close()


def _index_fields(collection: Any) -> set[tuple[str, ...]]:
    """Each index as the tuple of its fields (directions aside: nx-27017 does not keep them)."""
    return {
        tuple(field for field, _ in info["key"]) for info in collection.index_information().values()
    }


def test_indexes_for_every_read_path(db: MongoDb) -> None:
    db.create_tables()
    assert {
        ("session_id", "seq"),
        ("user_id",),
    } <= _index_fields(raw(db, "runs"))
    assert {
        ("user_id", "updated_at_us"),
        ("component_id", "updated_at_us"),
        ("updated_at_us",),
    } <= _index_fields(raw(db, "sessions"))
    assert {
        ("user_id", "updated_at_us"),
        ("user_id", "agent_id", "updated_at_us"),
        ("user_id", "terms"),
        ("user_id", "embedding_model"),
    } <= _index_fields(raw(db, "memories"))
    assert {
        ("kind", "namespace", "updated_at_us"),
        ("status", "kind", "updated_at_us"),
        ("user_id", "kind", "updated_at_us"),
        ("session_id", "updated_at_us"),
        ("entity_id", "kind", "updated_at_us"),
        ("terms", "status"),
        ("embedding_model", "kind", "namespace", "user_id"),
    } <= _index_fields(raw(db, "learnings"))
    runs_unique = [
        info
        for info in raw(db, "runs").index_information().values()
        if [field for field, _ in info["key"]] == ["session_id", "seq"]
    ]
    assert runs_unique and runs_unique[0].get("unique") is True


def test_migrations_bring_an_older_database_forward(mongo_kwargs: dict[str, str]) -> None:
    """A database whose memories collection is at version 0 (no indexes, as if written
    before they existed) gets them the next time kern opens it, data kept."""
    db = MongoDb(**mongo_kwargs)
    memory = db.upsert_memory(Memory(user_id="u", content="likes hiking in the Alps"))
    raw(db, "memories").drop_indexes()
    raw(db, "schema_versions").delete_one({"_id": "memories"})
    assert ("user_id", "terms") not in _index_fields(raw(db, "memories"))
    db.close()

    reopened = MongoDb(**mongo_kwargs)
    try:
        assert [hit.memory for hit in reopened.search_memories("u", "alps")] == [memory]
        assert ("user_id", "terms") in _index_fields(raw(reopened, "memories"))
        assert raw(reopened, "schema_versions").find_one({"_id": "memories"})["version"] == 2
    finally:
        reopened.close()


# -- reads go through indexes -----------------------------------------------------------------
def _finds_of(db: MongoDb, call: Callable[[], Any]) -> list[dict[str, Any]]:
    with COUNTER.counting(db.database_name) as tally:
        call()
    return tally.finds


def _conflicting_commit(db: MongoDb) -> None:
    with pytest.raises(VersionConflictError):
        db.commit_turn(turn("s", 10), Session(session_id="s", user_id="u"), expected_version=1)


def test_every_lookup_is_served_by_an_index(db: MongoDb) -> None:
    """The server's own plan for every document lookup an operation makes (finds, and the
    filters of updates and deletes): an index, never a collection scan."""
    db.upsert_session(Session(session_id="s", user_id="u", component_id="c"), expected_version=None)
    db.append_run(turn("s", 0, user_id="u"))
    db.upsert_memory(Memory(memory_id="m", user_id="u", agent_id="a", content="green tea"))
    db.upsert_learning(
        Learning(
            learning_id="l",
            kind="k",
            namespace="n",
            user_id="u",
            session_id="s",
            entity_id="e",
            content={},
        )
    )
    calls: dict[str, Callable[[], Any]] = {
        "get_session": lambda: db.get_session("s"),
        "upsert_session(update)": lambda: db.upsert_session(
            Session(session_id="s", user_id="u", component_id="c"), expected_version=1
        ),
        "list_sessions(user)": lambda: db.list_sessions(user_id="u"),
        "list_sessions(component, type)": lambda: db.list_sessions(
            component_id="c", session_type=SessionType.AGENT
        ),
        "append_run": lambda: db.append_run(turn("s", 1)),
        "commit_turn": lambda: db.commit_turn(
            turn("s", 9),
            Session(session_id="s", user_id="u", component_id="c", state={"n": 1}),
            expected_version=2,
        ),
        "commit_turn(conflict)": lambda: _conflicting_commit(db),
        "get_run": lambda: db.get_run("r"),
        "get_last_runs": lambda: db.get_last_runs("s", 3),
        "get_last_runs(filters)": lambda: db.get_last_runs(
            "s", 3, before_seq=5, top_level_only=True, status=RunStatus.COMPLETED
        ),
        "update_run": lambda: db.update_run(
            db.append_run(Run(session_id="s", status=RunStatus.RUNNING)).run_id,
            status=RunStatus.COMPLETED,
        ),
        "upsert_memory": lambda: db.upsert_memory(Memory(memory_id="m", user_id="u", content="x")),
        "get_memory": lambda: db.get_memory("m"),
        "list_memories": lambda: db.list_memories("u"),
        "list_memories(agent)": lambda: db.list_memories("u", agent_id="a"),
        "search_memories": lambda: db.search_memories("u", "green tea"),
        "upsert_learning": lambda: db.upsert_learning(Learning(learning_id="l", kind="k")),
        "get_learning": lambda: db.get_learning("l"),
        "query_learnings(kind)": lambda: db.query_learnings(kind="k"),
        "query_learnings(kind, namespace)": lambda: db.query_learnings(kind="k", namespace="n"),
        "query_learnings(user)": lambda: db.query_learnings(user_id="u"),
        "query_learnings(session)": lambda: db.query_learnings(session_id="s"),
        "query_learnings(entity)": lambda: db.query_learnings(entity_id="e"),
        "query_learnings(status)": lambda: db.query_learnings(status=LearningStatus.PROPOSED),
        "search_learnings(kind)": lambda: db.search_learnings("tea", kind="k"),
        "search_learnings(user)": lambda: db.search_learnings("tea", user_id="u"),
        "delete_memory": lambda: db.delete_memory("m"),
        "delete_learning": lambda: db.delete_learning("l"),
        "forget_user": lambda: db.forget_user("u"),
        "delete_session": lambda: db.delete_session("s"),
    }
    for name, call in calls.items():
        with COUNTER.counting(db.database_name) as tally:
            call()
        assert tally.lookups, f"{name} looked nothing up"
        for lookup in tally.lookups:
            plan = explain_find(db.client, db.database_name, lookup)
            assert plan_uses_index(plan), (name, lookup, plan["queryPlanner"])


def test_last_3_runs_cost_one_find_whatever_the_session_length(db: MongoDb, mongo: Any) -> None:
    """Loading the last 3 runs of a 10,000-run session sends the same commands and gets
    the same documents as of a 10-run one: one find, 3 documents (and the same keys and
    documents examined, where the server reports them). The long session is written in
    bulk as the documents append_run writes, to keep the test quick."""
    sessions = {"long": 10_000, "short": 10}
    for sid, count in sessions.items():
        docs = [codec.run_doc(turn(sid, i), i + 1) for i in range(count)]
        for start in range(0, count, 1000):
            raw(db, "runs").insert_many(docs[start : start + 1000])
    db.get_last_runs("short", 3)  # first use: indexes made, nothing left to set up

    measured = {}
    for sid, count in sessions.items():
        with COUNTER.counting(db.database_name) as tally:
            last = db.get_last_runs(sid, 3)
        assert [run.seq for run in last] == [count - 2, count - 1, count]
        assert tally.commands == ["find"]
        assert tally.documents_returned == 3
        find = tally.finds[0]
        assert find["limit"] == 3 and find["sort"] == {"seq": -1}
        assert plan_uses_index(explain_find(db.client, db.database_name, find))
        measured[sid] = examined(mongo.client, db.database_name, tally.finds)
    assert measured["long"] == measured["short"]


# -- appends ----------------------------------------------------------------------------------
def test_two_db_objects_racing_get_distinct_gapless_seqs(mongo_kwargs: dict[str, str]) -> None:
    """Two objects (two clients, as two processes would have) appending to one session from
    many threads: the unique {session_id, seq} index sends the losers back to try again."""
    first, second = MongoDb(**mongo_kwargs), MongoDb(**mongo_kwargs)
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            stored = list(
                pool.map(lambda i: (first, second)[i % 2].append_run(turn("s", i)), range(60))
            )
        assert sorted(run.seq for run in stored) == list(range(1, 61))
        assert [run.seq for run in first.get_last_runs("s", 100)] == list(range(1, 61))
    finally:
        first.close()
        second.close()


def test_seq_continues_after_runs_written_elsewhere(db: MongoDb) -> None:
    """The next seq comes from what is stored, not from what this object remembers."""
    db.append_run(turn("s", 0))
    raw(db, "runs").insert_one(codec.run_doc(turn("s", 1), 2))  # another writer's run
    assert db.append_run(turn("s", 2)).seq == 3
    db.delete_session("s")
    assert db.append_run(turn("s", 3)).seq == 1


# -- search -----------------------------------------------------------------------------------
def test_query_words_fold_accents_and_drop_stop_words() -> None:
    assert search.query_terms('What\'s "up" AND (Zürich) in the café?') == ["zurich", "cafe"]
    assert search.query_terms("NEAR( col:value ^start 100%_done") == [
        "near",
        "col",
        "value",
        "start",
        "100",
        "_done",
    ]
    for nothing in ("", "   ", '"', "*", "(((", "-", "the and of"):
        assert search.query_terms(nothing) == []


def test_search_matches_accents_and_scopes_learnings(db: MongoDb) -> None:
    db.upsert_memory(Memory(user_id="u", content="Moved to Zürich last year", topics=["Café"]))
    assert [h.memory.content for h in db.search_memories("u", "zurich cafe")] == [
        "Moved to Zürich last year"
    ]
    acme = db.upsert_learning(
        Learning(kind="entity", content={"name": "Acme", "offices": [{"city": "Köln"}]})
    )
    assert [h.learning for h in db.search_learnings("koln", kind="entity")] == [acme]
    assert db.search_learnings("koln", kind="other") == []


def test_search_reads_a_bounded_candidate_set(db: MongoDb) -> None:
    """One find per search, scoped to the user and to documents sharing a word with the
    question, and capped at search.CANDIDATES documents."""
    db.upsert_memory(Memory(user_id="u", content="green tea in the morning"))
    finds = _finds_of(db, lambda: db.search_memories("u", "Which tea do I like?"))
    assert len(finds) == 1
    assert finds[0]["filter"] == {"user_id": {"$eq": "u"}, "terms": {"$in": ["tea", "like"]}}
    assert finds[0]["limit"] == search.CANDIDATES

    finds = _finds_of(db, lambda: db.search_learnings("tea", user_id="u"))
    assert finds[0]["filter"] == {
        "terms": {"$in": ["tea"]},
        "user_id": {"$eq": "u"},
        "status": {"$eq": "active"},
    }
    assert finds[0]["limit"] == search.CANDIDATES
    # a question made only of stop words or punctuation reads nothing at all
    assert _finds_of(db, lambda: db.search_memories("u", "what is the?")) == []


def test_forget_user_leaves_no_document_with_the_user(db: MongoDb) -> None:
    db.upsert_session(Session(session_id="s", user_id="gone"), expected_version=None)
    db.append_run(turn("s", 0))  # no user_id: goes with the session
    db.append_run(turn("loose", 0, user_id="gone"))
    db.upsert_memory(Memory(user_id="gone", content="fact"))
    db.upsert_learning(Learning(kind="k", user_id="gone", content={}))
    db.upsert_learning(Learning(kind="k", session_id="s", content={}))  # in her session
    kept = db.upsert_learning(Learning(kind="k", user_id="stays", content={}))

    assert db.forget_user("gone") == {"sessions": 1, "runs": 2, "memories": 1, "learnings": 2}
    for table in ("sessions", "runs", "memories", "learnings"):
        assert raw(db, table).count_documents({"user_id": "gone"}) == 0
    assert raw(db, "runs").count_documents({"session_id": "s"}) == 0
    assert raw(db, "learnings").count_documents({"session_id": "s"}) == 0
    assert db.query_learnings(kind="k") == [kept]


# -- two processes, two turns ------------------------------------------------------------------
CHILD = """
import asyncio, os, sys
from kern.agent import Agent
from kern.models.openai import OpenAIChat
from kern.db.mongo import {cls}

url, prefix = os.environ["KERN_CHILD_DB_URL"], os.environ["KERN_CHILD_PREFIX"]
db = {cls}(db_url=url, collection_prefix=prefix)
agent = Agent(
    model=OpenAIChat(id="scripted", base_url=os.environ["KERN_CHILD_MODEL_URL"], api_key="test"),
    db=db,
    add_history_to_context=True,
    num_history_runs=3,
)
message, session = sys.argv[1], sys.argv[2]
if {is_async}:
    async def main():
        try:
            output = await agent.arun(message, session_id=session, user_id="ada")
        finally:
            await db.close()
        print(output.seq, os.getpid())
    asyncio.run(main())
else:
    output = agent.run(message, session_id=session, user_id="ada")
    db.close()
    print(output.seq, os.getpid())
"""


def _turn_in_a_new_process(
    cls: str, message: str, session: str, env: dict[str, str]
) -> tuple[int, int]:
    code = textwrap.dedent(CHILD).format(cls=cls, is_async=cls.startswith("Async"))
    done = subprocess.run(
        [sys.executable, "-c", code, message, session],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    seq, pid = done.stdout.split()
    return int(seq), int(pid)


@pytest.mark.parametrize("cls", ["MongoDb", "AsyncMongoDb"])
def test_two_processes_two_turns_history_carried(
    cls: str, scripted: ScriptedServer, mongo: Any, mongo_url: str
) -> None:
    """Each turn runs in a fresh Python process; the second one's model request carries
    the first turn, which only the database could have given it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "KERN_"))}
    env.update(
        KERN_CHILD_DB_URL=mongo_url,
        KERN_CHILD_PREFIX=mongo.prefix,
        KERN_CHILD_MODEL_URL=scripted.base_url,
    )
    scripted.script("Noted: a local-first web app.", "Try a small framework such as Flask.")
    first = "I am working on building a local-first web app."
    second = "What python web framework fits this best?"

    seq1, pid1 = _turn_in_a_new_process(cls, first, "project", env)
    seq2, pid2 = _turn_in_a_new_process(cls, second, "project", env)

    assert (seq1, seq2) == (1, 2)
    assert pid1 != pid2 and os.getpid() not in (pid1, pid2)
    requests = scripted.chat_requests()
    assert len(requests) == 2
    carried = [(m["role"], m.get("content")) for m in requests[1]["messages"]]
    assert ("user", first) in carried
    assert ("assistant", "Noted: a local-first web app.") in carried
    assert carried[-1] == ("user", second)
    assert ("user", first) not in [
        (m["role"], m.get("content")) for m in requests[0]["messages"][:-1]
    ]

    db = MongoDb(db_url=mongo_url, collection_prefix=mongo.prefix)
    try:
        runs = db.get_last_runs("project", 10)
        assert [(run.seq, run.input, run.user_id) for run in runs] == [
            (1, first, "ada"),
            (2, second, "ada"),
        ]
        session = db.get_session("project")
        assert session is not None and session.user_id == "ada"
    finally:
        db.close()


# -- commit_turn: the run and the session's new state, both or neither ----------------------
class Crash(BaseException):
    """The process killed between two server calls (kill -9): nothing after it runs, not
    even kern's own error handling (a ``BaseException``, which no ``except Exception``
    catches)."""


class CrashOn:
    """A pymongo collection whose first call of ``method`` matching ``when`` crashes the
    process (``Crash``) instead of reaching the server."""

    def __init__(
        self, collection: Any, method: str, when: Callable[..., bool] = lambda *a, **k: True
    ) -> None:
        self._collection, self._method, self._when = collection, method, when
        self.crashed = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._collection, name)
        if name != self._method:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            if not self.crashed and self._when(*args, **kwargs):
                self.crashed = True
                raise Crash(f"killed before {self._collection.name}.{name}")
            return attribute(*args, **kwargs)

        return call


@pytest.fixture
def one_call_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The two marker clears of a commit sent as two calls, not one ``bulkWrite``, so that a
    crash can fall between them too (with one bulkWrite the server does both or neither:
    a subset of these cases), and so that ``CrashOn`` sees them."""
    monkeypatch.setattr(calls, "client_bulk_write", lambda client: False)


def crash_on(db: MongoDb, table: str, method: str, when: Callable[..., bool]) -> CrashOn:
    db.create_tables()
    crashing = CrashOn(db.collections[table], method, when)
    db.collections = {**db.collections, table: crashing}
    return crashing


def _unsets(field: str) -> Callable[..., bool]:
    return lambda query, update, *a, **k: field in update.get("$unset", {})


#: Where a commit can die, as (name, collection, method, which call): after the run insert,
#: after the session write (the commit point), after the run's marker was cleared.
CRASH_POINTS = {
    "after the run insert, before the session write": (
        "sessions",
        None,  # insert_one (create) or find_one_and_update (update)
        lambda *a, **k: True,
    ),
    "after the session write, before the run's marker is cleared": (
        "runs",
        "update_one",
        _unsets("pending"),
    ),
    "after the run's marker is cleared, before the session's": (
        "sessions",
        "update_one",
        _unsets("pending_run"),
    ),
}


def raw_pending(db: MongoDb) -> list[Any]:
    """Every marker of an unfinished commit left in the raw collections."""
    runs = [doc["_id"] for doc in raw(db, "runs").find({"pending": {"$exists": True}})]
    sessions = [doc["_id"] for doc in raw(db, "sessions").find({"pending_run": {"$exists": True}})]
    return runs + sessions


def test_commit_turn_stores_run_and_state_together(db: MongoDb) -> None:
    run, session = db.commit_turn(
        turn("s", 0), Session(session_id="s", user_id="u", state={"n": 1}), expected_version=None
    )
    assert (run.seq, session.version, session.state) == (1, 1, {"n": 1})
    assert db.get_session("s") == session
    assert db.get_last_runs("s", 5) == [run] and db.get_run(run.run_id) == run
    second, session2 = db.commit_turn(
        turn("s", 1), session.model_copy(update={"state": {"n": 2}}), expected_version=1
    )
    assert (second.seq, session2.version, session2.state) == (2, 2, {"n": 2})
    assert session2.created_at == session.created_at
    assert session2.updated_at > session.updated_at
    assert db.get_session("s") == session2
    assert db.get_last_runs("s", 5) == [run, second]
    assert raw_pending(db) == []  # every marker cleared once the commit returned


def test_commit_turn_version_conflict_leaves_no_run(db: MongoDb) -> None:
    stored, first = db.commit_turn(
        turn("s", 0), Session(session_id="s", state={"n": 1}), expected_version=None
    )
    for attempt, expected in ((turn("s", 1), None), (turn("s", 2), 7), (turn("s", 3), 0)):
        with pytest.raises(VersionConflictError) as conflict:
            db.commit_turn(
                attempt, first.model_copy(update={"state": {"n": 99}}), expected_version=expected
            )
        assert conflict.value.actual == 1
        assert db.get_run(attempt.run_id) is None
        assert raw(db, "runs").find_one({"_id": attempt.run_id}) is None  # deleted, not hidden
    with pytest.raises(VersionConflictError):  # a session that does not exist
        db.commit_turn(turn("t", 0), Session(session_id="t"), expected_version=3)
    assert db.get_session("t") is None and db.get_last_runs("t", 5) == []
    assert db.get_last_runs("s", 5) == [stored]
    assert db.get_session("s") == first
    assert raw(db, "runs").count_documents({}) == 1 and raw_pending(db) == []


def test_commit_turn_retry_with_the_same_run_id_stores_nothing_more(db: MongoDb) -> None:
    run = turn("s", 0)
    session = Session(session_id="s", state={"n": 1})
    first = db.commit_turn(run, session, expected_version=None)
    assert db.commit_turn(run, session, expected_version=None) == first
    changed = first[1].model_copy(update={"state": {"n": 2}})
    second = db.commit_turn(turn("s", 1), changed, expected_version=1)
    # a retry whose reply was lost, with the version it had then: the stored pair comes back
    assert db.commit_turn(second[0], changed, expected_version=1) == second
    assert raw(db, "runs").count_documents({}) == 2
    assert db.get_session("s") == second[1] and second[1].version == 2
    with pytest.raises(ValueError, match="another session"):
        db.commit_turn(
            run.model_copy(update={"session_id": "other"}),
            Session(session_id="other"),
            expected_version=None,
        )
    with pytest.raises(ValueError, match=r"run\.session_id must be session\.session_id"):
        db.commit_turn(turn("a", 0), Session(session_id="b"), expected_version=None)
    assert db.get_session("other") is None and db.get_session("b") is None


@pytest.mark.usefixtures("one_call_at_a_time")
@pytest.mark.parametrize("expected", [None, 1], ids=["creating", "updating"])
@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_commit_turn_interrupted_between_two_calls(
    mongo_kwargs: dict[str, str], point: str, expected: int | None
) -> None:
    """The process dies between two of the commit's server calls. A new db object (another
    process) never sees the state without its run, nor the run without its state: the
    commit is finished (it reached its session write) or it never happened, and the next
    commit on the session succeeds and leaves no marker behind."""
    before = None
    setup = MongoDb(**mongo_kwargs)
    if expected is not None:
        setup.upsert_session(Session(session_id="s", state={"n": 1}), expected_version=None)
        setup.append_run(turn("s", 0))
        before = setup.get_session("s")
    table, method, when = CRASH_POINTS[point]
    method = method or ("insert_one" if expected is None else "find_one_and_update")
    dying = MongoDb(**mongo_kwargs)
    crashing = crash_on(dying, table, method, when)
    run = turn("s", 1)
    with pytest.raises(Crash):
        dying.commit_turn(
            run, Session(session_id="s", user_id="u", state={"n": 2}), expected_version=expected
        )
    assert crashing.crashed
    applied = point != "after the run insert, before the session write"

    for order in ("session first", "runs first"):
        reader = MongoDb(**mongo_kwargs)
        try:
            if order == "session first":
                session = reader.get_session("s")
                history = reader.get_last_runs("s", 10)
            else:
                history = reader.get_last_runs("s", 10)
                session = reader.get_session("s")
            fetched = reader.get_run(run.run_id)
        finally:
            reader.close()
        if applied:
            assert session is not None and session.state == {"n": 2}
            assert session.version == (expected or 0) + 1
            assert [r.run_id for r in history][-1] == run.run_id
            assert fetched is not None and fetched.input == run.input
        else:
            assert session == before  # the old state (or none), and no trace of the run
            assert run.run_id not in [r.run_id for r in history]
            assert fetched is None

    # the next turn, from yet another process, commits on top of what it reads
    nxt = MongoDb(**mongo_kwargs)
    try:
        current = nxt.get_session("s")
        version = None if current is None else current.version
        base = {} if current is None else current.state
        stored, session = nxt.commit_turn(
            turn("s", 2),
            Session(session_id="s", user_id="u", state={**base, "next": True}),
            expected_version=version,
        )
        history = nxt.get_last_runs("s", 10)
        assert history[-1] == stored and session == nxt.get_session("s")
        assert (run.run_id in [r.run_id for r in history]) is applied
        assert raw_pending(nxt) == []
        assert raw(nxt, "runs").count_documents({}) == len(history)  # no orphan left
    finally:
        nxt.close()
        setup.close()
        dying.close()


@pytest.mark.usefixtures("one_call_at_a_time")
def test_a_reader_settles_an_interrupted_commit_by_itself(mongo_kwargs: dict[str, str]) -> None:
    """An interrupted commit that reached its session write is finished by the next read
    of either kind, with no further commit needed; one that did not is invisible and,
    once the session has moved on, deleted by the next read that meets it."""
    dying = MongoDb(**mongo_kwargs)
    dying.upsert_session(Session(session_id="s", state={"n": 1}), expected_version=None)
    crash_on(dying, "runs", "update_one", _unsets("pending"))
    applied = turn("s", 0)
    with pytest.raises(Crash):
        dying.commit_turn(applied, Session(session_id="s", state={"n": 2}), expected_version=1)
    reader = MongoDb(**mongo_kwargs)
    assert reader.get_run(applied.run_id) is not None
    assert raw_pending(reader) == []

    dying2 = MongoDb(**mongo_kwargs)
    crash_on(dying2, "sessions", "find_one_and_update", lambda *a, **k: True)
    lost = turn("s", 1)
    with pytest.raises(Crash):
        dying2.commit_turn(lost, Session(session_id="s", state={"n": 3}), expected_version=2)
    assert reader.get_last_runs("s", 5) == [reader.get_run(applied.run_id)]
    assert raw(reader, "runs").find_one({"_id": lost.run_id}) is not None  # may still apply
    reader.upsert_session(Session(session_id="s", state={"n": 4}), expected_version=2)
    assert [r.run_id for r in reader.get_last_runs("s", 5)] == [applied.run_id]
    assert raw(reader, "runs").find_one({"_id": lost.run_id}) is None  # can never apply
    # the lost turn retried with its run_id commits on top of the current state
    run, session = reader.commit_turn(
        lost, Session(session_id="s", state={"n": 5}), expected_version=3
    )
    assert session.version == 4 and reader.get_run(lost.run_id) == run
    for db in (dying, dying2, reader):
        db.close()


@pytest.mark.usefixtures("one_call_at_a_time")
def test_a_retry_finishes_its_own_interrupted_commit(mongo_kwargs: dict[str, str]) -> None:
    """The writer died after inserting the run: retrying the turn with the same run_id
    takes that run over (same seq, this attempt's content) and commits it."""
    dying = MongoDb(**mongo_kwargs)
    dying.upsert_session(Session(session_id="s", state={"n": 1}), expected_version=None)
    crash_on(dying, "sessions", "find_one_and_update", lambda *a, **k: True)
    run = turn("s", 0)
    with pytest.raises(Crash):
        dying.commit_turn(run, Session(session_id="s", state={"n": 2}), expected_version=1)
    retry = MongoDb(**mongo_kwargs)
    again = run.model_copy(update={"output": "the retried answer"})
    stored, session = retry.commit_turn(
        again, Session(session_id="s", state={"n": 2}), expected_version=1
    )
    assert stored.seq == 1 and stored.output == "the retried answer"
    assert retry.get_last_runs("s", 5) == [stored] and session.version == 2
    assert raw_pending(retry) == []
    dying.close()
    retry.close()


def test_concurrent_commits_to_one_session_lose_nothing(mongo_kwargs: dict[str, str]) -> None:
    """Threads of two db objects (two clients, as two processes) each commit turns that
    increment a counter in the state, re-reading and retrying on VersionConflictError:
    every turn is stored once, with its own seq, and no increment is lost."""
    dbs = [MongoDb(**mongo_kwargs), MongoDb(**mongo_kwargs)]
    dbs[0].upsert_session(Session(session_id="s", state={"n": 0}), expected_version=None)
    threads, turns = 6, 5

    def worker(index: int) -> list[str]:
        db = dbs[index % 2]
        stored = []
        for i in range(turns):
            run = turn("s", index * 100 + i)
            while True:
                current = db.get_session("s")
                assert current is not None
                state = {"n": current.state["n"] + 1}
                try:
                    db.commit_turn(
                        run,
                        current.model_copy(update={"state": state}),
                        expected_version=current.version,
                    )
                    break
                except VersionConflictError:
                    continue
            stored.append(run.run_id)
        return stored

    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            committed = [rid for ids in pool.map(worker, range(threads)) for rid in ids]
        history = dbs[0].get_last_runs("s", 1000)
        seqs = [run.seq for run in history]
        assert len(seqs) == len(set(seqs)) == threads * turns
        assert sorted(run.run_id for run in history) == sorted(committed)
        session = dbs[1].get_session("s")
        assert session is not None and session.state == {"n": threads * turns}
        assert session.version == 1 + threads * turns
        assert raw_pending(dbs[0]) == []
        assert raw(dbs[0], "runs").count_documents({}) == threads * turns
    finally:
        for db in dbs:
            db.close()


async def test_async_commit_turn(mongo_kwargs: dict[str, str]) -> None:
    adb = AsyncMongoDb(**mongo_kwargs)
    try:
        run, session = await adb.commit_turn(
            turn("s", 0), Session(session_id="s", state={"n": 0}), expected_version=None
        )
        assert (run.seq, session.version) == (1, 1)
        assert await adb.commit_turn(run, session, expected_version=None) == (run, session)
        with pytest.raises(VersionConflictError):
            await adb.commit_turn(turn("s", 9), session, expected_version=None)

        async def one(i: int) -> None:
            while True:
                current = await adb.get_session("s")
                assert current is not None
                changed = current.model_copy(update={"state": {"n": current.state["n"] + 1}})
                try:
                    await adb.commit_turn(turn("s", i), changed, expected_version=current.version)
                    return
                except VersionConflictError:
                    continue

        await asyncio.gather(*(one(i) for i in range(1, 11)))
        history = await adb.get_last_runs("s", 100)
        assert [r.seq for r in history] == list(range(1, 12))
        stored = await adb.get_session("s")
        assert stored is not None and stored.state == {"n": 10} and stored.version == 11
    finally:
        await adb.close()


@pytest.mark.parametrize("cls", [MongoDb, AsyncMongoDb])
def test_commit_turn_in_a_transaction(mongo_kwargs: dict[str, str], cls: type) -> None:
    """Where the server has transactions (a replica set, mongos) the insert and the session
    write are one transaction: no marker is written. nx-27017 says it is a standalone
    server (kern does not use its transactions: they are not isolated from other clients),
    so the path is forced here, on a database no one else uses, one writer at a time."""

    async def call(result: Any) -> Any:
        return await result if inspect.isawaitable(result) else result

    async def scenario() -> None:
        db = cls(**mongo_kwargs)
        try:
            await call(db.create_tables())
            assert db._transactions.enabled is False  # nx-27017: a standalone server
            db._transactions.enabled = True
            with COUNTER.counting(db.database_name) as tally:
                run, session = await call(
                    db.commit_turn(turn("s", 0), Session(session_id="s"), expected_version=None)
                )
            assert tally.commands == ["find", "insert", "insert"]  # + commitTransaction (admin)
            changed = session.model_copy(update={"state": {"n": 1}})
            second, session2 = await call(db.commit_turn(turn("s", 1), changed, expected_version=1))
            assert (second.seq, session2.version) == (2, 2)
            with pytest.raises(VersionConflictError):
                await call(db.commit_turn(turn("s", 2), changed, expected_version=1))
            retried = await call(db.commit_turn(second, changed, expected_version=1))
            assert retried == (second, session2)
            assert await call(db.get_last_runs("s", 10)) == [run, second]
            assert await call(db.get_session("s")) == session2
            assert db._transactions.enabled is True
        finally:
            await call(db.close())

    asyncio.run(scenario())
    check = MongoDb(**mongo_kwargs)
    try:
        assert raw(check, "runs").count_documents({}) == 2 and raw_pending(check) == []
    finally:
        check.close()


@pytest.mark.parametrize("bulk", [True, False], ids=["bulkWrite", "without bulkWrite"])
def test_commit_turn_round_trips(db: MongoDb, bulk: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """What one commit costs without transactions: the highest seq, the run insert, the
    session compare-and-set (the commit point), and clearing the two markers: in one
    client-level bulkWrite (MongoDB 8.0+, nx-27017), else as two updates."""
    db.upsert_session(Session(session_id="s"), expected_version=None)
    if not bulk:
        monkeypatch.setattr(calls, "client_bulk_write", lambda client: False)
    with COUNTER.counting(db.database_name) as tally, COUNTER.counting("admin") as admin:
        db.commit_turn(turn("s", 0), Session(session_id="s", state={"n": 1}), expected_version=1)
    clears = ["bulkWrite"] if bulk else ["update", "update"]
    assert tally.commands + admin.commands == ["find", "insert", "findAndModify", *clears]
    assert raw_pending(db) == []
    with COUNTER.counting(db.database_name) as tally:
        db.get_session("s")
        db.get_last_runs("s", 3)
    assert tally.commands == ["find", "find"]  # reads pay nothing when no commit is pending


# -- an unreachable server ---------------------------------------------------------------------
@pytest.mark.parametrize("cls", [MongoDb, AsyncMongoDb])
def test_a_stopped_server_is_storage_unavailable_until_it_is_back(
    nx_executable: Path, tmp_path: Path, cls: type
) -> None:
    """A server of this test's own, stopped (its process, by PID) and started again on the
    same port and data: calls while it is down raise StorageUnavailableError with pymongo's
    exception chained and no password in the message; the next call after the restart
    works, on the same db object."""
    server = NxServer(nx_executable, tmp_path / "nx")
    server.start()
    options = "?serverSelectionTimeoutMS=2000&connectTimeoutMS=1000"
    where = f"127.0.0.1:{server.port}/faults"

    async def call(result: Any) -> Any:
        return await result if inspect.isawaitable(result) else result

    async def scenario() -> None:
        db = cls(db_url=f"mongodb://{where}{options}")
        # nx-27017 has no authentication: this one is only used while the server is down
        locked = cls(db_url=f"mongodb://kern:s3cret@{where}{options}")
        try:
            stored, session = await call(
                db.commit_turn(turn("s", 0), Session(session_id="s"), expected_version=None)
            )
            server.stop()
            calls = [
                (db, lambda: db.get_session("s")),
                (db, lambda: db.commit_turn(turn("s", 1), session, expected_version=1)),
                (locked, lambda: locked.get_last_runs("s", 3)),
            ]
            for target, attempt in calls:
                with pytest.raises(StorageUnavailableError) as down:
                    await call(attempt())
                assert isinstance(down.value.__cause__, ConnectionFailure)
                message = str(down.value)
                assert "the mongo database at mongodb://" in message and where in message
                assert "s3cret" not in message and "s3cret" not in target.storage_target()
            assert locked.storage_target() == f"mongodb://kern@{where}"
            assert db.storage_target() == f"mongodb://{where}"

            server.start(port=server.port)
            assert await call(db.get_session("s")) == session
            assert await call(db.get_last_runs("s", 3)) == [stored]
            second, _ = await call(db.commit_turn(turn("s", 1), session, expected_version=1))
            assert second.seq == 2
        finally:
            await call(db.close())
            await call(locked.close())

    try:
        asyncio.run(scenario())
    finally:
        server.stop()


def test_only_connection_errors_are_storage_unavailable(db: MongoDb) -> None:
    assert set(MongoDb.unavailable_errors) == set(AsyncMongoDb.unavailable_errors)
    assert ConnectionFailure in MongoDb.unavailable_errors
    for error in (OperationFailure("x"), DuplicateKeyError("x")):
        assert not isinstance(error, MongoDb.unavailable_errors)
    db.append_run(turn("s", 0, run_id="r"))
    with pytest.raises(ValueError, match="already stored"):  # the server answered
        db.append_run(turn("s", 1, run_id="r"))


# -- the schema is checked at start-up, not taken on trust -------------------------------------
APPENDER = """
import os, sys
from kern.db.mongo import MongoDb
from kern.records import Run

url, prefix = os.environ["KERN_CHILD_DB_URL"], os.environ["KERN_CHILD_PREFIX"]
db = MongoDb(db_url=url, collection_prefix=prefix)
for i in range(int(sys.argv[1])):
    db.append_run(Run(session_id="s", input=f"{os.getpid()} {i}"))
db.close()
"""


def test_dropped_indexes_are_made_again_before_concurrent_appends(
    mongo: Any, mongo_url: str, mongo_kwargs: dict[str, str]
) -> None:
    """Issue 12: with the indexes dropped by hand (the version records still saying they
    exist), 6 processes x 30 turns stored 50 duplicate seqs. Now every db object lists the
    indexes on first use and makes the missing ones: appends from several processes and
    threads, each with a new db object, get distinct, gapless seqs."""
    first = MongoDb(**mongo_kwargs)
    first.create_tables()
    for table in ("sessions", "runs", "memories", "learnings"):
        raw(first, table).drop_indexes()
    assert _index_fields(raw(first, "runs")) == {("_id",)}
    assert raw(first, "schema_versions").find_one({"_id": "runs"})["version"] == 3
    first.close()

    env = {k: v for k, v in os.environ.items() if not k.startswith("KERN_")}
    env.update(KERN_CHILD_DB_URL=mongo_url, KERN_CHILD_PREFIX=mongo.prefix)
    processes, per_process = 4, 20
    children = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(per_process)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    dbs = [MongoDb(**mongo_kwargs), MongoDb(**mongo_kwargs)]
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(lambda i: dbs[i % 2].append_run(turn("s", i)), range(40)))
        for child in children:
            _, stderr = child.communicate(timeout=180)
            assert child.returncode == 0, stderr
        seqs = [doc["seq"] for doc in raw(dbs[0], "runs").find({"session_id": "s"})]
        total = processes * per_process + 40
        assert sorted(seqs) == list(range(1, total + 1))
        runs_indexes = raw(dbs[0], "runs").index_information().values()
        assert [
            info.get("unique")
            for info in runs_indexes
            if [field for field, _ in info["key"]] == ["session_id", "seq"]
        ] == [True]
    finally:
        for db in dbs:
            db.close()
    check = MongoDb(**mongo_kwargs)
    try:
        assert ("user_id", "terms") in _index_fields(raw(check, "memories"))
        assert ("terms", "status") in _index_fields(raw(check, "learnings"))
        assert ("user_id", "updated_at_us") in _index_fields(raw(check, "sessions"))
        assert ("pending.user_id",) in _index_fields(raw(check, "runs"))
        assert ("created_at_us", "session_id", "seq") in _index_fields(raw(check, "runs"))
    finally:
        check.close()


def test_a_unique_index_kern_cannot_make_names_the_fix(mongo_kwargs: dict[str, str]) -> None:
    db = MongoDb(**mongo_kwargs)
    db.create_tables()
    runs = raw(db, "runs")
    runs.drop_indexes()
    runs.create_index([("session_id", 1), ("seq", 1)], name="by_hand")  # not unique
    with (
        MongoDb(**mongo_kwargs) as again,
        pytest.raises(KernError, match=r"is not unique.*Drop that index"),
    ):
        again.get_last_runs("s", 3)
    runs.drop_indexes()
    runs.insert_many([codec.run_doc(turn("s", i), 1) for i in range(2)])  # a shared seq
    with (
        MongoDb(**mongo_kwargs) as again,
        pytest.raises(KernError, match=r"share a \(session_id, seq\).*duplicates"),
    ):
        again.get_last_runs("s", 3)
    db.close()


# -- forget_user leaves no bytes -----------------------------------------------------------------
def raw_scan(db: MongoDb) -> list[str]:
    """Every document of every collection of the db's prefix, as text, read with pymongo."""
    return raw_documents(db.client, db.database_name, db.collection_prefix)


@pytest.mark.usefixtures("one_call_at_a_time")
def test_forget_user_leaves_no_byte_of_hers(mongo_kwargs: dict[str, str]) -> None:
    """Her words (in memories, learnings, session state, run messages) and her id are in
    no document of any collection after forget_user: interrupted commits included, one in
    her session and one of a session that was never written."""
    marker = f"qz{uuid.uuid4().hex[:12]}"
    user = f"forget-{marker}"
    db = MongoDb(**mongo_kwargs)
    db.upsert_session(Session(session_id="b", user_id="bob"), expected_version=None)
    kept = db.append_run(turn("b", 0, user_id="bob"))
    _, session = db.commit_turn(
        Run(
            session_id="s",
            user_id=user,
            input=f"about {marker}",
            messages=[Message(role="user", content=f"about {marker}")],
            output=f"{marker} noted",
        ),
        Session(session_id="s", user_id=user, state={"topic": marker}, metadata={"m": marker}),
        expected_version=None,
    )
    db.append_run(Run(session_id="s", input=f"step {marker}"))  # no user_id: in her session
    db.append_run(Run(session_id="b", user_id=user, input=marker))  # in another's session
    db.upsert_memory(Memory(user_id=user, content=f"{marker} likes pistachio", topics=[marker]))
    db.upsert_learning(Learning(kind="profile", user_id=user, content={"fact": marker}))
    db.upsert_learning(Learning(kind="context", session_id="s", content={"note": marker}))

    for crash_table, method, when, run_session, expected in (
        ("runs", "update_one", _unsets("pending"), "s", 1),  # after her session's write
        ("sessions", "insert_one", lambda *a, **k: True, "never", None),  # before any
    ):
        dying = MongoDb(**mongo_kwargs)
        crash_on(dying, crash_table, method, when)
        with pytest.raises(Crash):
            dying.commit_turn(
                Run(session_id=run_session, input=f"late {marker}"),  # the run has no user_id
                Session(session_id=run_session, user_id=user, state={"late": marker}),
                expected_version=expected,
            )
        dying.close()
    assert any(marker in entry for entry in raw_scan(db))
    assert any("pending" in entry and "never" in entry for entry in raw_scan(db))
    bystander = db.get_session("b")

    counts = db.forget_user(user)
    assert counts == {"sessions": 1, "runs": 5, "memories": 1, "learnings": 2}
    needles = [marker, user, user.encode().hex()]
    left = [entry for entry in raw_scan(db) if any(needle in entry for needle in needles)]
    assert left == []
    assert db.get_session("b") == bystander and db.get_last_runs("b", 5) == [kept]
    assert session.user_id == user and db.get_session("s") is None
    db.close()


# -- documents MongoDB cannot store --------------------------------------------------------------
def test_a_run_too_large_for_one_document_is_refused_whole(db: MongoDb) -> None:
    """A 20 MB input gave pymongo's DocumentTooLarge after the model call. A run is one
    document (its input stored twice: as input and as the user message): one over 16 MiB
    is refused with a kern error naming the fix, before anything is written."""
    session = db.upsert_session(Session(session_id="s", state={"n": 1}), expected_version=None)
    big = "x" * 8_500_000
    run = Run(session_id="s", input=big, messages=[Message(role="user", content=big)])
    changed = session.model_copy(update={"state": {"n": 2}})
    with pytest.raises(DocumentTooLargeError) as refused:
        db.commit_turn(run, changed, expected_version=1)
    assert isinstance(refused.value, InvalidTextError) and isinstance(refused.value, KernError)
    message = str(refused.value)
    assert run.run_id in message and "16 MiB" in message and "17.0 MB" in message
    assert "nothing was stored" in message and "by reference" in message
    with pytest.raises(DocumentTooLargeError):
        db.append_run(run)
    # a session state too large: the run is not stored either
    with pytest.raises(DocumentTooLargeError, match=r"session 's'.*session state"):
        db.commit_turn(
            turn("s", 0), session.model_copy(update={"state": {"big": big * 2}}), expected_version=1
        )
    with pytest.raises(DocumentTooLargeError):
        db.upsert_session(
            session.model_copy(update={"state": {"big": big * 2}}), expected_version=1
        )
    running = db.append_run(Run(session_id="s", status=RunStatus.RUNNING, input="hi"))
    with pytest.raises(DocumentTooLargeError):
        db.update_run(running.run_id, status=RunStatus.COMPLETED, output=big * 2)
    with pytest.raises(DocumentTooLargeError):
        db.upsert_memory(Memory(user_id="u", content=big * 2))
    assert db.get_run(running.run_id) == running  # unchanged
    assert raw(db, "runs").count_documents({}) == 1 and raw_pending(db) == []
    assert db.get_session("s") == session.model_copy(update={"updated_at": running.created_at})
    assert db.list_memories("u") == []

    # near the limit is fine: about 15 MB
    near = "y" * 7_400_000
    fits = Run(session_id="s", input=near, messages=[Message(role="user", content=near)])
    stored, _ = db.commit_turn(fits, changed, expected_version=1)
    assert db.get_run(fits.run_id) == stored and stored.input == near


async def test_async_too_large_run_is_refused(mongo_kwargs: dict[str, str]) -> None:
    adb = AsyncMongoDb(**mongo_kwargs)
    try:
        big = "x" * 17_000_000
        with pytest.raises(DocumentTooLargeError):
            await adb.commit_turn(
                Run(session_id="s", input=big), Session(session_id="s"), expected_version=None
            )
        assert await adb.get_session("s") is None and await adb.get_last_runs("s", 3) == []
    finally:
        await adb.close()


# -- a refused login ---------------------------------------------------------------------------
class _RefusingMongoDb(MongoDb):
    """A server that answers every read as MongoDB answers wrong credentials (nx-27017 has
    no authentication to refuse with): ``OperationFailure`` code 18, or another failure."""

    failure = OperationFailure("Authentication failed.", code=18)

    def get_session(self, session_id: str) -> Any:
        raise self.failure


def test_a_refused_login_names_the_user_and_host_never_the_password() -> None:
    db = _RefusingMongoDb(db_url="mongodb://ada:s3cret-pw@127.0.0.1:27999/kern")
    try:
        with pytest.raises(StorageLoginError) as error:
            db.get_session("s")
        first_line = str(error.value).splitlines()[0]
        assert "refused the login of user 'ada'" in first_line
        assert "127.0.0.1:27999" in first_line and "s3cret-pw" not in str(error.value)
        assert error.value.user == "ada" and isinstance(error.value.__cause__, OperationFailure)

        db.failure = OperationFailure("not authorized on kern to execute command", code=13)
        with pytest.raises(OperationFailure):  # another answer of the server stays what it is
            db.get_session("s")
    finally:
        db.close()
