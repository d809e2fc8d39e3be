"""The SQLAlchemy internals kern relies on, checked on the installed SQLAlchemy.

kern-sql skips ``Connection.execute`` on its hot path (see ``kern.db.sql.prepared``), and
kern-postgres bridges its async class with ``greenlet_spawn``. Neither has public API, so a
SQLAlchemy release can change what they read without any other test noticing (a flag that
reads False while someone listens means statements that tracers never see). Each test below
checks one internal's *behaviour* and, when it fails, names the internal, who uses it and
what to do. Run this file first when widening the SQLAlchemy range in
plugins/kern-sql/pyproject.toml or plugins/kern-postgres/pyproject.toml.

Every private or internal SQLAlchemy name in kern_core/ and plugins/ (grep for
``\\._[a-z]`` on SQLAlchemy objects, ``sqlalchemy.util``, ``sqlalchemy.engine.default``,
``compiled.``; kern_core itself imports no SQLAlchemy):

=====================================  ==========================================  =========
internal                               used by                                     test
=====================================  ==========================================  =========
``SQLCompiler.bind_names``,            ``kern.db.sql.prepared.Prepared._compile``  binding
``SQLCompiler.positiontup``            (once per statement shape)
``Engine._has_events``,                ``kern.db.sql.prepared``                    events
``Connection._has_events``,            ``.has_statement_listeners`` (every
``Dialect._has_events`` + ``dispatch``  operation, via ``SqlDb._link``)
``DBAPIError.instance``                ``kern.db.sql.prepared.Link.wrap``          errors
``sqlalchemy.util.greenlet_spawn``     ``kern.db.postgres.aio`` (AsyncPostgresDb)  greenlet
``QueuePool._pre_ping``,               plugins/kern-postgres/tests/                pool
``QueuePool._max_overflow``            test_postgres_backend.py (tests only)
=====================================  ==========================================  =========

The rest is public API (``Compiled.string``, ``SQLCompiler.construct_expanded_state``,
``BindParameter.required`` / ``effective_value``, ``TypeEngine.dialect_impl`` /
``bind_processor`` / ``result_processor``, ``Dialect.loaded_dbapi`` / ``is_disconnect`` /
``identifier_preparer``, ``Engine.raw_connection``, ``dialects.registry``,
``sqlalchemy.types.NULLTYPE``). duckdb_engine's ``ConnectionWrapper`` and
``DuckDBNullType`` (kern-duckdb) are duckdb_engine's, not SQLAlchemy's.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from packaging.requirements import Requirement
from packaging.version import Version
from sqlalchemy import (
    JSON,
    BindParameter,
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    event,
    or_,
    select,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql import ClauseElement

from kern.db.sql import prepared
from kern.db.sql.prepared import Link, Prepared, SqlAlchemyChanged, has_statement_listeners

VERSION = sqlalchemy.__version__
PLUGINS = Path(__file__).resolve().parents[2]


def changed(internal: str, what: str, used_by: str, todo: str) -> str:
    """A failure message that says which internal moved and what to do about it."""
    return (
        f"SQLAlchemy {VERSION} changed {internal}: {what}. Used by {used_by}. {todo} "
        "(see kern.db.sql.prepared's module docstring; or keep SQLAlchemy below this version "
        "in plugins/kern-sql/pyproject.toml and plugins/kern-postgres/pyproject.toml)."
    )


# -- the pins ---------------------------------------------------------------------------------
@pytest.mark.parametrize("plugin", ["kern-sql", "kern-postgres"])
def test_sqlalchemy_pinned_below_the_next_minor(plugin: str) -> None:
    project = tomllib.loads((PLUGINS / plugin / "pyproject.toml").read_text())["project"]
    (spec,) = [r for r in map(Requirement, project["dependencies"]) if r.name == "sqlalchemy"]
    uppers = [Version(s.version) for s in spec.specifier if s.operator == "<"]
    assert uppers and max(uppers) <= Version("2.1"), (
        f"{plugin} must keep SQLAlchemy below 2.1 (got {spec}): the internals in this file are "
        "checked on 2.0.x only. Widen the range only with this file passing on the new version."
    )
    assert spec.specifier.contains(VERSION, prereleases=True), (
        f"SQLAlchemy {VERSION} is installed, outside {plugin}'s {spec}. Trying a new "
        "SQLAlchemy? Widen the range (then `uv lock`) once this file and the SQL backends' "
        "suites pass on it. Otherwise run `uv sync`."
    )


# -- binding: SQLCompiler.bind_names / positiontup ----------------------------------------------
_META = MetaData()
_ITEMS = Table(
    "items",
    _META,
    Column("id", String, primary_key=True),
    Column("owner", String),
    Column("n", Integer),
    Column("doc", JSON),
    Column("made_at", DateTime),
)
_ROW = {
    "id": "a",
    "owner": "u",
    "n": 1,
    "doc": {"k": [1, "é"]},
    "made_at": datetime(2024, 5, 1, 12),
}
_LISTING = (
    select(_ITEMS.c.id, _ITEMS.c.n, _ITEMS.c.doc, _ITEMS.c.made_at)
    .where(
        _ITEMS.c.owner == bindparam("owner"),
        or_(_ITEMS.c.id == bindparam("id"), _ITEMS.c.owner == bindparam("id")),  # used twice
        _ITEMS.c.n + 5 > 0,  # a constant of the statement, bound by SQLAlchemy
    )
    .order_by(_ITEMS.c.id)
    .limit(bindparam("limit"))
)
_BUMP = (
    _ITEMS.update()
    .where(_ITEMS.c.id == bindparam("b_id"))
    .values(n=_ITEMS.c.n + 1, doc=bindparam("doc"))
)

#: (statement, parameters): a SELECT with a repeated bind and a constant, an INSERT whose
#: columns come from the parameters, an UPDATE mixing SET values and WHERE binds.
STATEMENTS: dict[str, tuple[ClauseElement, dict[str, Any]]] = {
    "select": (_LISTING, {"owner": "u", "id": "a", "limit": 10}),
    "insert": (_ITEMS.insert(), _ROW),
    "update": (_BUMP, {"b_id": "a", "doc": {"k": 2}}),
}

#: The three paramstyles of kern's SQL backends.
URLS = {
    "sqlite (qmark)": "sqlite://",
    "postgres (pyformat)": "postgresql+psycopg://",
    "duckdb (numeric_dollar)": "duckdb:///:memory:",
}


def dialect_for(url: str) -> Dialect:
    if url.startswith("postgresql"):
        pytest.importorskip("psycopg")
    if url.startswith("duckdb"):
        pytest.importorskip("duckdb_engine")
    return create_engine(url).dialect


def what_sqlalchemy_binds(
    statement: ClauseElement, params: dict[str, Any], dialect: Dialect
) -> tuple[str, Any]:
    """SQL and parameters (before type processing) from the public construct_expanded_state."""
    keys = list(params) if isinstance(statement, sqlalchemy.Insert | sqlalchemy.Update) else None
    compiled: Any = statement.compile(dialect=dialect, column_keys=keys)
    state = compiled.construct_expanded_state(params)
    if state.positiontup is not None:
        return state.statement, state.positional_parameters
    return state.statement, dict(state.parameters)


@pytest.mark.parametrize("url", URLS.values(), ids=list(URLS))
@pytest.mark.parametrize("kind", STATEMENTS)
def test_prepared_binds_as_sqlalchemy_does(url: str, kind: str) -> None:
    dialect = dialect_for(url)
    statement, params = STATEMENTS[kind]
    compiled: Any = statement.compile(dialect=dialect, column_keys=list(params))
    names = getattr(compiled, "bind_names", None)
    assert isinstance(names, dict) and all(
        isinstance(b, BindParameter) and isinstance(n, str) for b, n in names.items()
    ), changed(
        "SQLCompiler.bind_names",
        f"no longer a dict of BindParameter to placeholder name (got {names!r:.200})",
        "kern.db.sql.prepared.Prepared._compile, to know which placeholder is which parameter",
        "Find where the compiler now keeps that mapping and read it there",
    )
    if dialect.positional:
        order = getattr(compiled, "positiontup", None)
        assert isinstance(order, list | tuple) and set(order) <= set(names.values()), changed(
            "SQLCompiler.positiontup",
            f"no longer the placeholder names in order (got {order!r:.200})",
            "kern.db.sql.prepared.Prepared._compile, to order positional parameters",
            "Find where the compiler now keeps that order and read it there",
        )
    try:
        form = Prepared(statement, dialect).form(params)
    except SqlAlchemyChanged as exc:
        pytest.fail(str(exc))
    # Type processing is public API (TypeEngine.bind_processor), and checked for real in the
    # next test: compare which value goes to which placeholder.
    plain = replace(form, slots=tuple((name, None, fixed) for name, _, fixed in form.slots))
    ours = (form.sql, plain.bind(params))
    theirs = what_sqlalchemy_binds(statement, params, dialect)
    assert ours == theirs, changed(
        "SQLCompiler.bind_names / positiontup",
        f"Prepared would bind {ours!r}; SQLAlchemy binds {theirs!r}",
        "kern.db.sql.prepared.Prepared._compile (every SQL backend's statements)",
        "Make _compile bind as construct_expanded_state() does",
    )


@pytest.mark.parametrize(
    "url", ["sqlite:///{dir}/t.db", "duckdb:///{dir}/t.duckdb"], ids=["sqlite", "duckdb"]
)
def test_prepared_runs_as_connection_execute(url: str, tmp_path: Path) -> None:
    """The same statements, run for real both ways: the same SQL, parameters and rows."""
    if url.startswith("duckdb"):
        pytest.importorskip("duckdb_engine")
    engine = create_engine(url.format(dir=tmp_path))
    try:
        _META.create_all(engine)
        with listening(engine, "before_cursor_execute") as calls, engine.begin() as conn:
            for kind in ("insert", "update"):
                statement, params = STATEMENTS[kind]
                conn.execute(statement, params)
                form = Prepared(statement, engine.dialect).form(params)
                sent = calls.pop()[2:4]
                assert sent == (form.sql, form.bind(params)), changed(
                    "SQLCompiler.bind_names / positiontup",
                    f"Connection.execute sent {sent!r}, Prepared would send "
                    f"{(form.sql, form.bind(params))!r}",
                    "kern.db.sql.prepared.Prepared._compile (every SQL backend's statements)",
                    "Make _compile bind as Connection.execute does",
                )
            select_, params = STATEMENTS["select"]
            expected = [dict(row) for row in conn.execute(select_, params).mappings()]
        raw = engine.raw_connection()
        try:
            link = Link(raw.dbapi_connection, engine.dialect)
            rows = link.all(Prepared(select_, engine.dialect), params)
        finally:
            raw.close()
    finally:
        engine.dispose()
    assert rows == expected and rows[0]["doc"] == {"k": 2}, changed(
        "type processors",
        f"Link read {rows!r}, Connection.execute {expected!r}",
        "kern.db.sql.prepared.Form.row",
        "Read result values as SQLAlchemy's CursorResult does",
    )


def test_a_disagreement_is_refused_loudly() -> None:
    """The check in Prepared._compile names the internal instead of binding wrongly."""
    dialect = dialect_for("sqlite://")
    compiled: Any = STATEMENTS["select"][0].compile(dialect=dialect)
    by_name = {name: bind for bind, name in compiled.bind_names.items()}
    names = list(compiled.positiontup)
    prepared._check_binding(compiled, names, by_name)  # as read: agrees
    with pytest.raises(SqlAlchemyChanged, match=r"bind_names / positiontup.*test_sqlalchemy"):
        prepared._check_binding(compiled, names[::-1], by_name)  # as if the order had moved


# -- events: Engine / Connection / Dialect ``_has_events`` ---------------------------------
HAS_EVENTS = changed(
    "the _has_events flags (Engine, Connection class, Dialect) or Dialect.dispatch",
    "{what}",
    "kern.db.sql.prepared.has_statement_listeners, called by SqlDb._link on every operation "
    "to choose between the DBAPI cursor and Connection.exec_driver_sql",
    "Find what SQLAlchemy now checks before calling statement listeners and check the same",
)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path}/e.db")
    yield engine
    engine.dispose()


@contextmanager
def listening(target: Any, identifier: str) -> Iterator[list[tuple[Any, ...]]]:
    """Listen to ``identifier`` on ``target`` for the block; the calls' arguments."""
    calls: list[tuple[Any, ...]] = []

    def listener(*args: Any) -> None:
        calls.append(args)

    event.listen(target, identifier, listener)
    try:
        yield calls
    finally:
        event.remove(target, identifier, listener)


def run_one(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1").close()


def test_an_engine_nobody_listens_to_takes_the_fast_path(engine: Engine) -> None:
    flags = {
        "Engine._has_events": getattr(engine, "_has_events", "gone"),
        "Connection._has_events (2.0.56+)": getattr(Connection, "_has_events", False),
        "Dialect._has_events": getattr(engine.dialect, "_has_events", "gone"),
    }
    assert all(flag is False for flag in flags.values()), HAS_EVENTS.format(
        what=f"with no listener the flags read {flags}, so every kern statement now runs "
        "through Connection.exec_driver_sql: correct, but about 3x slower per read"
    )
    assert has_statement_listeners(engine) is False


@pytest.mark.parametrize(
    "identifier",
    [
        "before_cursor_execute",
        "after_cursor_execute",
        "before_execute",
        "handle_error",
        "do_execute",
        "do_execute_no_params",
        "do_executemany",
        "do_setinputsizes",
    ],
)
def test_a_statement_listener_takes_the_observed_path(engine: Engine, identifier: str) -> None:
    with listening(engine, identifier):
        assert has_statement_listeners(engine), HAS_EVENTS.format(
            what=f"a {identifier!r} listener on the engine no longer sets a flag kern reads, "
            "so kern's statements would bypass it"
        )
        assert has_statement_listeners(engine.execution_options(x=1)), HAS_EVENTS.format(
            what="an engine made by execution_options() does not see its parent's listeners"
        )


def test_a_do_connect_listener_keeps_the_fast_path(engine: Engine) -> None:
    with listening(engine, "do_connect") as calls:
        run_one(engine)
        assert calls and engine.dialect._has_events, HAS_EVENTS.format(
            what="do_connect no longer sets the dialect's flag"
        )
        assert not has_statement_listeners(engine), HAS_EVENTS.format(
            what="Dialect.dispatch.<hook> no longer tells statement hooks from do_connect"
        )


def test_a_connection_class_listener_is_honoured(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Since 2.0.56 SQLAlchemy calls listeners on the Connection class for every engine's
    connections (before, it did not): then kern's statements must go the observed way."""
    monkeypatch.setattr(Connection, "_has_events", False, raising=False)  # undone after
    with listening(Connection, "before_cursor_execute") as calls:
        run_one(engine)
        assert has_statement_listeners(engine) or not calls, HAS_EVENTS.format(
            what="a listener on the Connection class is called, but sets no flag kern reads"
        )


def test_exec_driver_sql_fires_statement_events(engine: Engine) -> None:
    """The observed path (``Link`` with ``observed``) relies on this."""
    with listening(engine, "before_cursor_execute") as calls:
        run_one(engine)
    assert calls, (
        f"SQLAlchemy {VERSION}: Connection.exec_driver_sql no longer fires before_cursor_execute;"
        " kern.db.sql.prepared.Link's observed path would hide statements from listeners."
    )


# -- errors: DBAPIError.instance ---------------------------------------------------------
def test_driver_errors_wrap_as_sqlalchemy_does(engine: Engine) -> None:
    _META.create_all(engine)
    raw = engine.raw_connection()
    link = Link(raw.dbapi_connection, engine.dialect)
    insert = Prepared(_ITEMS.insert(), engine.dialect)
    try:
        link.execute(insert, _ROW)
        with pytest.raises(DBAPIError) as caught:
            link.execute(insert, _ROW)
    finally:
        raw.close()
    error = caught.value
    assert isinstance(error, IntegrityError) and isinstance(error.orig, sqlite3.IntegrityError), (
        changed(
            "DBAPIError.instance",
            f"a driver IntegrityError came out as {error!r}",
            "kern.db.sql.prepared.Link.wrap (duplicate keys, version conflicts, fault checks)",
            "Wrap driver errors the way Connection._handle_dbapi_exception now does",
        )
    )
    assert error.statement and error.connection_invalidated is False


def test_dbapi_error_instance_keeps_its_arguments() -> None:
    dialect = dialect_for("sqlite://")
    orig = sqlite3.OperationalError("disk I/O error")
    error = DBAPIError.instance(
        "SELECT 1", (), orig, sqlite3.Error, connection_invalidated=True, dialect=dialect
    )
    assert isinstance(error, sqlalchemy.exc.OperationalError) and error.orig is orig, changed(
        "DBAPIError.instance",
        f"it returned {error!r}",
        "kern.db.sql.prepared.Link.wrap",
        "Wrap driver errors the way Connection._handle_dbapi_exception now does",
    )
    assert error.connection_invalidated is True, changed(
        "DBAPIError.instance(connection_invalidated=...)",
        "the flag is lost",
        "SqlDb._lost (a lost connection must not go back to the pool)",
        "Pass the flag the way SQLAlchemy now does",
    )


# -- greenlet: sqlalchemy.util.greenlet_spawn ---------------------------------------------
GREENLET = (
    "kern.db.postgres.aio (AsyncPostgresDb: every method runs the sync code on the async "
    "engine's sync_engine inside this bridge)"
)


def greenlet_spawn() -> Callable[..., Any]:
    try:
        from sqlalchemy.util import greenlet_spawn
    except ImportError as exc:
        pytest.fail(
            changed(
                "sqlalchemy.util.greenlet_spawn",
                f"it cannot be imported ({exc})",
                GREENLET,
                "Import it from where SQLAlchemy now keeps it (sqlalchemy.util.concurrency), or "
                "rewrite the bridge on AsyncConnection.run_sync",
            )
        )
    return greenlet_spawn


async def test_greenlet_spawn_runs_sync_code_on_an_async_engine(tmp_path: Path) -> None:
    pytest.importorskip("aiosqlite")
    from sqlalchemy.ext.asyncio import create_async_engine

    spawn = greenlet_spawn()
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/g.db")

    def sync_work(a: int, *, b: int) -> int:
        with engine.sync_engine.connect() as conn:  # awaits aiosqlite underneath
            return int(conn.exec_driver_sql(f"SELECT {a} + {b}").scalar_one())

    def fails() -> None:
        raise KeyError("kept")

    try:
        results = await asyncio.gather(spawn(sync_work, 1, b=2), spawn(sync_work, 3, b=4))
        assert results == [3, 7], changed(
            "sqlalchemy.util.greenlet_spawn",
            f"greenlet_spawn(fn, *args, **kwargs) returned {results!r}, not fn's results",
            GREENLET,
            "Adapt the calls in aio.py to the new signature",
        )
        with pytest.raises(KeyError, match="kept"):
            await spawn(fails)
    finally:
        await engine.dispose()


# -- tests only: pool attributes read by kern-postgres's tests ------------------------------
def test_pool_attributes_read_by_the_postgres_tests(tmp_path: Path) -> None:
    engine = create_engine(
        f"sqlite:///{tmp_path}/p.db", poolclass=QueuePool, pool_pre_ping=True, max_overflow=1
    )
    try:
        pool: Any = engine.pool
        found = (getattr(pool, "_pre_ping", None), getattr(pool, "_max_overflow", None))
    finally:
        engine.dispose()
    assert found == (True, 1), (
        f"SQLAlchemy {VERSION}: QueuePool._pre_ping / _max_overflow are now {found}; "
        "plugins/kern-postgres/tests/test_postgres_backend.py reads them to check the engines "
        "kern builds. Update those assertions (nothing at run time uses them)."
    )
