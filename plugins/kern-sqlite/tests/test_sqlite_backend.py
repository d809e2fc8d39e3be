"""What only the SQLite backend does: files and URLs, WAL, locks, schema versions, FTS5.

The storage contract itself is checked by the conformance suite (test_conformance.py).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import OperationalError

import kern.db
from kern.db.sqlite import AsyncSqliteDb, SqliteDb
from kern.db.sqlite.fts import match_expression, user_token_sql
from kern.errors import (
    ConfigurationError,
    KernError,
    SyncAsyncMismatchError,
)
from kern.records import Learning, Memory, Message, Run, Session
from kern.testing.files import FileBackendScenarios
from kern.testing.turns import Awaiting, a_turn, fault_between_halves

ODD_QUERIES = ('what\'s "up" AND (x', '"', "*", "NEAR(", "a OR", "col:value", "^x", "(((", "")


@pytest.fixture
def db(tmp_path: Path) -> Any:
    db = SqliteDb(db_file=tmp_path / "kern.db")
    yield db
    db.close()


def raw(path: str | Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def turn(session_id: str, i: int, **fields: Any) -> Run:
    return Run(
        session_id=session_id,
        input=f"question {i}",
        messages=[Message(role="user", content=f"question {i}")],
        **fields,
    )


# -- where the database lives ------------------------------------------------------------
class TestSqliteFile(FileBackendScenarios):
    """Parent folders, paths fixed at construction, URL forms (kern.testing.files)."""

    db_class = "kern.db.sqlite:SqliteDb"
    scheme = "sqlite"
    suffix = ".db"


def test_exactly_one_location() -> None:
    with pytest.raises(ConfigurationError, match="exactly one of db_file, db_url or engine"):
        SqliteDb()
    with pytest.raises(ConfigurationError, match="got db_file, db_url"):
        SqliteDb(db_file="a.db", db_url="sqlite:///b.db")


def test_user_engine(tmp_path: Path) -> None:
    """An engine of the user's works; kern leaves its transactions as they were, and
    closing the db does not dispose of it."""
    engine = create_engine(f"sqlite:///{tmp_path / 'own.db'}")
    db = SqliteDb(engine=engine)
    assert db.engine is engine
    db.append_run(turn("s", 0))
    db.close()

    with engine.connect() as conn:
        assert conn.connection.dbapi_connection.isolation_level == ""  # the driver default
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
        conn.rollback()  # a transaction of the user's is still a transaction
        assert conn.execute(text("SELECT count(*) FROM kern_runs")).scalar() == 1
    engine.dispose()


# -- wrong URLs, engines and classes --------------------------------------------------------
def test_async_url_on_sync_class_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SyncAsyncMismatchError, match="AsyncSqliteDb") as error:
        SqliteDb(db_url=f"sqlite+aiosqlite:///{tmp_path}/x.db")
    assert "sqlite:///" in str(error.value)


def test_async_engine_on_sync_class_names_the_fix() -> None:
    class AsyncEngine:  # what create_async_engine returns, as far as the check can tell
        sync_engine = create_engine("sqlite://")

    for cls in (SqliteDb, AsyncSqliteDb):
        with pytest.raises(SyncAsyncMismatchError, match="AsyncSqliteDb") as error:
            cls(engine=AsyncEngine())  # type: ignore[arg-type]
        assert "create_engine('sqlite:///" in str(error.value)


def test_real_async_engine_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("aiosqlite")
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    with pytest.raises(SyncAsyncMismatchError, match="AsyncSqliteDb"):
        SqliteDb(engine=engine)  # type: ignore[arg-type]


def test_other_backend_url_names_the_right_class() -> None:
    with pytest.raises(ConfigurationError, match="PostgresDb") as error:
        SqliteDb(db_url="postgresql://kern:s3cret@localhost:5432/app")
    assert "kern-memory[postgres]" in str(error.value)
    assert "s3cret" not in str(error.value)
    with pytest.raises(ConfigurationError, match="DuckDb"):
        SqliteDb(db_url="duckdb:///x.duckdb")
    with pytest.raises(ConfigurationError, match="could not read"):
        SqliteDb(db_url="not a url at all")


def test_bad_table_prefix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="table_prefix"):
        SqliteDb(db_file=tmp_path / "x.db", table_prefix="bad-prefix; DROP")


def test_connect_picks_the_sqlite_classes(tmp_path: Path) -> None:
    sync = kern.db.connect(f"sqlite:///{tmp_path}/a.db")
    asynchronous = kern.db.connect(f"sqlite+aiosqlite:///{tmp_path}/a.db")
    try:
        assert type(sync) is SqliteDb
        assert type(asynchronous) is AsyncSqliteDb
        assert sync.backend_name == asynchronous.backend_name == "sqlite"
        assert asynchronous.db_file == sync.db_file == str(tmp_path / "a.db")
        assert repr(asynchronous) == f"AsyncSqliteDb(db_file={sync.db_file!r})"
    finally:
        sync.close()
        asyncio.run(asynchronous.close())


async def test_async_twin_shares_the_file(tmp_path: Path) -> None:
    adb = AsyncSqliteDb(db_file=tmp_path / "a.db", table_prefix="app_")
    try:
        assert adb.table_prefix == "app_"
        assert adb.engine is adb.sync_db.engine
        runs = await asyncio.gather(*(adb.append_run(turn("s", i)) for i in range(20)))
        assert sorted(r.seq for r in runs) == list(range(1, 21))
    finally:
        await adb.close()
    tables = raw(tmp_path / "a.db").execute("SELECT name FROM sqlite_master WHERE type='table'")
    assert "app_runs" in {name for (name,) in tables}


# -- the file's modes and locks --------------------------------------------------------------
def test_wal_busy_timeout_and_synchronous(db: SqliteDb) -> None:
    db.append_run(turn("s", 0))
    assert raw(db.db_file).execute("PRAGMA journal_mode").fetchone() == ("wal",)
    pooled = db.engine.raw_connection()
    try:
        cursor = pooled.dbapi_connection.cursor()
        assert cursor.execute("PRAGMA busy_timeout").fetchone()[0] >= 30_000
        assert cursor.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        pooled.close()


def test_reads_do_not_wait_for_a_writer(db: SqliteDb) -> None:
    """While another connection holds the write lock, reads answer at once (from the last
    committed state): they take no write lock of their own."""
    db.upsert_session(Session(session_id="s", state={"n": 1}), expected_version=None)
    first = db.append_run(turn("s", 0))
    writer = raw(db.db_file)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE kern_sessions SET summary = 'uncommitted'")
    try:
        results: list[Any] = []
        reader = threading.Thread(
            target=lambda: results.extend([db.get_session("s"), db.get_last_runs("s", 3)])
        )
        reader.start()
        reader.join(timeout=5)
        assert not reader.is_alive(), "a read waited for the writer's lock"
        session, runs = results
        assert session.summary is None
        assert runs == [first]
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_history_read_uses_the_session_seq_index(db: SqliteDb) -> None:
    db.append_run(turn("s", 0))
    plans = []

    def explain(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "seq" in statement:
            plan = cursor.connection.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)
            plans.append(" / ".join(row[3] for row in plan))

    event.listen(db.engine, "before_cursor_execute", explain)
    db.get_last_runs("s", 3, top_level_only=True, before_seq=10)
    event.remove(db.engine, "before_cursor_execute", explain)
    assert plans and all("USING INDEX" in plan and "TEMP B-TREE" not in plan for plan in plans)


def test_statement_events_see_reads_and_writes(db: SqliteDb) -> None:
    """With a listener on the engine, every statement (BEGIN IMMEDIATE included) goes
    through SQLAlchemy's events, and the results are the same."""
    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *args: seen.append(args[2].split()[0]))
    db.upsert_session(Session(session_id="s"), expected_version=None)
    stored = db.append_run(turn("s", 0))
    assert db.get_last_runs("s", 1) == [stored]
    assert db.search_memories("u", "anything") == []
    assert "BEGIN" in seen and "INSERT" in seen and "SELECT" in seen


def test_timestamps_are_utc_text_and_come_back_aware(db: SqliteDb) -> None:
    created = datetime(2024, 5, 17, 14, 3, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    run = db.append_run(turn("s", 0, created_at=created))
    stored = raw(db.db_file).execute("SELECT created_at FROM kern_runs").fetchone()[0]
    assert stored == "2024-05-17 12:03:09.123456"
    fetched = db.get_run(run.run_id)
    assert fetched is not None
    assert fetched.created_at.tzinfo is UTC
    assert fetched.created_at == created


# -- schema versions and migrations --------------------------------------------------------
def versions(path: str) -> list[tuple[str, int, str]]:
    return raw(path).execute("SELECT * FROM kern_schema_versions ORDER BY name").fetchall()


def test_schema_versions_recorded_once(tmp_path: Path) -> None:
    path = str(tmp_path / "kern.db")
    first = SqliteDb(db_file=path)
    first.create_tables()
    recorded = versions(path)
    assert {name for name, _, _ in recorded} == {
        "kern_schema_versions",
        "kern_sessions",
        "kern_runs",
        "kern_memories",
        "kern_learnings",
        "kern_memories_fts",
        "kern_learnings_fts",
        "kern_sessions_fts",
    }
    # The memories' index is at version 2: keyed by user (kern.db.sqlite.fts); memories and
    # learnings at version 2: their vector columns; runs at version 2: retention's
    # (created_at, run_id) index (kern.db.sql.migrations).
    assert {name: version for name, version, _ in recorded if version != 1} == {
        "kern_memories_fts": 2,
        "kern_memories": 2,
        "kern_learnings": 2,
        "kern_runs": 2,
    }

    first.create_tables()
    second = SqliteDb(db_file=path)
    second.create_tables()
    second.append_run(turn("s", 0))
    assert versions(path) == recorded  # same rows, same applied_at: nothing ran again
    assert second.schema_versions() == {name: version for name, version, _ in recorded}
    first.close()
    second.close()


def test_migrations_bring_an_older_database_forward(tmp_path: Path) -> None:
    """A database whose search index is missing (as if written before it existed) gets it,
    with the rows already stored, the next time kern opens it."""
    path = str(tmp_path / "kern.db")
    db = SqliteDb(db_file=path)
    db.upsert_memory(Memory(user_id="u", content="likes hiking in the Alps"))
    db.close()
    conn = raw(path)
    for trigger in ("ai", "ad", "au"):
        conn.execute(f"DROP TRIGGER kern_memories_fts_{trigger}")
    conn.execute("DROP TABLE kern_memories_fts")
    conn.execute("DELETE FROM kern_schema_versions WHERE name = 'kern_memories_fts'")
    conn.close()

    reopened = SqliteDb(db_file=path)
    try:
        assert [hit.memory.content for hit in reopened.search_memories("u", "alps")] == [
            "likes hiking in the Alps"
        ]
        assert reopened.schema_versions()["kern_memories_fts"] == 2
    finally:
        reopened.close()


#: The memories' FTS index as schema version 1 made it (no user key), as shipped.
MEMORY_FTS_V1 = [
    "CREATE VIRTUAL TABLE kern_memories_fts USING fts5(content, topics, "
    "content='kern_memories', content_rowid='rowid', "
    "tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER kern_memories_fts_ai AFTER INSERT ON kern_memories BEGIN "
    "INSERT INTO kern_memories_fts(rowid, content, topics) "
    "VALUES (new.rowid, new.content, new.topics); END",
    "CREATE TRIGGER kern_memories_fts_ad AFTER DELETE ON kern_memories BEGIN "
    "INSERT INTO kern_memories_fts(kern_memories_fts, rowid, content, topics) "
    "VALUES ('delete', old.rowid, old.content, old.topics); END",
    "CREATE TRIGGER kern_memories_fts_au AFTER UPDATE OF content, topics ON kern_memories "
    "BEGIN INSERT INTO kern_memories_fts(kern_memories_fts, rowid, content, topics) "
    "VALUES ('delete', old.rowid, old.content, old.topics); "
    "INSERT INTO kern_memories_fts(rowid, content, topics) "
    "VALUES (new.rowid, new.content, new.topics); END",
    "INSERT INTO kern_memories_fts(kern_memories_fts) VALUES ('rebuild')",
]


def downgrade_memory_index_to_v1(path: str) -> None:
    """Put back the version 1 index (and version number), as an older kern left it."""
    conn = raw(path)
    for trigger in ("ai", "ad", "au"):
        conn.execute(f"DROP TRIGGER kern_memories_fts_{trigger}")
    conn.execute("DROP TABLE kern_memories_fts")
    conn.execute("DROP VIEW kern_memories_fts_source")
    for statement in MEMORY_FTS_V1:
        conn.execute(statement)
    conn.execute("UPDATE kern_schema_versions SET version = 1 WHERE name = 'kern_memories_fts'")
    conn.close()


def test_a_version_1_memory_index_is_rebuilt_keyed_by_user(tmp_path: Path) -> None:
    """A database whose memory index has no user key (version 1) is re-indexed on open:
    old rows are found, for their own user only, and later writes keep the index exact."""
    path = str(tmp_path / "kern.db")
    db = SqliteDb(db_file=path)
    mine = db.upsert_memory(Memory(user_id="u", content="likes hiking in the Alps"))
    db.upsert_memory(Memory(user_id="v", content="hiking the Alps twice a year"))
    db.close()
    downgrade_memory_index_to_v1(path)
    assert raw(path).execute(
        "SELECT count(*) FROM kern_memories_fts WHERE kern_memories_fts MATCH 'alps'"
    ).fetchone() == (2,)

    reopened = SqliteDb(db_file=path)
    try:
        assert [hit.memory for hit in reopened.search_memories("u", "alps hiking")] == [mine]
        assert reopened.schema_versions()["kern_memories_fts"] == 2
        moved = reopened.upsert_memory(mine.model_copy(update={"user_id": "w"}))
        assert reopened.search_memories("u", "alps") == []
        assert [hit.memory.memory_id for hit in reopened.search_memories("w", "alps")] == [
            moved.memory_id
        ]
        fts_integrity(path)
    finally:
        reopened.close()


def test_memory_index_holds_one_user_token_per_row(db: SqliteDb) -> None:
    """Each indexed memory carries its user's token, so FTS5 can match one user's rows
    without reading anyone else's (the search relies on it to be fast, not to be right)."""
    users = ["u", "ü-ser", 'q"uote']  # "" is not an id: refused at the door (kern.ids)
    for user in users:
        db.upsert_memory(Memory(user_id=user, content="shared words about kiwis"))
    conn = raw(db.db_file)
    for user in users:
        (token,) = conn.execute(f"SELECT {user_token_sql('?')}", (user,)).fetchone()
        rows = conn.execute(
            "SELECT m.user_id FROM kern_memories_fts f JOIN kern_memories m ON m.rowid = f.rowid "
            "WHERE kern_memories_fts MATCH ?",
            (f'user_key:"{token}" AND {{content topics}}:"kiwis"',),
        ).fetchall()
        assert rows == [(user,)]
        assert [hit.memory.user_id for hit in db.search_memories(user, "kiwis")] == [user]
    conn.close()


def test_data_survives_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "kern.db"
    db = SqliteDb(db_file=path)
    db.upsert_session(Session(session_id="s", state={"k": [1, "ü"]}), expected_version=None)
    runs = [db.append_run(turn("s", i)) for i in range(3)]
    session = db.get_session("s")  # append_run moved its updated_at
    memory = db.upsert_memory(Memory(user_id="u", content="Prefers green tea"))
    db.close()
    with pytest.raises(KernError, match="closed"):
        db.get_session("s")

    again = SqliteDb(db_url=f"sqlite:///{path}")
    try:
        assert again.get_session("s") == session
        assert again.get_last_runs("s", 10) == runs
        assert [hit.memory for hit in again.search_memories("u", "tea")] == [memory]
        assert again.append_run(turn("s", 3)).seq == 4
    finally:
        again.close()


# -- full-text search --------------------------------------------------------------------
def test_match_expression_quotes_every_token() -> None:
    assert match_expression('what\'s "up" AND (x') == '"what" OR "s" OR "up" OR "and" OR "x"'
    assert match_expression("NEAR( col:value ^start") == '"near" OR "col" OR "value" OR "start"'
    assert match_expression("Tee tee TEE") == '"tee"'
    for nothing in ("", "   ", '"', "*", "(((", "-"):
        assert match_expression(nothing) is None


def test_odd_query_text_never_raises(db: SqliteDb) -> None:
    db.upsert_memory(Memory(user_id="u", content='what\'s "up" AND (x) near col value'))
    db.upsert_learning(Learning(kind="k", content={"fact": 'what\'s "up" AND (x)'}))
    for query in ODD_QUERIES:
        assert isinstance(db.search_memories("u", query), list)
        assert isinstance(db.search_learnings(query), list)
    # operator words are just words
    assert len(db.search_memories("u", "AND")) == 1
    assert len(db.search_memories("u", "NEAR")) == 1


def test_search_stems_and_folds_accents(db: SqliteDb) -> None:
    db.upsert_memory(Memory(user_id="u", content="She preferred the café near the station"))
    assert db.search_memories("u", "prefers cafe")
    db.upsert_learning(Learning(kind="k", content={"note": "Zürich office opens in März"}))
    assert db.search_learnings("zurich marz")


def fts_integrity(path: str) -> None:
    """FTS5's own check that each index matches its table (raises if it does not)."""
    conn = raw(path)
    for table in ("kern_memories_fts", "kern_learnings_fts"):
        conn.execute(f"INSERT INTO {table}({table}, rank) VALUES ('integrity-check', 1)")
    conn.close()


def test_fts_index_follows_every_write(db: SqliteDb) -> None:
    """Upserts, deletes and forget_user keep the external-content index exact."""
    memory = db.upsert_memory(Memory(user_id="u", content="old words", topics=["alpha"]))
    db.upsert_memory(memory.model_copy(update={"content": "new words", "topics": ["beta"]}))
    assert db.search_memories("u", "old") == []
    assert [h.memory.content for h in db.search_memories("u", "new beta")] == ["new words"]
    learning = db.upsert_learning(Learning(kind="k", user_id="u", content={"v": "first"}))
    db.upsert_learning(learning.model_copy(update={"content": {"v": "second"}}))
    assert db.search_learnings("first") == []
    assert len(db.search_learnings("second")) == 1
    doomed = db.upsert_memory(Memory(user_id="v", content="to be deleted"))
    db.delete_memory(doomed.memory_id)
    db.forget_user("u")
    assert db.search_memories("u", "new") == []
    assert db.search_learnings("second") == []
    fts_integrity(db.db_file)


def test_search_survives_vacuum(db: SqliteDb) -> None:
    """VACUUM keeps rowids (the FTS index refers to them): search stays right after it."""
    kept = []
    for i in range(50):
        memory = db.upsert_memory(Memory(user_id="u", content=f"note number {i} about kiwis"))
        if i % 3:
            db.delete_memory(memory.memory_id)
        else:
            kept.append(memory.memory_id)
    raw(db.db_file).execute("VACUUM")
    found = db.search_memories("u", "kiwis", limit=100)
    assert sorted(hit.memory.memory_id for hit in found) == sorted(kept)
    fts_integrity(db.db_file)


def test_learning_search_reads_json_values_not_escapes(db: SqliteDb) -> None:
    """JSON is stored as written (no \\u escapes), so non-ASCII words are searchable."""
    db.upsert_learning(Learning(kind="k", content={"fact": "東京 office, Straße 5"}))
    stored = raw(db.db_file).execute("SELECT content FROM kern_learnings").fetchone()[0]
    assert "Straße" in stored
    assert len(db.search_learnings("strasse straße")) == 1


# -- commit_turn: a fault between the halves stores neither (kern.testing.turns) --------
def test_commit_turn(db: SqliteDb, monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(fault_between_halves(Awaiting(db), db._ops, "store_run", monkeypatch))


async def test_async_commit_turn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    adb = AsyncSqliteDb(db_file=tmp_path / "kern.db")
    try:
        await fault_between_halves(adb, adb.sync_db._ops, "store_run", monkeypatch)
    finally:
        await adb.close()


# -- forget_user leaves no bytes -------------------------------------------------------------
def scan_tables(path: str | Path, prefix: str = "kern_", driver: Any = sqlite3) -> list[str]:
    """``<table>: <row>`` for every row of every table of the prefix, FTS5's shadow tables
    (``*_fts_data``, ``*_fts_idx``...) included, blobs read byte for byte."""
    conn = driver.connect(str(path))
    rows = []
    try:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        for name in [name for (name,) in tables]:
            if not name.startswith(prefix):
                continue
            for row in conn.execute(f'SELECT * FROM "{name}"'):
                values = [v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in row]
                rows.append(f"{name}: " + " | ".join(values))
    finally:
        conn.close()
    return rows


def store_private_words(db: Any, user: str, marker: str) -> None:
    """The marker in a session's state, a run's messages, a memory and a learning."""
    sid = f"{user}-session"
    db.upsert_session(
        Session(session_id=sid, user_id=user, state={"secret": f"{marker} plan"}),
        expected_version=None,
    )
    db.append_run(
        Run(
            session_id=sid,
            user_id=user,
            input=f"about {marker}",
            messages=[Message(role="user", content=f"my {marker} secret")],
        )
    )
    db.upsert_memory(Memory(user_id=user, content=f"{marker} is private", topics=[marker]))
    db.upsert_learning(Learning(kind="profile", user_id=user, content={"fact": f"{marker} fact"}))


def test_forget_user_leaves_no_trace_in_any_table_or_file(db: SqliteDb) -> None:
    marker = f"qz{uuid.uuid4().hex[:10]}x"
    for i in range(30):  # other users' rows around it, in the same index segments
        db.upsert_memory(Memory(user_id=f"u{i}", content=f"note {i} about kiwis"))
    store_private_words(db, "alice", marker)
    db.upsert_memory(Memory(user_id="bob", content="bob likes kiwis"))
    assert any(marker in row for row in scan_tables(db.db_file))

    db.forget_user("alice")
    assert [row for row in scan_tables(db.db_file) if marker in row or "alice" in row] == []
    # nor in the file's free pages or the write-ahead log (secure_delete, checkpoint)
    for file in Path(db.db_file).parent.glob(Path(db.db_file).name + "*"):
        assert marker.encode() not in file.read_bytes(), file.name
    assert [hit.memory.user_id for hit in db.search_memories("bob", "kiwis")] == ["bob"]
    fts_integrity(db.db_file)


def test_forget_user_without_secure_delete_merges_the_indexes(
    db: SqliteDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an SQLite without FTS5 secure-delete, forget_user runs 'optimize' on the index of
    each table it deleted from (and only then)."""
    monkeypatch.setattr(db.dialect, "secure_delete", False)
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    marker = f"qz{uuid.uuid4().hex[:10]}x"
    store_private_words(db, "alice", marker)
    db.forget_user("nobody")
    assert not [s for s in statements if "optimize" in s]
    db.forget_user("alice")
    assert len([s for s in statements if "'optimize'" in s]) == 3  # memories, learnings, sessions
    assert [row for row in scan_tables(db.db_file) if marker in row] == []


def test_secure_delete_purges_on_every_delete(tmp_path: Path) -> None:
    """With an SQLite that has FTS5 secure-delete (3.44+: here pysqlite3's, when installed),
    the indexes run with it: delete_memory and forget_user take the words out at once."""
    pysqlite = pytest.importorskip("pysqlite3.dbapi2")
    if pysqlite.sqlite_version_info < (3, 44, 0):
        pytest.skip(f"pysqlite3 has SQLite {pysqlite.sqlite_version}")
    path = tmp_path / "kern.db"
    if sqlite3.sqlite_version_info < (3, 44, 0):
        # first written by an SQLite without secure-delete: a deleted row's words stay
        older = SqliteDb(db_file=path)
        older.delete_memory(older.upsert_memory(Memory(user_id="u", content="qzoldword")).memory_id)
        older.close()
        assert [row for row in scan_tables(path) if "qzoldword" in row]
    engine = create_engine(f"sqlite:///{path}", module=pysqlite)
    db = SqliteDb(engine=engine)
    try:
        assert db.dialect.secure_delete
        db.create_tables()  # turns secure-delete on, and merges away the old leftovers
        assert [row for row in scan_tables(path, driver=pysqlite) if "qzoldword" in row] == []
        doomed = db.upsert_memory(Memory(user_id="u", content="qzdoomedword fact"))
        db.upsert_memory(Memory(user_id="u", content="kept fact"))
        db.delete_memory(doomed.memory_id)
        # (an SQLite older than 3.42, such as the stdlib's here, can no longer read the index)
        assert [row for row in scan_tables(path, driver=pysqlite) if "qzdoomedword" in row] == []
        marker = f"qz{uuid.uuid4().hex[:10]}x"
        store_private_words(db, "alice", marker)
        db.forget_user("alice")
        assert [row for row in scan_tables(path, driver=pysqlite) if marker in row] == []
        assert [hit.memory.content for hit in db.search_memories("u", "fact")] == ["kept fact"]
        conn = pysqlite.connect(str(path))
        assert conn.execute(
            "SELECT v FROM kern_memories_fts_config WHERE k = 'secure-delete'"
        ).fetchall() == [(1,)]
        conn.close()
    finally:
        db.close()
        engine.dispose()


# -- the schema is checked at start-up --------------------------------------------------------
@pytest.mark.parametrize(
    "drop",
    [
        "DROP TABLE kern_runs",
        "DROP INDEX ix_kern_runs_user",
        "DROP TABLE kern_memories_fts",
        "DROP TABLE kern_memories_fts_idx",
        "DROP TABLE kern_memories_fts_docsize",
        "DROP TRIGGER kern_memories_fts_ai",
        "DROP VIEW kern_memories_fts_source",
        "DROP TABLE kern_learnings_fts",
    ],
)
def test_schema_objects_dropped_by_hand_are_put_back(
    tmp_path: Path, drop: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "kern.db"
    db = SqliteDb(db_file=path)
    a_turn(db, "before")
    db.close()
    expected = {r[0] for r in raw(path).execute("SELECT name FROM sqlite_master")}
    raw(path).execute(drop)

    again = SqliteDb(db_file=path)
    try:
        with caplog.at_level("WARNING", logger="kern.db.sql"):
            a_turn(again, "after")
        assert "recreated" in caplog.text
        assert {r[0] for r in raw(path).execute("SELECT name FROM sqlite_master")} == expected
        if "runs" not in drop:  # the data of what was not dropped is all there
            assert len(again.get_last_runs("before", 10)) == 2
        if "fts" in drop:  # the index was rebuilt from its table
            assert again.search_memories("u", "hiking before")
        fts_integrity(str(path))
    finally:
        again.close()


@pytest.mark.parametrize("shadow", ["data", "config"])
def test_an_fts_index_sqlite_cannot_open_names_the_repair(tmp_path: Path, shadow: str) -> None:
    """Without one of these shadow tables SQLite can neither open nor drop the index: the
    error says so, and its recipe works (kern then rebuilds the index from its table)."""
    path = tmp_path / "kern.db"
    db = SqliteDb(db_file=path)
    a_turn(db, "before")
    db.close()
    raw(path).execute(f"DROP TABLE kern_memories_fts_{shadow}")

    damaged = SqliteDb(db_file=path)
    with pytest.raises(ConfigurationError, match=f"kern_memories_fts_{shadow} missing") as error:
        damaged.get_session("before")
    assert "PRAGMA writable_schema = ON" in str(error.value)
    damaged.close()

    conn = raw(path)  # the recipe of the message
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("DELETE FROM sqlite_master WHERE name = 'kern_memories_fts'")
    conn.execute("PRAGMA writable_schema = OFF")
    conn.close()
    conn = raw(path)
    left = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'kern_memories_fts_%'"
    ).fetchall()
    for (name,) in left:
        conn.execute(f"DROP TABLE {name}")
    conn.close()

    repaired = SqliteDb(db_file=path)
    try:
        assert repaired.search_memories("u", "hiking before")
        a_turn(repaired, "after")
        fts_integrity(str(path))
    finally:
        repaired.close()


def test_an_intact_schema_is_checked_with_one_catalog_read(tmp_path: Path) -> None:
    path = tmp_path / "kern.db"
    first = SqliteDb(db_file=path)
    first.create_tables()
    first.close()
    db = SqliteDb(db_file=path)
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    try:
        db.create_tables()
        assert [s for s in statements if "sqlite_master" in s and "type" not in s] == [
            "SELECT name FROM sqlite_master"
        ]
        assert not [s for s in statements if s.lstrip().upper().startswith(("CREATE", "INSERT"))]
    finally:
        db.close()


# -- faults ----------------------------------------------------------------------------------
def test_sqlite_errors_are_not_storage_unavailable(tmp_path: Path, monkeypatch: Any) -> None:
    """An embedded file has no server to lose: "database is locked" stays what it is."""
    from kern.db.sqlite import engine as sqlite_engine

    assert SqliteDb.unavailable_errors == ()
    monkeypatch.setattr(sqlite_engine, "BUSY_TIMEOUT_S", 0.05)
    path = tmp_path / "kern.db"
    db = SqliteDb(db_file=path)
    db.create_tables()
    holder = raw(path)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError, match="locked"):
            db.append_run(turn("s", 0))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert db.append_run(turn("s", 0)).seq == 1
    assert db.storage_target() == str(path)
    db.close()
