"""What only the DuckDB backend does: files and URLs, errors, sharing the file between
processes, indexes DuckDB really reads through, schema versions, and search.

The storage contract itself is checked by the conformance suite (test_conformance.py).
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from sqlalchemy import create_engine, event

import kern.db
from kern.agent import Agent
from kern.db.duckdb import AsyncDuckDb, DuckDb, DuckDbLockedError
from kern.db.duckdb.search import LearningTerms, MemoryTerms
from kern.errors import (
    ConfigurationError,
    KernError,
    SyncAsyncMismatchError,
)
from kern.models.openai import OpenAIChat
from kern.records import Learning, LearningStatus, Memory, Message, Run, RunStatus, Session
from kern.testing.files import FileBackendScenarios
from kern.testing.scripted_server import ScriptedServer
from kern.testing.turns import Awaiting, a_turn, fault_between_halves

ODD_QUERIES = ('what\'s "up" AND (x', '"', "*", "NEAR(", "a OR", "col:value", "^x", "(((", "")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[DuckDb]:
    db = DuckDb(db_file=tmp_path / "kern.duckdb")
    yield db
    db.close()


def turn(session_id: str, i: int, **fields: Any) -> Run:
    return Run(
        session_id=session_id,
        input=f"question {i}",
        messages=[Message(role="user", content=f"question {i}")],
        **fields,
    )


def raw(path: str | Path) -> duckdb.DuckDBPyConnection:
    """A plain DuckDB connection, for looking at what kern stored (the db must be closed)."""
    return duckdb.connect(str(path))


def child(code: str, *args: str) -> subprocess.Popen[str]:
    """A Python child process running ``code`` with ``args`` in ``sys.argv[1:]``."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def expect_line(process: subprocess.Popen[str], expected: str) -> None:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != expected:
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"child said {line!r}, not {expected!r}:\n{err}")


def finish(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(input="\n", timeout=120)
    assert process.returncode == 0, err
    return out


# -- where the database lives ------------------------------------------------------------
class TestDuckDbFile(FileBackendScenarios):
    """Parent folders, paths fixed at construction, URL forms (kern.testing.files)."""

    db_class = "kern.db.duckdb:DuckDb"
    scheme = "duckdb"
    suffix = ".duckdb"


def test_exactly_one_location() -> None:
    with pytest.raises(ConfigurationError, match="exactly one of db_file or db_url"):
        DuckDb()
    with pytest.raises(ConfigurationError, match="got db_file, db_url"):
        DuckDb(db_file="a.duckdb", db_url="duckdb:///b.duckdb")
    with pytest.raises(ConfigurationError, match="db_file is empty"):
        DuckDb(db_file="")


# -- wrong URLs, engines, arguments and files ----------------------------------------------
def test_other_backend_url_names_the_right_class() -> None:
    with pytest.raises(ConfigurationError, match="PostgresDb") as error:
        DuckDb(db_url="postgresql://kern:s3cret@localhost:5432/app")
    assert "kern-memory[postgres]" in str(error.value)
    assert "s3cret" not in str(error.value)
    with pytest.raises(ConfigurationError, match="SqliteDb"):
        DuckDb(db_url="sqlite:///x.db")
    with pytest.raises(ConfigurationError, match="could not read"):
        DuckDb(db_url="not a url at all")
    with pytest.raises(ConfigurationError, match="without '\\+motherduck'"):
        DuckDb(db_url="duckdb+motherduck:///x.duckdb")
    with pytest.raises(ConfigurationError, match="no options in its URL"):
        DuckDb(db_url="duckdb:///x.duckdb?access_mode=read_only")


def test_engines_are_refused_naming_the_fix() -> None:
    class AsyncEngine:  # what create_async_engine returns, as far as the check can tell
        sync_engine = create_engine("duckdb:///:memory:")

    for cls in (DuckDb, AsyncDuckDb):
        with pytest.raises(SyncAsyncMismatchError, match="AsyncDuckDb\\(db_file=") as error:
            cls(engine=AsyncEngine())
        assert "no async driver" in str(error.value)
        with pytest.raises(ConfigurationError, match="Pass db_file=") as plain:
            cls(engine=create_engine("duckdb:///:memory:"))
        assert not isinstance(plain.value, SyncAsyncMismatchError)


def test_async_db_on_the_sync_agent_api_names_the_fix(tmp_path: Path) -> None:
    adb = AsyncDuckDb(db_file=tmp_path / "a.duckdb")
    agent = Agent(model=OpenAIChat(id="m", base_url="http://127.0.0.1:9/v1"), db=adb)
    try:
        with pytest.raises(SyncAsyncMismatchError, match="arun"):
            agent.run("hello")
    finally:
        asyncio.run(adb.close())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lock_timeout": -1}, "lock_timeout must be"),
        ({"lock_timeout": None}, "lock_timeout must be"),
        ({"keep_open": "1"}, "keep_open must be"),
        ({"keep_open": float("inf")}, "keep_open must be"),
        ({"table_prefix": "bad-prefix; DROP"}, "table_prefix"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        DuckDb(db_file=tmp_path / "x.duckdb", **kwargs)


def test_a_file_that_is_not_duckdb_says_so(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    db = DuckDb(db_file=path)
    try:
        with pytest.raises(ConfigurationError, match="SQLite file needs SqliteDb"):
            db.get_session("s")
    finally:
        db.close()


def test_connect_picks_the_duckdb_classes(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path}/a.duckdb"
    sync = kern.db.connect(url)
    asynchronous = kern.db.connect(url, is_async=True)
    try:
        assert type(sync) is DuckDb
        assert type(asynchronous) is AsyncDuckDb
        assert sync.backend_name == asynchronous.backend_name == "duckdb"
        assert asynchronous.db_file == sync.db_file == str(tmp_path / "a.duckdb")
        assert repr(asynchronous) == f"AsyncDuckDb(db_file={sync.db_file!r})"
    finally:
        sync.close()
        asyncio.run(asynchronous.close())


async def test_async_twin_shares_the_file(tmp_path: Path) -> None:
    adb = AsyncDuckDb(db_file=tmp_path / "a.duckdb", table_prefix="app_", keep_open=None)
    try:
        assert (adb.table_prefix, adb.keep_open, adb.lock_timeout) == ("app_", None, 30.0)
        assert adb.engine is adb.sync_db.engine
        runs = await asyncio.gather(*(adb.append_run(turn("s", i)) for i in range(20)))
        assert sorted(r.seq for r in runs) == list(range(1, 21))
        assert adb.holds_file
    finally:
        await adb.close()
    assert not adb.holds_file
    with raw(tmp_path / "a.duckdb") as conn:
        names = {
            name for (name,) in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
    assert {"app_runs", "app_sessions", "app_run_counters", "app_memory_terms"} <= names


def test_data_survives_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "kern.duckdb"
    db = DuckDb(db_file=path)
    db.upsert_session(Session(session_id="s", state={"k": [1, "ü"]}), expected_version=None)
    runs = [db.append_run(turn("s", i)) for i in range(3)]
    session = db.get_session("s")
    memory = db.upsert_memory(Memory(user_id="u", content="Prefers green tea"))
    db.close()
    with pytest.raises(KernError, match="closed"):
        db.get_session("s")

    again = DuckDb(db_url=f"duckdb:///{path}")
    try:
        assert again.get_session("s") == session
        assert again.get_last_runs("s", 10) == runs
        assert [hit.memory for hit in again.search_memories("u", "tea")] == [memory]
        assert again.append_run(turn("s", 3)).seq == 4
    finally:
        again.close()


# -- one writing process per file: taking turns, and the clear error -------------------------
HOLD_WITH_PLAIN_DUCKDB = """
import sys, duckdb
conn = duckdb.connect(sys.argv[1])
print("holding", flush=True)
sys.stdin.readline()
conn.close()
"""


def test_a_process_holding_the_file_too_long_gives_a_clear_error(tmp_path: Path) -> None:
    """A program that is not kern keeps the file open: after lock_timeout the other process
    gets DuckDbLockedError saying who holds it and what to do, and it works again once the
    file is free."""
    path = tmp_path / "kern.duckdb"
    holder = child(HOLD_WITH_PLAIN_DUCKDB, str(path))
    db = DuckDb(db_file=path, lock_timeout=0.5)
    try:
        expect_line(holder, "holding")
        with pytest.raises(DuckDbLockedError) as error:
            db.append_run(turn("s", 0))
        message = str(error.value)
        assert f"PID {holder.pid}" in message
        assert str(path) in message
        assert "one writing process per file" in message
        assert "lock_timeout=0.5s" in message
        assert "SqliteDb or PostgresDb" in message
        assert isinstance(error.value, ConfigurationError)
        assert (error.value.db_file, error.value.lock_timeout) == (str(path), 0.5)

        finish(holder)
        assert db.append_run(turn("s", 0)).seq == 1
    finally:
        holder.kill()
        db.close()


KERN_HOLDER = """
import sys
from kern.db.duckdb import DuckDb
from kern.records import Run
db = DuckDb(db_file=sys.argv[1], keep_open=None)  # keep the file until someone waits
db.append_run(Run(session_id="shared", input="child 1"))
print("held" if db.holds_file else "released", flush=True)
sys.stdin.readline()
db.append_run(Run(session_id="shared", input="child 2"))
db.close()
print("done", flush=True)
"""


def test_kern_processes_take_turns_on_the_file(tmp_path: Path) -> None:
    """A kern process keeps the file while nobody waits, and hands it over as soon as
    another kern process asks, even if it would otherwise keep it forever; then takes it
    back the same way."""
    path = tmp_path / "kern.duckdb"
    other = child(KERN_HOLDER, str(path))
    db = DuckDb(db_file=path, lock_timeout=60, keep_open=None)
    try:
        expect_line(other, "held")
        assert db.append_run(Run(session_id="shared", input="parent")).seq == 2
        assert db.holds_file
        assert finish(other).strip() == "done"  # its second append got the file from us
        runs = db.get_last_runs("shared", 10)
        assert [(r.seq, r.input) for r in runs] == [(1, "child 1"), (2, "parent"), (3, "child 2")]
    finally:
        other.kill()
        db.close()


def test_keep_open_zero_releases_after_every_operation(tmp_path: Path) -> None:
    path = tmp_path / "kern.duckdb"
    db = DuckDb(db_file=path, keep_open=0)
    try:
        db.append_run(turn("s", 0))
        assert not db.holds_file
        reader = child(
            "import sys, duckdb; c = duckdb.connect(sys.argv[1]); "
            "print(c.execute('SELECT count(*) FROM kern_runs').fetchone()[0])",
            str(path),
        )
        assert finish(reader).strip() == "1"
        assert db.append_run(turn("s", 1)).seq == 2
    finally:
        db.close()


def test_an_idle_process_gives_the_file_up_after_keep_open(tmp_path: Path) -> None:
    db = DuckDb(db_file=tmp_path / "kern.duckdb", keep_open=0.1)
    try:
        db.append_run(turn("s", 0))
        deadline = time.monotonic() + 30
        while db.holds_file and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not db.holds_file
        assert db.get_last_runs("s", 1)[0].seq == 1  # and opens it again when needed
    finally:
        db.close()


def test_db_objects_of_one_process_share_the_file(tmp_path: Path) -> None:
    path = tmp_path / "kern.duckdb"
    first, second = DuckDb(db_file=path), DuckDb(db_url=f"duckdb:///{path}")
    try:
        assert first._lease is second._lease
        first.append_run(turn("s", 0))
        assert second.append_run(turn("s", 1)).seq == 2
        first.close()
        assert second.holds_file  # the other object still uses it
        assert [r.seq for r in second.get_last_runs("s", 5)] == [1, 2]
    finally:
        first.close()
        second.close()
    assert not second.holds_file


AGENT_TURN = """
import sys
from kern.agent import Agent
from kern.db.duckdb import DuckDb
from kern.models.openai import OpenAIChat

db_file, base_url, message = sys.argv[1:4]
db = DuckDb(db_file=db_file)
agent = Agent(
    model=OpenAIChat(id="scripted", base_url=base_url, api_key="test"),
    db=db,
    add_history_to_context=True,
    num_history_runs=3,
)
print(agent.run(message, session_id="two-processes").content)
db.close()
"""


def test_two_processes_two_turns_history_carried(tmp_path: Path, scripted: ScriptedServer) -> None:
    """Turn 1 in one process, turn 2 in another: the second model request carries turn 1,
    which only the database could have supplied."""
    path = str(tmp_path / "agent.duckdb")
    scripted.script("Noted: a local-first web app.", "FastAPI fits that.")
    first = "I am working on building a local-first web app."
    second = "What python web framework fits this best?"
    for message in (first, second):
        out = finish(child(AGENT_TURN, path, scripted.base_url, message))
        assert out.strip()

    requests = scripted.chat_requests()
    assert len(requests) == 2
    sent = [(m["role"], m["content"]) for m in requests[1]["messages"]]
    assert ("user", first) in sent
    assert ("assistant", "Noted: a local-first web app.") in sent
    assert sent[-1] == ("user", second)

    db = DuckDb(db_file=path)
    try:
        runs = db.get_last_runs("two-processes", 10)
        assert [run.seq for run in runs] == [1, 2]
        assert [run.output for run in runs] == [
            "Noted: a local-first web app.",
            "FastAPI fits that.",
        ]
    finally:
        db.close()


# -- every read path goes through an index ---------------------------------------------------
@pytest.fixture
def plans(db: DuckDb) -> Iterator[list[tuple[str, str]]]:
    """(statement, the plan DuckDB ran) of every SELECT kern runs while the fixture is active.

    ``EXPLAIN ANALYZE``: DuckDB picks an index scan when it runs the statement (plain
    ``EXPLAIN`` always shows a sequential scan)."""
    seen: list[tuple[str, str]] = []

    def explain(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            duck = conn.connection.dbapi_connection
            plan = duck.execute(f"EXPLAIN ANALYZE {statement}", parameters).fetchall()
            seen.append((statement, "\n".join(row[1] for row in plan)))

    event.listen(db.engine, "before_cursor_execute", explain)
    yield seen
    event.remove(db.engine, "before_cursor_execute", explain)


def test_every_read_path_reads_through_an_index(db: DuckDb, plans: list[tuple[str, str]]) -> None:
    for i in range(20):  # other users' rows: enough for DuckDB to prefer its indexes
        sid, user = f"s{i}", f"u{i}"
        db.upsert_session(
            Session(session_id=sid, user_id=user, component_id=f"c{i}"), expected_version=None
        )
        db.append_run(turn(sid, 0, user_id=user))
        db.upsert_memory(Memory(user_id=user, agent_id="a", content="likes tea"))
        db.upsert_learning(
            Learning(
                kind=f"k{i}", user_id=user, session_id=sid, entity_id=f"e{i}", content={"i": i}
            )
        )
    db.upsert_session(Session(session_id="s", user_id="u", component_id="c"), expected_version=None)
    run = db.append_run(turn("s", 0, user_id="u"))
    memory = db.upsert_memory(Memory(user_id="u", agent_id="a", content="likes tea"))
    learning = db.upsert_learning(
        Learning(kind="k", user_id="u", session_id="s", entity_id="e", content={"f": "tea"})
    )
    plans.clear()

    db.get_session("s")
    db.list_sessions(user_id="u")
    db.list_sessions(component_id="c")
    db.get_run(run.run_id)
    db.get_last_runs("s", 3)
    db.get_last_runs("s", 3, top_level_only=True, status=RunStatus.COMPLETED, before_seq=5)
    db.list_memories("u")
    db.list_memories("u", agent_id="a")
    db.get_memory(memory.memory_id)
    db.search_memories("u", "tea")
    db.search_memories("u", "tea", agent_id="a")
    for filters in ({"kind": "k"}, {"user_id": "u"}, {"session_id": "s"}, {"entity_id": "e"}):
        db.query_learnings(**filters)
    db.query_learnings(namespace="global", kind="k", status=None)
    db.get_learning(learning.learning_id)
    db.search_learnings("tea", kind="k", user_id="u")

    assert len(plans) >= 20
    for statement, plan in plans:
        # (DuckDB may also prove from its statistics that nothing matches: no scan at all.)
        used_index = "Index Scan" in plan or "Empty Result" in plan
        assert used_index and "Sequential Scan" not in plan, (statement, plan)


def test_history_reads_the_same_rows_however_long_the_session(db: DuckDb) -> None:
    """Reading the last 3 runs fetches 3 runs by key (and one counter row), in a session of
    5 runs as in one of 600, also when a filter has to skip runs."""
    for i in range(5):
        db.append_run(turn("short", i))
    for i in range(600):
        db.append_run(turn("long", i, parent_run_id="p" if i % 2 else None))
    keys: list[int] = []

    def count_keys(conn, cursor, statement, parameters, context, executemany):
        if "seq_key IN" in statement:
            keys.append(len(set(parameters)))

    event.listen(db.engine, "before_cursor_execute", count_keys)
    try:
        assert [r.seq for r in db.get_last_runs("short", 3)] == [3, 4, 5]
        short = sum(keys)
        keys.clear()
        assert [r.seq for r in db.get_last_runs("long", 3)] == [598, 599, 600]
        assert sum(keys) == short == 3
        keys.clear()
        top = db.get_last_runs("long", 3, top_level_only=True)
        assert [r.seq for r in top] == [595, 597, 599]
        assert sum(keys) <= 12  # windows of 3 then 6 keys, not the session
    finally:
        event.remove(db.engine, "before_cursor_execute", count_keys)


def test_statement_events_see_reads_and_writes_and_values_decode_once(db: DuckDb) -> None:
    """With a listener on the engine every statement goes through SQLAlchemy's events, and
    the results (JSON included) are the same as without one."""
    seen: list[str] = []
    stored = db.append_run(
        turn("s", 0, output={"answer": [1, 2.0, "x"]}, metrics={"tokens": {"in": 3}})
    )

    def record(conn, cursor, statement, *args: Any) -> None:
        seen.append(statement.split()[0])

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        again = db.append_run(turn("s", 1, output="plain text"))
        assert db.get_last_runs("s", 2) == [stored, again]
        assert db.get_run(stored.run_id) == stored
        memory = db.upsert_memory(Memory(user_id="u", content="likes tea", topics=["drinks"]))
        assert db.search_memories("u", "tea")[0].memory == memory
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert {"INSERT", "UPDATE", "SELECT"} <= set(seen)


# -- seq counters --------------------------------------------------------------------------
def test_a_deleted_session_starts_again_at_seq_1(db: DuckDb) -> None:
    for i in range(3):
        db.append_run(turn("s", i))
    assert db.delete_session("s") is False  # no session row, but its runs and counter go
    assert db.get_last_runs("s", 10) == []
    assert db.append_run(turn("s", 9)).seq == 1


def test_a_stored_run_id_does_not_use_up_a_seq(db: DuckDb) -> None:
    first = db.append_run(turn("s", 0))
    with pytest.raises(ValueError, match="already stored"):
        db.append_run(first)
    assert db.append_run(turn("s", 1)).seq == 2


# -- schema versions and migrations --------------------------------------------------------
def versions(path: str) -> list[tuple[str, int, Any]]:
    with raw(path) as conn:
        return conn.execute("SELECT * FROM kern_schema_versions ORDER BY name").fetchall()


def test_schema_versions_recorded_once(tmp_path: Path) -> None:
    path = str(tmp_path / "kern.duckdb")
    first = DuckDb(db_file=path)
    first.create_tables()
    first.close()
    recorded = versions(path)
    assert {name for name, _, _ in recorded} == {
        "kern_schema_versions",
        "kern_sessions",
        "kern_runs",
        "kern_memories",
        "kern_learnings",
        "kern_run_counters",
        "kern_memory_terms",
        "kern_learning_terms",
        # DuckDB keeps vectors as FLOAT[] (kern.db.duckdb.vectors).
        "kern_memories.embedding_array",
        "kern_learnings.embedding_array",
    }
    # Memories and learnings are at version 2: their vector columns (kern.db.sql.migrations).
    assert {name: version for name, version, _ in recorded if version != 1} == {
        "kern_memories": 2,
        "kern_learnings": 2,
    }

    second = DuckDb(db_file=path)
    second.create_tables()
    second.append_run(turn("s", 0))
    assert second.schema_versions() == {name: version for name, version, _ in recorded}
    second.close()
    assert versions(path) == recorded  # same rows, same applied_at: nothing ran again


def test_migrations_bring_an_older_database_forward(tmp_path: Path) -> None:
    """A database whose DuckDB-only tables are missing (as if written before they existed)
    gets them, filled from the rows already stored, the next time kern opens it."""
    path = str(tmp_path / "kern.duckdb")
    db = DuckDb(db_file=path)
    db.upsert_memory(Memory(user_id="u", content="likes hiking in the Alps"))
    db.upsert_learning(Learning(kind="k", content={"fact": "Deploys on Fridays hurt"}))
    for i in range(4):
        db.append_run(turn("s", i))
    db.close()
    with raw(path) as conn:
        for name in ("kern_memory_terms", "kern_learning_terms", "kern_run_counters"):
            conn.execute(f"DROP TABLE {name}")
            conn.execute("DELETE FROM kern_schema_versions WHERE name = ?", [name])

    reopened = DuckDb(db_file=path)
    try:
        hits = reopened.search_memories("u", "alps")
        assert [hit.memory.content for hit in hits] == ["likes hiking in the Alps"]
        assert len(reopened.search_learnings("friday deploy")) == 1
        assert reopened.append_run(turn("s", 4)).seq == 5
        assert reopened.schema_versions()["kern_memory_terms"] == 1
    finally:
        reopened.close()


def test_tables_are_written_without_rle(tmp_path: Path) -> None:
    """kern reads rows one by one through indexes, and DuckDB fetches a row of an RLE
    segment by walking its runs: kern's database is written without RLE. (Postings of long
    documents repeat ``doc_len`` in long runs, which DuckDB would otherwise store as RLE.)"""
    path = str(tmp_path / "kern.duckdb")
    db = DuckDb(db_file=path)
    words = [f"w{n}" for n in range(120)]
    for i in range(60):
        db.upsert_memory(Memory(user_id="u", content=" ".join(words[: 40 + i % 50])))
    db.close()  # checkpoints: the segments get their compression
    with raw(path) as conn:
        stored = conn.execute(
            "SELECT column_name, compression FROM pragma_storage_info('kern_memory_terms') "
            "WHERE segment_type <> 'VALIDITY'"
        ).fetchall()
    assert "doc_len" in {column for column, _ in stored}
    assert all(compression != "RLE" for _, compression in stored), stored


# -- search -------------------------------------------------------------------------------
def test_odd_query_text_never_raises(db: DuckDb) -> None:
    db.upsert_memory(Memory(user_id="u", content='what\'s "up" AND (x) near col value'))
    db.upsert_learning(Learning(kind="k", content={"fact": 'what\'s "up" AND (x)'}))
    for query in ODD_QUERIES:
        assert isinstance(db.search_memories("u", query), list)
        assert isinstance(db.search_learnings(query), list)
    assert len(db.search_memories("u", "AND")) == 1  # operator words are just words
    assert len(db.search_memories("u", "NEAR")) == 1


def test_search_stems_and_folds_accents(db: DuckDb) -> None:
    db.upsert_memory(Memory(user_id="u", content="She preferred the café near the station"))
    assert db.search_memories("u", "prefers cafe")
    db.upsert_memory(Memory(user_id="u", content="Goes hiking every weekend"))
    assert [h.memory.content for h in db.search_memories("u", "hike")] == [
        "Goes hiking every weekend"
    ]
    db.upsert_learning(Learning(kind="k", content={"note": "Zürich office opens in März"}))
    assert db.search_learnings("zurich marz")
    db.upsert_learning(Learning(kind="k", content={"fact": "東京 office, Straße 5"}))
    assert len(db.search_learnings("strasse straße")) == 1
    assert len(db.search_learnings("東京")) == 1


def test_search_ranks_rarer_and_repeated_terms_higher(db: DuckDb) -> None:
    for content in ("tea in the morning", "tea and tea and more tea", "coffee in the morning"):
        db.upsert_memory(Memory(user_id="u", content=content))
    hits = db.search_memories("u", "tea")
    assert [h.memory.content for h in hits] == ["tea and tea and more tea", "tea in the morning"]
    assert hits[0].score > hits[1].score > 0
    best = db.search_memories("u", "coffee morning")[0]
    assert best.memory.content == "coffee in the morning"


def term_rows(db: DuckDb) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    """What the term tables hold, and what they should hold given the stored documents."""
    memory_terms, learning_terms = db.dialect.duck.memory_terms, db.dialect.duck.learning_terms
    with db.engine.connect() as conn:
        memories = conn.execute(db.tables.memories.select()).mappings().all()
        learnings = conn.execute(db.tables.learnings.select()).mappings().all()
        held = {tuple(r) for r in conn.execute(memory_terms.select())} | {
            tuple(r) for r in conn.execute(learning_terms.select())
        }
    expected: set[tuple[Any, ...]] = set()
    for postings, columns in [
        *((MemoryTerms.postings(dict(m)), MemoryTerms.COLUMNS) for m in memories),
        *((LearningTerms.postings(dict(row)), LearningTerms.COLUMNS) for row in learnings),
    ]:
        for i in range(len(postings["tf"])):
            expected.add(
                tuple(
                    postings[c][i] if isinstance(postings[c], list) else postings[c]
                    for c in columns
                )
            )
    return held, expected


def test_term_tables_follow_every_write(db: DuckDb) -> None:
    """Upserts replace a document's terms, deletes and forget_user remove them: the term
    tables always hold exactly the terms of the stored documents."""
    memory = db.upsert_memory(Memory(user_id="u", content="old words", topics=["alpha"]))
    db.upsert_memory(memory.model_copy(update={"content": "new words", "topics": ["beta"]}))
    assert db.search_memories("u", "old") == []
    assert [h.memory.content for h in db.search_memories("u", "new beta")] == ["new words"]
    moved = db.upsert_memory(Memory(user_id="u", content="moving memory"))
    db.upsert_memory(moved.model_copy(update={"user_id": "w"}))
    assert db.search_memories("u", "moving") == []
    assert len(db.search_memories("w", "moving")) == 1

    learning = db.upsert_learning(Learning(kind="k", user_id="u", content={"v": "first"}))
    second = db.upsert_learning(learning.model_copy(update={"content": {"v": "second"}}))
    assert db.search_learnings("first") == []
    assert len(db.search_learnings("second")) == 1
    db.upsert_learning(second.model_copy(update={"status": LearningStatus.SUPERSEDED}))
    assert db.search_learnings("second") == []
    assert len(db.search_learnings("second", status=None)) == 1
    db.upsert_session(Session(session_id="us", user_id="u"), expected_version=None)
    db.upsert_learning(Learning(kind="k", session_id="us", content={"v": "session fact"}))
    kept = db.upsert_learning(Learning(kind="k", user_id="v", content={"v": "kept fact"}))
    doomed = db.upsert_memory(Memory(user_id="v", content="to be deleted"))
    held, expected = term_rows(db)
    assert held == expected

    db.delete_memory(doomed.memory_id)
    db.forget_user("u")
    assert db.search_memories("u", "new") == []
    assert db.search_learnings("second", status=None) == []
    assert db.search_learnings("session") == []
    assert [h.learning for h in db.search_learnings("fact")] == [kept]
    held, expected = term_rows(db)
    assert held == expected
    assert all(row[2] != "u" for row in held if len(row) == len(MemoryTerms.COLUMNS))


# -- commit_turn: a fault between the halves stores neither (kern.testing.turns) --------
def test_commit_turn(db: DuckDb, monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(fault_between_halves(Awaiting(db), db._ops, "store_run", monkeypatch))


async def test_async_commit_turn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    adb = AsyncDuckDb(db_file=tmp_path / "kern.duckdb")
    try:
        await fault_between_halves(adb, adb.sync_db._ops, "store_run", monkeypatch)
    finally:
        await adb.close()


# -- forget_user ---------------------------------------------------------------------------
def scan_tables(path: str | Path, prefix: str = "kern_") -> list[str]:
    """``<table>: <row>`` for every row of every table of the prefix (term tables and
    counters included), read with a plain DuckDB connection (the db must be closed)."""
    conn = raw(path)
    try:
        names = [
            name for (name,) in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        ]
        return [
            f"{name}: {row}"
            for name in names
            if name.startswith(prefix)
            for row in conn.execute(f'SELECT * FROM "{name}"').fetchall()
        ]
    finally:
        conn.close()


def test_forget_user_leaves_no_row_holding_the_users_words(tmp_path: Path) -> None:
    """No table, the search term tables included, keeps a row with the user's words (the
    file itself may: DuckDB does not overwrite the blocks deleted rows were in)."""
    path = tmp_path / "kern.duckdb"
    marker = f"qz{uuid.uuid4().hex[:10]}x"
    db = DuckDb(db_file=path)
    sid = "alice-session"
    db.upsert_session(
        Session(session_id=sid, user_id="alice", state={"secret": f"{marker} plan"}),
        expected_version=None,
    )
    db.append_run(
        Run(
            session_id=sid,
            user_id="alice",
            messages=[Message(role="user", content=f"my {marker} secret")],
        )
    )
    db.upsert_memory(Memory(user_id="alice", content=f"{marker} is private", topics=[marker]))
    db.upsert_learning(Learning(kind="profile", user_id="alice", content={"fact": marker}))
    db.upsert_memory(Memory(user_id="bob", content="bob likes kiwis"))
    db.close()
    assert any(marker in row for row in scan_tables(path))

    db = DuckDb(db_file=path)
    db.forget_user("alice")
    db.close()
    assert [row for row in scan_tables(path) if marker in row or "alice" in row] == []
    db = DuckDb(db_file=path)
    try:
        assert [hit.memory.user_id for hit in db.search_memories("bob", "kiwis")] == ["bob"]
    finally:
        db.close()


# -- the schema is checked at start-up --------------------------------------------------------
def catalog(path: Path) -> set[str]:
    conn = raw(path)
    try:
        return {
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM duckdb_tables() UNION ALL "
                "SELECT index_name FROM duckdb_indexes()"
            ).fetchall()
        }
    finally:
        conn.close()


@pytest.mark.parametrize(
    "drop",
    [
        "DROP TABLE kern_runs",
        "DROP INDEX ix_kern_runs_user_id",
        "DROP INDEX ix_kern_runs_seq_key",
        "DROP TABLE kern_run_counters",
        "DROP TABLE kern_memory_terms",
        "DROP INDEX ix_kern_memory_terms_term_key",
        "DROP TABLE kern_memories",
    ],
)
def test_schema_objects_dropped_by_hand_are_put_back(
    tmp_path: Path, drop: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "kern.duckdb"
    db = DuckDb(db_file=path)
    a_turn(db, "before")
    db.close()
    expected = catalog(path)
    conn = raw(path)
    conn.execute(drop)
    conn.close()

    again = DuckDb(db_file=path)
    try:
        with caplog.at_level("WARNING", logger="kern.db.sql"):
            a_turn(again, "after")
        assert "recreated" in caplog.text
        if "kern_runs" not in drop:
            assert len(again.get_last_runs("before", 10)) == 2
        found = [hit.memory.content for hit in again.search_memories("u", "hiking before")]
        if drop == "DROP TABLE kern_memories":  # its words went with it
            assert found == ["likes hiking after"]
        else:
            assert found[0] == "likes hiking before"
    finally:
        again.close()
    assert catalog(path) == expected
