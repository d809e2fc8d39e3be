"""What only the Postgres backend does: URLs and engines, sync/async mismatches, schemas,
indexes, the advisory-locked seq, true async, migrations, tsvector search.

The storage contract itself is checked by the conformance suite (test_conformance.py); the
agent across processes and server restarts by test_postgres_agent.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import kern.db
from kern.db.postgres import AsyncPostgresDb, PostgresDb
from kern.db.postgres.dialect import table_key
from kern.db.postgres.search import tsquery_text
from kern.errors import (
    ConfigurationError,
    KernError,
    StorageUnavailableError,
    SyncAsyncMismatchError,
)
from kern.records import Learning, Memory, Message, Run, RunStatus, Session
from kern.testing.turns import Awaiting, fault_between_halves
from kern.testing.turns import a_turn as shared_turn

ODD_QUERIES = ('what\'s "up" AND (x', '"', "'", "*", "-", "!", "a & b | !c", "<->", ":*", "")
NOWHERE = "postgresql://kern:s3cret@db.invalid:5432/app"
ASYNC_NOWHERE = NOWHERE.replace("postgresql", "postgresql+psycopg_async")


def turn(session_id: str, i: int, **fields: Any) -> Run:
    return Run(
        session_id=session_id,
        input=f"question {i}",
        messages=[Message(role="user", content=f"question {i}")],
        **fields,
    )


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def db(pg_database: Any, fresh_schema: str) -> Iterator[PostgresDb]:
    db = PostgresDb(db_url=pg_database.url, schema=fresh_schema)
    yield db
    db.close()


@pytest.fixture
def raw(pg_database: Any) -> Iterator[psycopg.Connection]:
    with pg_database.connect() as conn:
        yield conn


# -- URLs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p@db.example:5432/app",
        "postgresql+psycopg://u:p@db.example:5432/app",
        "postgres://u:p@db.example:5432/app",
    ],
)
def test_sync_urls_run_on_psycopg_3(url: str) -> None:
    """Every sync spelling runs on psycopg 3 (never psycopg2), without pre-ping: dead
    connections are found without a round trip (kern.db.postgres.failover)."""
    db = PostgresDb(db_url=url)
    assert db.engine.dialect.driver == "psycopg"
    assert db.engine.url.drivername == "postgresql+psycopg"
    assert (db.engine.url.host, db.engine.url.database) == ("db.example", "app")
    assert db.engine.pool._pre_ping is False
    assert db.backend_name == "postgres"
    db.close()


def test_async_url_runs_on_psycopg_async() -> None:
    adb = AsyncPostgresDb(db_url="postgresql+psycopg_async://u:p@db.example:5432/app")
    assert isinstance(adb.engine, AsyncEngine)
    assert adb.engine.url.drivername == "postgresql+psycopg_async"
    assert adb.engine.dialect.driver == "psycopg" and adb.engine.dialect.is_async
    assert adb.engine.sync_engine.pool._pre_ping is False
    assert adb.backend_name == "postgres" and adb.is_async
    asyncio.run(adb.close())


def test_repr_never_shows_the_password() -> None:
    db = PostgresDb(db_url=NOWHERE, schema="app", table_prefix="k_")
    adb = AsyncPostgresDb(db_url=ASYNC_NOWHERE)
    assert "s3cret" not in repr(db) and "s3cret" not in repr(adb)
    assert repr(db) == (
        "PostgresDb(db_url='postgresql+psycopg://kern:***@db.invalid:5432/app', "
        "schema='app', table_prefix='k_')"
    )
    db.close()
    asyncio.run(adb.close())


def test_engine_kwargs_reach_create_engine() -> None:
    kwargs = {"pool_size": 2, "max_overflow": 1, "pool_pre_ping": True}
    db = PostgresDb(db_url=NOWHERE, engine_kwargs=kwargs)
    assert (db.engine.pool.size(), db.engine.pool._max_overflow) == (2, 1)
    assert db.engine.pool._pre_ping is True
    db.close()


def test_connect_picks_the_postgres_classes() -> None:
    sync = kern.db.connect(NOWHERE)
    heroku = kern.db.connect(NOWHERE.replace("postgresql", "postgres"))
    asynchronous = kern.db.connect(ASYNC_NOWHERE)
    assert type(sync) is PostgresDb and type(heroku) is PostgresDb
    assert type(asynchronous) is AsyncPostgresDb
    sync.close()
    heroku.close()
    asyncio.run(asynchronous.close())


# -- wrong URLs, engines and classes --------------------------------------------------------------
def test_async_url_on_the_sync_class_names_the_fix() -> None:
    """The AsyncContextNotStarted side: an async URL given to PostgresDb."""
    with pytest.raises(SyncAsyncMismatchError, match="AsyncPostgresDb") as error:
        PostgresDb(db_url="postgresql+psycopg_async://kern:s3cret@localhost/app")
    assert "postgresql://" in str(error.value)
    assert "s3cret" not in str(error.value)
    with pytest.raises(SyncAsyncMismatchError, match="AsyncPostgresDb"):
        PostgresDb(db_url="postgresql+asyncpg://localhost/app")


@pytest.mark.parametrize(
    "url", ["postgresql://localhost/app", "postgresql+psycopg://localhost/app", "postgres://h/a"]
)
def test_sync_url_on_the_async_class_names_the_fix(url: str) -> None:
    """The MissingGreenlet side: a sync URL given to AsyncPostgresDb."""
    with pytest.raises(SyncAsyncMismatchError, match="MissingGreenlet") as error:
        AsyncPostgresDb(db_url=url)
    assert "postgresql+psycopg_async://" in str(error.value)
    assert "PostgresDb" in str(error.value)


def test_async_engine_on_the_sync_class_names_the_fix() -> None:
    engine = create_async_engine("postgresql+psycopg_async://localhost/app")
    with pytest.raises(SyncAsyncMismatchError, match="AsyncContextNotStarted") as error:
        PostgresDb(engine=engine)  # type: ignore[arg-type]
    assert "AsyncPostgresDb(engine=" in str(error.value)
    assert "create_engine('postgresql+psycopg://" in str(error.value)
    asyncio.run(engine.dispose())


def test_sync_engine_on_the_async_class_names_the_fix() -> None:
    engine = create_engine("postgresql+psycopg://localhost/app")
    with pytest.raises(SyncAsyncMismatchError, match="MissingGreenlet") as error:
        AsyncPostgresDb(engine=engine)  # type: ignore[arg-type]
    assert "create_async_engine('postgresql+psycopg_async://" in str(error.value)
    engine.dispose()


def test_sync_engine_on_an_async_driver_is_refused() -> None:
    """create_engine() accepts an async driver, then fails on use: refused up front."""
    engine = create_engine("postgresql+psycopg_async://localhost/app")
    with pytest.raises(SyncAsyncMismatchError, match="MissingGreenlet"):
        PostgresDb(engine=engine)
    engine.dispose()


def test_other_drivers_name_psycopg() -> None:
    with pytest.raises(ConfigurationError, match=r"psycopg 3.*postgresql\+psycopg://"):
        PostgresDb(db_url="postgresql+psycopg2://localhost/app")
    with pytest.raises(ConfigurationError, match=r"postgresql\+psycopg_async://"):
        AsyncPostgresDb(db_url="postgresql+asyncpg://localhost/app")


def test_other_backends_name_the_right_class() -> None:
    with pytest.raises(ConfigurationError, match="SqliteDb") as error:
        PostgresDb(db_url="sqlite:///tmp/agent.db")
    assert "kern-memory[sqlite]" in str(error.value)
    with pytest.raises(ConfigurationError, match="MongoDb"):
        AsyncPostgresDb(db_url="mongodb://localhost:27017/app")
    with pytest.raises(ConfigurationError, match="could not read"):
        PostgresDb(db_url="not a url at all")
    with pytest.raises(ConfigurationError, match="SQLAlchemy Engine"):
        PostgresDb(engine="postgresql://localhost/app")  # type: ignore[arg-type]
    sqlite = create_engine("sqlite://")
    with pytest.raises(ConfigurationError, match="SqliteDb"):
        PostgresDb(engine=sqlite)


def test_exactly_one_of_url_or_engine_and_plain_names() -> None:
    with pytest.raises(ConfigurationError, match="exactly one of db_url or engine"):
        PostgresDb()
    with pytest.raises(ConfigurationError, match="exactly one of db_url or engine"):
        AsyncPostgresDb(db_url=NOWHERE, engine=create_async_engine(ASYNC_NOWHERE))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="schema"):
        PostgresDb(db_url=NOWHERE, schema='x"; DROP SCHEMA public; --')
    with pytest.raises(ConfigurationError, match="table_prefix"):
        AsyncPostgresDb(
            db_url="postgresql+psycopg_async://localhost/app", table_prefix="bad-prefix"
        )


def test_connect_with_is_async_on_a_sync_url_names_the_fix() -> None:
    with pytest.raises(SyncAsyncMismatchError, match=r"postgresql\+psycopg_async://"):
        kern.db.connect(NOWHERE, is_async=True)


# -- the schema, tables and indexes ---------------------------------------------------------
def test_schema_is_created_with_jsonb_tables_and_indexes(
    db: PostgresDb, raw: psycopg.Connection, fresh_schema: str
) -> None:
    assert (
        raw.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (fresh_schema,)).fetchone()
        is None
    )
    db.append_run(turn("s", 0))

    columns = dict(
        raw.execute(
            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s",
            (fresh_schema,),
        ).fetchall()
    )
    for json_column in (
        "kern_sessions.state",
        "kern_sessions.metadata",
        "kern_runs.messages",
        "kern_runs.input",
        "kern_runs.output",
        "kern_runs.metrics",
        "kern_memories.topics",
        "kern_learnings.content",
    ):
        assert columns[json_column] == "jsonb", json_column
    assert columns["kern_runs.created_at"] == "timestamp with time zone"
    assert columns["kern_memories.search_vector"] == "tsvector"
    assert columns["kern_learnings.search_vector"] == "tsvector"

    indexes = dict(
        raw.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s", (fresh_schema,)
        ).fetchall()
    )
    assert "(session_id, seq)" in indexes["uq_kern_runs_session_seq"]
    assert "UNIQUE" in indexes["uq_kern_runs_session_seq"]
    assert "USING gin (search_vector)" in indexes["ix_kern_memories_search"]
    assert "USING gin (search_vector)" in indexes["ix_kern_learnings_search"]
    for name in (
        "ix_kern_runs_user",
        "ix_kern_sessions_user_updated",
        "ix_kern_memories_user_updated",
        "ix_kern_learnings_kind_ns",
        "ix_kern_learnings_user_kind",
    ):
        assert name in indexes


def test_default_schema_is_the_connections_current_one(pg_database: Any) -> None:
    """With no schema, tables go where the connection's search_path says (normally public)."""
    prefix = f"p{uuid.uuid4().hex[:8]}_"
    db = PostgresDb(db_url=pg_database.url, table_prefix=prefix)
    try:
        db.append_run(turn("s", 0))
        assert db.schema is None
        with pg_database.connect() as conn:
            (schema,) = conn.execute(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = %s",
                (f"{prefix}runs",),
            ).fetchone()
            assert schema == conn.execute("SELECT current_schema()").fetchone()[0]
    finally:
        db.close()


def test_prefixes_and_schemas_keep_data_apart(pg_database: Any, fresh_schema: str) -> None:
    dbs = [
        PostgresDb(db_url=pg_database.url, schema=fresh_schema),
        PostgresDb(db_url=pg_database.url, schema=fresh_schema, table_prefix="other_"),
        PostgresDb(db_url=pg_database.url, schema=fresh_schema + "_b"),
    ]
    try:
        for n, db in enumerate(dbs):
            for i in range(n + 1):
                db.append_run(turn("same-session", i))
        assert [len(db.get_last_runs("same-session", 10)) for db in dbs] == [1, 2, 3]
    finally:
        for db in dbs:
            db.close()


def test_an_existing_schema_needs_no_create_privilege(pg_database: Any, fresh_schema: str) -> None:
    """A role that may not create schemas still works in a schema made for it."""
    role = f"kern_app_{uuid.uuid4().hex[:8]}"
    with pg_database.connect() as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'pw'").format(sql.Identifier(role)))
        admin.execute(
            sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
                sql.Identifier(fresh_schema), sql.Identifier(role)
            )
        )
    url = pg_database.server.database_url(pg_database.name).set(
        drivername="postgresql+psycopg", username=role, password="pw"
    )
    db = PostgresDb(db_url=url, schema=fresh_schema)
    try:
        assert db.append_run(turn("s", 0)).seq == 1
    finally:
        db.close()
        with pg_database.connect() as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(fresh_schema)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def captured_selects(db: PostgresDb, call: Callable[[], Any]) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    return seen


def plan_of(raw: psycopg.Connection, statement: str, parameters: Any) -> str:
    rows = raw.execute(f"EXPLAIN {statement}", parameters).fetchall()
    return "\n".join(row[0] for row in rows)


def test_history_read_walks_the_session_seq_index_backwards(
    db: PostgresDb, raw: psycopg.Connection, fresh_schema: str
) -> None:
    for sid in ("a", "b"):
        for i in range(600):
            db.append_run(turn(sid, i, parent_run_id=None if i % 3 else "p"))
    raw.execute(f'ANALYZE "{fresh_schema}".kern_runs')
    for kwargs, index in (
        ({}, "uq_kern_runs_session_seq"),
        ({"before_seq": 300}, "uq_kern_runs_session_seq"),
        ({"top_level_only": True}, "ix_kern_runs_top_level"),
        ({"top_level_only": True, "before_seq": 300}, "ix_kern_runs_top_level"),
    ):
        (statement, parameters), *_ = captured_selects(
            db, lambda kw=kwargs: db.get_last_runs("a", 3, **kw)
        )
        plan = plan_of(raw, statement, parameters)
        assert f"Index Scan Backward using {index}" in plan, plan
        assert "Sort" not in plan, plan


def fill_session(
    raw: psycopg.Connection, schema: str, session_id: str, turns: int, members: int
) -> int:
    """``turns`` top-level runs, each followed by ``members`` member runs, in one statement
    (no ANALYZE after it: like a table that just grew). Returns the newest top-level seq."""
    per_turn = members + 1
    raw.execute(
        f"""INSERT INTO "{schema}".kern_runs
        (run_id, session_id, seq, parent_run_id, status, messages, metrics, created_at)
        SELECT %(sid)s::text || '-' || g, %(sid)s, g,
               CASE WHEN (g - 1) %% %(per)s::int = 0 THEN NULL ELSE 'leader' END,
               'completed', '[]', '{{}}', now()
        FROM generate_series(1, %(n)s) AS g""",
        {"sid": session_id, "per": per_turn, "n": turns * per_turn},
    )
    return (turns - 1) * per_turn + 1


def generic_plan_rows(
    raw: psycopg.Connection, statement: str, parameters: dict[str, Any], plan_rows: Any
) -> int:
    """Rows examined by ``statement`` run as a prepared statement with a generic plan: what
    the server ends up using once psycopg prepares a statement it runs often."""
    slots: dict[str, int] = {}

    def slot(match: re.Match[str]) -> str:
        return f"${slots.setdefault(match.group(1), len(slots) + 1)}"

    positional = re.sub(r"%\((\w+)\)s", slot, statement)
    raw.execute("SET plan_cache_mode = force_generic_plan")
    raw.execute(f"PREPARE kern_generic AS {positional}")
    try:
        values = sql.SQL(", ").join(sql.Literal(parameters[name]) for name in slots)
        explain = sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE kern_generic({})")
        (raw_plan,) = raw.execute(explain.format(values)).fetchone()
    finally:
        raw.execute("DEALLOCATE kern_generic")
        raw.execute("RESET plan_cache_mode")
    plans = json.loads(raw_plan) if isinstance(raw_plan, str) else raw_plan
    return sum(plan_rows(entry["Plan"]) for entry in plans)


@pytest.mark.parametrize("members", [0, 2], ids=["agent", "team"])
def test_the_agent_turn_history_read_does_not_grow_with_the_session(
    db: PostgresDb,
    raw: psycopg.Connection,
    fresh_schema: str,
    examined_rows: Any,
    plan_rows: Any,
    members: int,
) -> None:
    """The read an agent turn makes (last 3 completed top-level runs) examines as many rows
    in a 10,000-turn session as in a 10-turn one, on a table without statistics, with the
    server's custom and generic plans; in a team session member runs are not even read."""
    db.create_tables()
    newest = {
        sid: fill_session(raw, fresh_schema, sid, turns, members)
        for sid, turns in (("small", 10), ("big", 10_000))
    }
    custom: dict[str, int] = {}
    generic: dict[str, int] = {}
    for sid in ("small", "big"):

        def read(sid: str = sid) -> list[Run]:
            return db.get_last_runs(sid, 3, top_level_only=True, status=RunStatus.COMPLETED)

        with examined_rows(db.engine) as count:
            runs = read()
        custom[sid] = count[0]
        (statement, parameters), *_ = captured_selects(db, read)
        generic[sid] = generic_plan_rows(raw, statement, parameters, plan_rows)
        per_turn = members + 1
        assert [run.seq for run in runs] == [
            newest[sid] - 2 * per_turn,
            newest[sid] - per_turn,
            newest[sid],
        ]
        assert all(run.parent_run_id is None for run in runs)
    assert custom["big"] == custom["small"] > 0, custom
    assert generic["big"] == generic["small"] > 0, generic


def test_statements_are_planned_for_each_execution(db: PostgresDb) -> None:
    """psycopg prepares what kern runs often; the server must not settle on a generic plan
    chosen while the tables were small (plan_cache_mode = force_custom_plan)."""
    for i in range(30):
        db.append_run(turn("s", i))
        db.get_last_runs("s", 3, top_level_only=True, status=RunStatus.COMPLETED)
        db.get_session("s")
    with db.engine.connect() as conn:  # one at a time: the pool's only connection
        mode = conn.exec_driver_sql("SHOW plan_cache_mode").scalar()
        prepared = conn.exec_driver_sql(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
        ).all()
    assert mode == "force_custom_plan"
    planned = [row for row in prepared if row[0].startswith(("SELECT", "INSERT", "UPDATE", "WITH"))]
    assert any("max(" in statement for statement, _, _ in planned), planned
    assert all(generic == 0 and custom > 0 for _, generic, custom in planned), planned


def test_searches_use_the_gin_indexes(
    db: PostgresDb, raw: psycopg.Connection, fresh_schema: str
) -> None:
    """Among thousands of one user's rows, a rare word is found through the GIN index
    (once the table has the statistics autovacuum keeps: VACUUM ANALYZE here)."""
    db.upsert_memory(Memory(user_id="u", content="likes hiking"))
    db.upsert_learning(Learning(kind="k", content={"fact": "likes hiking"}))
    raw.execute(
        f"""INSERT INTO "{fresh_schema}".kern_memories
        (memory_id, user_id, content, topics, created_at, updated_at)
        SELECT 'm' || n, 'u', 'filler note ' || n, '[]', now(), now()
        FROM generate_series(1, 3000) AS n"""
    )
    raw.execute(
        f"""INSERT INTO "{fresh_schema}".kern_learnings
        (learning_id, kind, namespace, content, status, created_at, updated_at)
        SELECT 'l' || n, 'k', 'global', jsonb_build_object('fact', 'filler ' || n), 'active',
               now(), now()
        FROM generate_series(1, 3000) AS n"""
    )
    raw.execute(f'VACUUM ANALYZE "{fresh_schema}".kern_memories, "{fresh_schema}".kern_learnings')
    for search, index in (
        (lambda: db.search_memories("u", "hiking"), "ix_kern_memories_search"),
        (lambda: db.search_learnings("hiking", kind="k"), "ix_kern_learnings_search"),
    ):
        (statement, parameters), *_ = captured_selects(db, search)
        assert index in plan_of(raw, statement, parameters)
    assert len(db.search_memories("u", "hiking filler", limit=7)) == 7


# -- seq: the advisory lock ---------------------------------------------------------------------
def hold_session_lock(raw: psycopg.Connection, db: PostgresDb, session_id: str) -> None:
    """Take, in ``raw``'s open transaction, the lock kern's appends to the session take."""
    raw.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, %s))",
        (session_id, table_key(db.tables)),
    )


def advisory_waiters(conn: psycopg.Connection) -> int:
    (count,) = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchone()
    return int(count)


def hold_session_write(raw: psycopg.Connection, db: PostgresDb, session_id: str) -> None:
    """In ``raw``'s open transaction, be a writer of the session in the middle of a turn:
    its lock taken and its next run inserted, not yet committed."""
    hold_session_lock(raw, db, session_id)
    runs = f'"{db.schema}".{db.tables.runs.name}'
    raw.execute(
        f"INSERT INTO {runs} (run_id, session_id, seq, status, messages, metrics, created_at) "
        f"SELECT 'held-' || %s, %s, coalesce(max(seq), 0) + 1, 'completed', '[]', '{{}}', now() "
        f"FROM {runs} WHERE session_id = %s",
        (session_id, session_id, session_id),
    )


def lock_waiters(conn: psycopg.Connection) -> int:
    """Sessions of this database waiting for a lock: an advisory lock, or another
    transaction (a row or a key it holds)."""
    (count,) = conn.execute(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        "WHERE NOT l.granted AND l.locktype IN ('advisory', 'transactionid') "
        "AND a.datname = current_database()"
    ).fetchone()
    return int(count)


def test_an_append_waits_only_for_writers_of_its_own_session(
    db: PostgresDb, pg_database: Any
) -> None:
    """An append meeting another writer of its session mid-turn waits for it (on the seq
    both want), then takes the next seq; a writer of another session never waits."""
    db.append_run(turn("busy", 0))
    holder = pg_database.connect()
    watcher = pg_database.connect()
    holder.autocommit = False
    try:
        hold_session_write(holder, db, "busy")
        result: list[Run] = []
        blocked = threading.Thread(target=lambda: result.append(db.append_run(turn("busy", 1))))
        blocked.start()
        wait_until(lambda: lock_waiters(watcher) == 1, "the append to wait for the writer")

        # Another session's writer does not wait for it.
        assert db.append_run(turn("free", 0)).seq == 1
        assert blocked.is_alive() and result == []

        holder.commit()
        blocked.join(timeout=60)
        assert [run.seq for run in result] == [3]  # after the other writer's run 2
        assert [run.seq for run in db.get_last_runs("busy", 10)] == [1, 2, 3]
    finally:
        holder.close()
        watcher.close()


async def test_async_append_waiting_on_the_server_leaves_the_loop_free(
    pg_database: Any, fresh_schema: str
) -> None:
    """True async: while one append waits in the server for another writer of its session,
    the same event loop goes on serving other calls, and no worker thread is involved."""
    adb = AsyncPostgresDb(db_url=pg_database.async_url, schema=fresh_schema)
    await adb.append_run(turn("busy", 0))
    holder = pg_database.connect()
    holder.autocommit = False
    threads_before = threading.active_count()
    try:
        hold_session_write(holder, adb.sync_db, "busy")
        waiting = asyncio.create_task(adb.append_run(turn("busy", 1)))
        deadline = time.monotonic() + 60  # a hang guard, not a timing assertion
        with pg_database.connect() as watcher:
            while lock_waiters(watcher) == 0:
                assert not waiting.done() and time.monotonic() < deadline
                await asyncio.sleep(0.01)

        other = await adb.append_run(turn("free", 0))
        assert other.seq == 1
        assert (await adb.get_session("nobody")) is None
        assert [r.seq for r in await adb.get_last_runs("busy", 5)] == [1]
        assert not waiting.done()
        assert threading.active_count() == threads_before

        holder.commit()
        assert (await waiting).seq == 3  # after the other writer's run 2
    finally:
        holder.close()
        await adb.close()


async def test_async_pool_holds_psycopg_async_connections(
    pg_database: Any, fresh_schema: str
) -> None:
    adb = AsyncPostgresDb(db_url=pg_database.async_url, schema=fresh_schema)
    try:
        await adb.append_run(turn("s", 0))
        async with adb.engine.connect() as conn:
            raw_conn = await conn.get_raw_connection()
            assert isinstance(raw_conn.driver_connection, psycopg.AsyncConnection)
    finally:
        await adb.close()


async def test_four_by_two_hundred_appends_from_one_event_loop(
    pg_database: Any, fresh_schema: str
) -> None:
    """4 db objects x 200 appends, all in flight at once in ONE event loop, to one session:
    seq is exactly 1..800."""
    dbs = [AsyncPostgresDb(db_url=pg_database.async_url, schema=fresh_schema) for _ in range(4)]
    sid = "shared"
    try:
        stored = await asyncio.gather(
            *(db.append_run(turn(sid, i)) for db in dbs for i in range(200))
        )
        assert sorted(run.seq for run in stored) == list(range(1, 801))
        history = await dbs[0].get_last_runs(sid, 1000)
        assert [run.seq for run in history] == list(range(1, 801))
        assert sorted(r.run_id for r in history) == sorted(r.run_id for r in stored)
    finally:
        for db in dbs:
            await db.close()


def test_async_db_can_be_used_from_one_event_loop_after_another(
    pg_database: Any, fresh_schema: str
) -> None:
    """Scripts call asyncio.run() once per step: the same db object keeps working."""
    adb = AsyncPostgresDb(db_url=pg_database.async_url, schema=fresh_schema)
    first = asyncio.run(adb.append_run(turn("s", 0)))
    second = asyncio.run(adb.append_run(turn("s", 1)))
    assert [first.seq, second.seq] == [1, 2]
    assert [r.seq for r in asyncio.run(adb.get_last_runs("s", 5))] == [1, 2]
    asyncio.run(adb.close())


async def test_closed_dbs_refuse_to_work(pg_database: Any, fresh_schema: str) -> None:
    db = PostgresDb(db_url=pg_database.url, schema=fresh_schema)
    db.append_run(turn("s", 0))
    db.close()
    with pytest.raises(KernError, match="closed"):
        db.get_session("s")
    adb = AsyncPostgresDb(db_url=pg_database.async_url, schema=fresh_schema)
    await adb.append_run(turn("s", 1))
    await adb.close()
    with pytest.raises(KernError, match="closed"):
        await adb.get_session("s")


# -- engines the user owns ------------------------------------------------------------------------
def test_user_engine_keeps_its_transactions_and_is_not_disposed(
    pg_database: Any, fresh_schema: str
) -> None:
    engine = create_engine(pg_database.url)
    db = PostgresDb(engine=engine, schema=fresh_schema)
    assert db.engine is engine
    db.append_run(turn("s", 0))
    db.get_last_runs("s", 3)
    db.close()

    with engine.connect() as conn:
        assert conn.connection.dbapi_connection.autocommit is False  # given back as it was
        conn.execute(text(f'CREATE TABLE "{fresh_schema}".mine (x int)'))
        conn.execute(text(f'INSERT INTO "{fresh_schema}".mine VALUES (1)'))
        conn.rollback()  # a transaction of the user's is still a transaction
        assert conn.execute(text(f'SELECT count(*) FROM "{fresh_schema}".kern_runs')).scalar() == 1
        exists = conn.execute(text("SELECT to_regclass(:t)"), {"t": f"{fresh_schema}.mine"})
        assert exists.scalar() is None
    engine.dispose()


async def test_user_async_engine_is_used_and_not_disposed(
    pg_database: Any, fresh_schema: str
) -> None:
    engine = create_async_engine(pg_database.async_url)
    adb = AsyncPostgresDb(engine=engine, schema=fresh_schema)
    assert adb.engine is engine
    await adb.append_run(turn("s", 0))
    await adb.close()
    async with engine.connect() as conn:
        count = await conn.execute(text(f'SELECT count(*) FROM "{fresh_schema}".kern_runs'))
        assert count.scalar() == 1
    await engine.dispose()


def test_statement_events_see_every_statement(db: PostgresDb) -> None:
    """With a listener on the engine, every statement goes through SQLAlchemy's events
    (BEGIN and the advisory lock included), and the results are the same."""
    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    db.upsert_session(Session(session_id="s"), expected_version=None)
    stored = db.append_run(turn("s", 0))
    assert db.get_last_runs("s", 1) == [stored]
    assert db.search_memories("u", "anything") == []
    assert any(s.startswith("BEGIN ISOLATION LEVEL READ COMMITTED") for s in seen)
    assert any("pg_advisory_xact_lock" in s for s in seen)
    assert any(s.startswith("INSERT") for s in seen)


# -- migrations ------------------------------------------------------------------------------------
def versions(raw: psycopg.Connection, schema: str) -> list[tuple[Any, ...]]:
    return raw.execute(
        f'SELECT name, version, applied_at FROM "{schema}".kern_schema_versions ORDER BY name'
    ).fetchall()


def test_schema_versions_are_recorded_once(
    pg_database: Any, raw: psycopg.Connection, fresh_schema: str
) -> None:
    first = PostgresDb(db_url=pg_database.url, schema=fresh_schema)
    first.create_tables()
    recorded = versions(raw, fresh_schema)
    assert {name for name, _, _ in recorded} == {
        "kern_schema_versions",
        "kern_sessions",
        "kern_runs",
        "kern_memories",
        "kern_learnings",
        "kern_memories_search",
        "kern_learnings_search",
        "kern_sessions_search",
        "kern_runs_top_level",
    }
    first.create_tables()
    second = PostgresDb(db_url=pg_database.url, schema=fresh_schema)
    second.append_run(turn("s", 0))
    assert versions(raw, fresh_schema) == recorded  # same applied_at: nothing ran again
    assert second.schema_versions() == {name: v for name, v, _ in recorded}
    first.close()
    second.close()


def test_migrations_bring_an_older_database_forward(
    pg_database: Any, raw: psycopg.Connection, fresh_schema: str
) -> None:
    """A database without the search column (as if written before it existed) gets it,
    filled for the rows already stored, the next time kern opens it."""
    db = PostgresDb(db_url=pg_database.url, schema=fresh_schema)
    db.upsert_memory(Memory(user_id="u", content="likes hiking in the Alps"))
    db.close()
    raw.execute(f'ALTER TABLE "{fresh_schema}".kern_memories DROP COLUMN search_vector')
    raw.execute(
        f"DELETE FROM \"{fresh_schema}\".kern_schema_versions WHERE name = 'kern_memories_search'"
    )

    reopened = PostgresDb(db_url=pg_database.url, schema=fresh_schema)
    try:
        hits = reopened.search_memories("u", "alps")
        assert [hit.memory.content for hit in hits] == ["likes hiking in the Alps"]
        assert reopened.schema_versions()["kern_memories_search"] == 2
    finally:
        reopened.close()


#: The memories' search column and index as schema version 1 made them (no user key).
MEMORY_SEARCH_V1 = (
    "ALTER TABLE {table} ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english'::regconfig, content), 'A') || "
    "setweight(jsonb_to_tsvector('english'::regconfig, topics, '[\"string\"]'), 'B')) STORED",
    "CREATE INDEX ix_kern_memories_search ON {table} USING gin (search_vector)",
)


def downgrade_search_to_v1(raw: psycopg.Connection, schema: str) -> None:
    """Put back both search indexes as version 1 left them (and their version numbers)."""
    table = f'"{schema}".kern_memories'
    raw.execute(f"ALTER TABLE {table} DROP COLUMN search_vector")
    for statement in MEMORY_SEARCH_V1:
        raw.execute(statement.format(table=table))
    raw.execute(f'ALTER INDEX "{schema}".ix_kern_learnings_search SET (fastupdate = on)')
    raw.execute(
        f'UPDATE "{schema}".kern_schema_versions SET version = 1 '
        "WHERE name IN ('kern_memories_search', 'kern_learnings_search')"
    )


def gin_options(raw: psycopg.Connection, schema: str) -> dict[str, list[str] | None]:
    rows = raw.execute(
        "SELECT c.relname, c.reloptions FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname LIKE 'ix_%%_search'",
        (schema,),
    ).fetchall()
    return dict(rows)


def test_a_version_1_search_gets_the_user_key(
    pg_database: Any, raw: psycopg.Connection, fresh_schema: str
) -> None:
    """Search columns of version 1 (no user key, GIN with fast update) are brought forward
    the next time kern opens the database: old rows are found, for their own user only."""
    db = PostgresDb(db_url=pg_database.url, schema=fresh_schema)
    mine = db.upsert_memory(Memory(user_id="u", content="likes hiking in the Alps"))
    db.upsert_memory(Memory(user_id="v", content="hiking the Alps twice a year"))
    learning = db.upsert_learning(Learning(kind="k", content={"fact": "the Alps are high"}))
    db.close()
    downgrade_search_to_v1(raw, fresh_schema)

    reopened = PostgresDb(db_url=pg_database.url, schema=fresh_schema)
    try:
        assert [hit.memory for hit in reopened.search_memories("u", "alps hiking")] == [mine]
        assert [hit.learning for hit in reopened.search_learnings("alps")] == [learning]
        versions = reopened.schema_versions()
        assert versions["kern_memories_search"] == versions["kern_learnings_search"] == 2
        assert gin_options(raw, fresh_schema) == {
            "ix_kern_memories_search": ["fastupdate=off"],
            "ix_kern_learnings_search": ["fastupdate=off"],
            "ix_kern_sessions_search": ["fastupdate=off"],
        }
    finally:
        reopened.close()


# -- full-text search -----------------------------------------------------------------------
def test_tsquery_text_keeps_only_words() -> None:
    assert tsquery_text('what\'s "up" AND (x') == "what or s or up or and or x"
    assert tsquery_text("Tee tee TEE or OR") == "tee"
    assert tsquery_text("a & b | !c <-> d:*") == "a or b or c or d"
    for nothing in ("", "   ", '"', "*", "(((", "-", "or", "&|!"):
        assert tsquery_text(nothing) is None


def test_odd_query_text_is_data(db: PostgresDb) -> None:
    db.upsert_memory(Memory(user_id="u", content='what\'s "up" AND (x) quux | ! <-> :*'))
    db.upsert_learning(Learning(kind="k", content={"fact": 'what\'s "up" AND (x)'}))
    for query in ODD_QUERIES:
        assert isinstance(db.search_memories("u", query), list)
        assert isinstance(db.search_learnings(query), list)
    assert len(db.search_memories("u", "quux & !")) == 1


def test_search_stems_and_ranks_more_matching_words_first(db: PostgresDb) -> None:
    one = db.upsert_memory(Memory(user_id="u", content="She preferred the station cafe"))
    both = db.upsert_memory(Memory(user_id="u", content="Prefers green tea at the station"))
    found = db.search_memories("u", "prefers tea")
    assert [hit.memory.memory_id for hit in found] == [both.memory_id, one.memory_id]
    assert found[0].score > found[1].score > 0


def test_memory_topics_are_searched_too(db: PostgresDb) -> None:
    tagged = db.upsert_memory(Memory(user_id="u", content="Lives in Lyon", topics=["relocation"]))
    assert [hit.memory for hit in db.search_memories("u", "relocation")] == [tagged]


def test_learning_search_reads_nested_json_values_not_keys(db: PostgresDb) -> None:
    nested = db.upsert_learning(
        Learning(kind="k", content={"entity": "Acme", "facts": [{"city": "Zürich"}, 1999]})
    )
    assert [hit.learning for hit in db.search_learnings("zürich")] == [nested]
    assert [hit.learning for hit in db.search_learnings("1999")] == [nested]
    assert db.search_learnings("facts city") == []  # keys are structure, not content


def test_the_search_column_follows_every_write(db: PostgresDb) -> None:
    memory = db.upsert_memory(Memory(user_id="u", content="old words", topics=["alpha"]))
    db.upsert_memory(memory.model_copy(update={"content": "new words", "topics": ["beta"]}))
    assert db.search_memories("u", "old alpha") == []
    assert [h.memory.content for h in db.search_memories("u", "new beta")] == ["new words"]
    learning = db.upsert_learning(Learning(kind="k", user_id="u", content={"v": "first"}))
    db.upsert_learning(learning.model_copy(update={"content": {"v": "second"}}))
    assert db.search_learnings("first") == []
    assert len(db.search_learnings("second")) == 1
    db.forget_user("u")
    assert db.search_memories("u", "new") == []
    assert db.search_learnings("second") == []


def test_a_memory_search_examines_only_its_users_matches(
    db: PostgresDb, raw: psycopg.Connection, fresh_schema: str, examined_rows: Any
) -> None:
    """Thousands of other users' rows with the query's word, and thousands of the user's
    own rows without it, on a table without statistics: the search examines about as many
    rows as the user has matches (the user key inside the tsvector), not thousands."""
    db.create_tables()
    mine = [db.upsert_memory(Memory(user_id="few", content=f"hiking trip {i}")) for i in range(3)]
    for user, content in (("crowd", "hiking note "), ("few", "filler note ")):
        raw.execute(
            f"""INSERT INTO "{fresh_schema}".kern_memories
            (memory_id, user_id, content, topics, created_at, updated_at)
            SELECT %(user)s || n, %(user)s, %(content)s || n, '[]', now(), now()
            FROM generate_series(1, 2000) AS n""",
            {"user": user, "content": content},
        )
    with examined_rows(db.engine) as count:
        found = db.search_memories("few", "hiking", limit=5)
    assert sorted(hit.memory.memory_id for hit in found) == sorted(m.memory_id for m in mine)
    assert 0 < count[0] < 100, count


# -- commit_turn: a fault between the halves stores neither (kern.testing.turns) --------
def test_commit_turn(db: PostgresDb, monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(fault_between_halves(Awaiting(db), db._ops, "store_run", monkeypatch))


async def test_async_commit_turn(
    pg_database: Any, fresh_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    adb = AsyncPostgresDb(db_url=pg_database.async_url, schema=fresh_schema)
    try:
        await fault_between_halves(adb, adb.sync_db._ops, "store_run", monkeypatch)
    finally:
        await adb.close()


def test_commit_turn_waits_on_the_session_lock_like_append_run(
    db: PostgresDb, pg_database: Any
) -> None:
    """A turn takes the session's advisory lock before it writes the session row, in the
    order append_run takes them: concurrent turns and appends queue, never deadlock."""
    session = db.upsert_session(Session(session_id="busy"), expected_version=None)
    holder = pg_database.connect()
    watcher = pg_database.connect()
    holder.autocommit = False
    try:
        hold_session_lock(holder, db, "busy")
        result: list[tuple[Run, Session]] = []
        changed = session.model_copy(update={"state": {"n": 1}})
        blocked = threading.Thread(
            target=lambda: result.append(
                db.commit_turn(turn("busy", 0), changed, expected_version=1)
            )
        )
        blocked.start()
        wait_until(lambda: advisory_waiters(watcher) == 1, "the turn to queue on the lock")
        assert db.get_session("busy") == session  # the session row is not held meanwhile
        holder.commit()
        blocked.join(timeout=60)
        assert [(run.seq, saved.version) for run, saved in result] == [(1, 2)]
    finally:
        holder.close()
        watcher.close()

    threads = [
        threading.Thread(target=lambda i=i: db.append_run(turn("busy", 10 + i))) for i in range(8)
    ]
    current = db.get_session("busy")
    assert current is not None
    for thread in threads:
        thread.start()
    for n in range(8):
        _, current = db.commit_turn(
            turn("busy", 100 + n),
            current.model_copy(update={"state": {"n": n}}),
            expected_version=current.version,
        )
    for thread in threads:
        thread.join(timeout=60)
    assert [r.seq for r in db.get_last_runs("busy", 100)] == list(range(1, 18))


# -- forget_user ---------------------------------------------------------------------------
def scan_tables(raw: psycopg.Connection, schema: str, prefix: str = "kern_") -> list[str]:
    """``<table>: <row as text>`` for every row of every table of the prefix in ``schema``."""
    names = raw.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = %s AND table_type = 'BASE TABLE'",
        (schema,),
    ).fetchall()
    rows: list[str] = []
    for (name,) in names:
        if name.startswith(prefix):
            query = sql.SQL("SELECT t::text FROM {}.{} AS t").format(
                sql.Identifier(schema), sql.Identifier(name)
            )
            rows += [f"{name}: {text}" for (text,) in raw.execute(query).fetchall()]
    return rows


def test_forget_user_leaves_no_row_holding_the_users_words(
    db: PostgresDb, raw: psycopg.Connection
) -> None:
    """No live row of any kern table (search vectors included) holds the user's words once
    forget_user committed; the dead row versions stay in the table files until VACUUM."""
    marker = f"qz{uuid.uuid4().hex[:10]}x"
    sid = "alice-session"
    db.upsert_session(
        Session(session_id=sid, user_id="alice", state={"secret": f"{marker} plan"}),
        expected_version=None,
    )
    db.append_run(
        Run(session_id=sid, user_id="alice", messages=[Message(role="user", content=marker)])
    )
    db.upsert_memory(Memory(user_id="alice", content=f"{marker} is private", topics=[marker]))
    db.upsert_learning(Learning(kind="profile", user_id="alice", content={"fact": marker}))
    db.upsert_memory(Memory(user_id="bob", content="bob likes kiwis"))
    assert db.schema is not None
    assert any(marker in row for row in scan_tables(raw, db.schema))

    db.forget_user("alice")
    assert [r for r in scan_tables(raw, db.schema) if marker in r or "alice" in r] == []
    assert [hit.memory.user_id for hit in db.search_memories("bob", "kiwis")] == ["bob"]


# -- the schema is checked at start-up --------------------------------------------------------
def a_turn(db: Any, sid: str) -> None:
    """A turn (kern.testing.turns.a_turn) through the history index, then a learning search
    (both read objects the schema check restores)."""
    shared_turn(db, sid, top_level_only=True)
    assert db.search_learnings("nothing") == []


def catalog(raw: psycopg.Connection, schema: str) -> set[str]:
    """Relations (tables, indexes) and columns of ``schema``."""
    relations = raw.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s",
        (schema,),
    ).fetchall()
    columns = raw.execute(
        "SELECT table_name || '.' || column_name FROM information_schema.columns "
        "WHERE table_schema = %s",
        (schema,),
    ).fetchall()
    return {name for (name,) in relations + columns}


@pytest.mark.parametrize(
    "drop",
    [
        "DROP TABLE {s}.kern_runs",
        "DROP INDEX {s}.ix_kern_runs_user",
        "DROP INDEX {s}.ix_kern_memories_search",
        "ALTER TABLE {s}.kern_memories DROP COLUMN search_vector",
        "ALTER TABLE {s}.kern_sessions DROP COLUMN search_vector",
        "ALTER TABLE {s}.kern_runs DROP CONSTRAINT uq_kern_runs_session_seq",
        "DROP INDEX {s}.ix_kern_runs_top_level",
        "DROP TABLE {s}.kern_learnings",
    ],
)
def test_schema_objects_dropped_by_hand_are_put_back(
    pg_database: Any,
    fresh_schema: str,
    raw: psycopg.Connection,
    drop: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = PostgresDb(db_url=pg_database.url, schema=fresh_schema)
    a_turn(db, "before")
    db.close()
    expected = catalog(raw, fresh_schema)
    raw.execute(drop.format(s=fresh_schema))

    again = PostgresDb(db_url=pg_database.url, schema=fresh_schema)
    try:
        with caplog.at_level("WARNING", logger="kern.db.sql"):
            a_turn(again, "after")
        assert "recreated" in caplog.text
        if "kern_runs " not in drop + " ":
            assert len(again.get_last_runs("before", 10)) == 2
        hits = [hit.memory.content for hit in again.search_memories("u", "hiking")]
        assert "likes hiking before" in hits
    finally:
        again.close()
    assert catalog(raw, fresh_schema) == expected


def test_an_intact_schema_costs_one_catalog_query(db: PostgresDb, pg_database: Any) -> None:
    db.create_tables()
    again = PostgresDb(db_url=pg_database.url, schema=db.schema)
    statements: list[str] = []
    event.listen(again.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    try:
        again.create_tables()
        assert len([s for s in statements if "pg_catalog.pg_attribute" in s]) == 1
        assert not [s for s in statements if s.lstrip().upper().startswith(("CREATE", "ALTER"))]
    finally:
        again.close()


def test_what_cannot_be_put_back_is_a_configuration_error(
    pg_database: Any, fresh_schema: str, raw: psycopg.Connection
) -> None:
    """A role that may read and write the tables but not create in the schema gets an
    error naming what is missing and how to repair it, not a driver error on first use."""
    db = PostgresDb(db_url=pg_database.url, schema=fresh_schema)
    a_turn(db, "before")
    db.close()
    role = f"kern_rw_{uuid.uuid4().hex[:8]}"
    schema = sql.Identifier(fresh_schema)
    raw.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        raw.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, sql.Identifier(role)))
        raw.execute(
            sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}").format(
                schema, sql.Identifier(role)
            )
        )
        raw.execute(sql.SQL("DROP INDEX {}.ix_kern_memories_search").format(schema))
        url = make_url(pg_database.url).set(username=role, password="s3cret")
        limited = PostgresDb(db_url=url, schema=fresh_schema)
        try:
            with pytest.raises(
                ConfigurationError, match="ix_kern_memories_search missing"
            ) as error:
                limited.search_memories("u", "hiking")
            assert "create_tables()" in str(error.value) and "s3cret" not in str(error.value)
        finally:
            limited.close()
        repaired = PostgresDb(db_url=pg_database.url, schema=fresh_schema)  # the owner
        assert repaired.search_memories("u", "hiking before")
        repaired.close()
    finally:
        raw.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        raw.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


# -- faults: a server that is down or restarting -----------------------------------------------
def pool_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What SQLAlchemy's pool logged at ERROR ("Exception during reset or similar"...)."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("sqlalchemy") and record.levelno >= logging.ERROR
    ]


def restart_url(server: Any, driver: str) -> str:
    url = server.url.set(drivername=driver, database="kern_restart", password="s3cret")
    return url.render_as_string(hide_password=False)


def assert_unavailable(error: pytest.ExceptionInfo[StorageUnavailableError]) -> None:
    message = str(error.value)
    assert isinstance(error.value.__cause__, psycopg.OperationalError), repr(error.value.__cause__)
    assert "s3cret" not in message and "***@127.0.0.1" in message
    assert message.startswith("the postgres database at postgresql+psycopg")


def test_a_server_that_is_down_raises_storage_unavailable(
    restartable_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    db = PostgresDb(db_url=restart_url(restartable_server, "postgresql"), schema="sync_down")
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.pool")
    try:
        session = db.upsert_session(Session(session_id="s"), expected_version=None)
        first = db.append_run(turn("s", 0))
        restartable_server.halt()
        try:
            with pytest.raises(StorageUnavailableError) as error:
                db.get_last_runs("s", 10)
            assert_unavailable(error)
            changed = session.model_copy(update={"state": {"n": 1}})
            with pytest.raises(StorageUnavailableError) as error:
                db.commit_turn(turn("s", 1), changed, expected_version=1)
            assert_unavailable(error)
        finally:
            restartable_server.start()
        assert db.get_last_runs("s", 10) == [first]
        run, saved = db.commit_turn(turn("s", 1), changed, expected_version=1)
        assert (run.seq, saved.version) == (2, 2)
    finally:
        db.close()
    assert pool_errors(caplog) == []


def test_a_server_lost_in_the_middle_of_a_write(
    restartable_server: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection dies inside the transaction: StorageUnavailableError, nothing stored,
    the dead connection is not given back to the pool (no reset, no traceback logged)."""
    db = PostgresDb(db_url=restart_url(restartable_server, "postgresql"), schema="sync_mid")
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.pool")
    admin = restartable_server.url.set(database="kern_restart").render_as_string(
        hide_password=False
    )
    begin = db.dialect.begin_write

    def begin_then_die(link: Any) -> None:
        begin(link)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = 'kern_restart' AND pid <> pg_backend_pid()"
            )

    try:
        session = db.upsert_session(Session(session_id="s"), expected_version=None)
        changed = session.model_copy(update={"state": {"n": 1}})
        monkeypatch.setattr(db.dialect, "begin_write", begin_then_die)
        with pytest.raises(StorageUnavailableError) as error:
            db.upsert_session(changed, expected_version=1)
        assert_unavailable(error)
        monkeypatch.undo()
        stored = db.get_session("s")
        assert stored is not None and (stored.version, stored.state) == (1, {})
        assert db.upsert_session(changed, expected_version=1).version == 2
    finally:
        db.close()
    assert pool_errors(caplog) == []


async def test_async_a_server_that_is_down_raises_storage_unavailable(
    restartable_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url = restart_url(restartable_server, "postgresql+psycopg_async")
    adb = AsyncPostgresDb(db_url=url, schema="async_down")
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.pool")
    try:
        session = await adb.upsert_session(Session(session_id="s"), expected_version=None)
        first = await adb.append_run(turn("s", 0))
        await asyncio.to_thread(restartable_server.halt)
        try:
            with pytest.raises(StorageUnavailableError) as error:
                await adb.get_last_runs("s", 10)
            assert_unavailable(error)
            changed = session.model_copy(update={"state": {"n": 1}})
            with pytest.raises(StorageUnavailableError) as error:
                await adb.commit_turn(turn("s", 1), changed, expected_version=1)
            assert_unavailable(error)
            assert "psycopg_async" in str(error.value)
        finally:
            await asyncio.to_thread(restartable_server.start)
        assert await adb.get_last_runs("s", 10) == [first]
        run, saved = await adb.commit_turn(turn("s", 1), changed, expected_version=1)
        assert (run.seq, saved.version) == (2, 2)
        # and a fresh db whose first call (the schema check) finds the server down
        await asyncio.to_thread(restartable_server.halt)
        try:
            fresh = AsyncPostgresDb(db_url=url, schema="async_down_fresh")
            with pytest.raises(StorageUnavailableError) as error:
                await fresh.get_session("s")
            assert_unavailable(error)
        finally:
            await asyncio.to_thread(restartable_server.start)
        assert await fresh.get_session("s") is None
        await fresh.close()
    finally:
        await adb.close()
    assert pool_errors(caplog) == []


def test_only_connection_level_errors_mean_unavailable(db: PostgresDb) -> None:
    """A statement timeout, a lock timeout, a deadlock or a unique violation pass through
    as they are; a failed or lost connection and a server going down do not."""
    unavailable = db.dialect.unavailable
    for error in (
        psycopg.OperationalError("connection failed: Connection refused"),
        psycopg.OperationalError("consuming input failed: server closed the connection"),
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.CannotConnectNow("the database system is starting up"),
        psycopg.errors.ConnectionFailure("connection failure"),
    ):
        assert unavailable(error) is error
        wrapped = OperationalError("SELECT 1", {}, error)
        assert unavailable(wrapped) is error
    for error in (
        psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
        psycopg.errors.LockNotAvailable("could not obtain lock"),
        psycopg.errors.DeadlockDetected("deadlock detected"),
        psycopg.errors.UniqueViolation("duplicate key"),
        ValueError("not a driver error"),
    ):
        assert unavailable(error) is None
        assert unavailable(OperationalError("SELECT 1", {}, error)) is None
    assert psycopg.errors.AdminShutdown in PostgresDb.unavailable_errors
    assert psycopg.OperationalError not in PostgresDb.unavailable_errors
    assert db.storage_target() == db.engine.url.render_as_string(hide_password=True)
