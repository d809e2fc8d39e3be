"""Several hosts, lost connections and failover (``kern.db.postgres.failover``).

* URLs naming several hosts: parsed, given to libpq, shown without the password.
* Lost connections, on a cluster of the module's own (``restartable_server``): a connection
  that dies before its ``BEGIN`` is replaced and the operation runs once; ``commit_turn``
  lost at or before ``COMMIT`` is retried and stored once; other writes lost after ``BEGIN``
  are not repeated and raise ``StorageUnavailableError``.
* Failover (``replicated``: a primary and a synchronous streaming standby on loopback): agent
  turns run while the primary is stopped at once and the standby promoted. At most the turn
  in flight fails, with ``StorageUnavailableError``; its retry with the same ``run_id`` and
  every later turn succeed on the promoted standby; every run whose turn returned is there
  exactly once, with seqs 1..n.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine

import kern.db
from kern.agent import Agent
from kern.db.door import ContractMeta
from kern.db.postgres import AsyncPostgresDb, PostgresDb
from kern.db.postgres.failover import POLICIES
from kern.db.sql.prepared import Link
from kern.errors import ConfigurationError, StorageUnavailableError
from kern.models.openai import OpenAIChat
from kern.records import Message, Run, Session
from kern.run import RunOutput

SEVERAL = (
    "postgresql://kern:s3cret@db1.invalid:5432,db2.invalid:5433/app?target_session_attrs=read-write"
)


def turn(session_id: str, i: int) -> Run:
    return Run(
        session_id=session_id,
        input=f"question {i}",
        messages=[Message(role="user", content=f"question {i}")],
    )


# -- URLs with several hosts -------------------------------------------------------------------
def test_a_url_with_several_hosts_reaches_libpq_as_a_host_list() -> None:
    db = PostgresDb(db_url=SEVERAL)
    adb = AsyncPostgresDb(db_url=SEVERAL.replace("postgresql", "postgresql+psycopg_async"))
    try:
        for engine in (db.engine, adb.engine.sync_engine):
            _, args = engine.dialect.create_connect_args(engine.url)
            assert (args["host"], args["port"]) == ("db1.invalid,db2.invalid", "5432,5433")
            assert args["target_session_attrs"] == "read-write"
            assert (args["user"], args["password"], args["dbname"]) == ("kern", "s3cret", "app")
        shown = "kern:***@db1.invalid:5432,db2.invalid:5433/app?target_session_attrs=read-write"
        assert db.storage_target() == f"postgresql+psycopg://{shown}"
        assert adb.storage_target() == f"postgresql+psycopg_async://{shown}"
        assert "s3cret" not in repr(db) and "s3cret" not in repr(adb)
        assert shown in repr(db)
    finally:
        db.close()
        asyncio.run(adb.close())


@pytest.mark.parametrize(
    ("url", "hosts", "ports", "target"),
    [
        ("postgres://u@h1,h2/db", "h1,h2", None, "postgresql+psycopg://u@h1,h2/db"),
        (
            "postgresql://u@[::1]:5432,h2/db?sslmode=require",
            "::1,h2",
            "5432,",
            "postgresql+psycopg://u@[::1]:5432,h2/db?sslmode=require",
        ),
        (  # SQLAlchemy's own spelling is accepted, and shown as libpq writes it
            "postgresql+psycopg://u:p@/db?host=h1:5001&host=h2:5002",
            "h1,h2",
            "5001,5002",
            "postgresql+psycopg://u:***@h1:5001,h2:5002/db",
        ),
    ],
)
def test_host_list_spellings(url: str, hosts: str, ports: str | None, target: str) -> None:
    db = PostgresDb(db_url=url)
    try:
        _, args = db.engine.dialect.create_connect_args(db.engine.url)
        assert args["host"] == hosts
        if ports is not None:
            assert args["port"] == ports
        assert db.storage_target() == target
    finally:
        db.close()


def test_kern_connect_takes_a_url_with_several_hosts() -> None:
    db = kern.db.connect(SEVERAL)
    assert type(db) is PostgresDb
    db.close()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://u@h1:5432,:5433/db", "every host needs a name"),
        ("postgresql://u@h1,h2/db?host=h3", "give them in one place"),
        ("postgresql://u@h1:port,h2/db", "could not read the host list"),
        ("postgresql://u@h1:port/db", "could not read db_url"),
    ],
)
def test_unreadable_host_lists_are_refused(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        PostgresDb(db_url=url)


def test_every_contract_method_that_uses_a_connection_has_a_retry_policy() -> None:
    """A contract method added later must say whether it may run again after a lost
    connection (kern.db.postgres.failover.POLICIES)."""
    without = {"create_tables", "close", "storage_report", "schema_versions"}
    assert set(ContractMeta.checks) - without <= set(POLICIES)
    for name, policy in POLICIES.items():
        assert getattr(PostgresDb, name).__kern_retry__ == policy


# -- lost connections ----------------------------------------------------------------------------
def own_url(server: Any) -> str:
    return server.url.set(drivername="postgresql", database="kern_restart").render_as_string(
        hide_password=False
    )


def terminate(server: Any, pid: int) -> None:
    """End one backend, waiting until it is gone (what a crash or failover does to it)."""
    with psycopg.connect(own_url(server), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))


def stored(server: Any, schema: str, session_id: str = "s") -> list[tuple[str, int]]:
    with psycopg.connect(own_url(server), autocommit=True) as conn:
        rows = conn.execute(
            f"SELECT run_id, seq FROM {schema}.kern_runs WHERE session_id = %s ORDER BY seq",
            (session_id,),
        ).fetchall()
    return [(str(run_id), int(seq)) for run_id, seq in rows]


def session_version(server: Any, schema: str, session_id: str = "s") -> int:
    with psycopg.connect(own_url(server), autocommit=True) as conn:
        row = conn.execute(
            f"SELECT version FROM {schema}.kern_sessions WHERE session_id = %s", (session_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture(params=["kern's engine", "the user's engine"])
def own_db(
    request: pytest.FixtureRequest, restartable_server: Any, fresh_schema: str
) -> Iterator[PostgresDb]:
    """A PostgresDb on the module's cluster, on an engine kern built or one of the user's."""
    schema = fresh_schema
    if request.param == "kern's engine":
        db = PostgresDb(db_url=own_url(restartable_server), schema=schema)
    else:
        url = own_url(restartable_server).replace("postgresql", "postgresql+psycopg")
        db = PostgresDb(engine=create_engine(url), schema=schema)
    try:
        yield db
    finally:
        db.close()
        if request.param == "the user's engine":
            db.engine.dispose()


def kill_after_checkout(db: PostgresDb, server: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """End the backend of the next connection ``db`` checks out, after the checkout (so
    the connection's first statement finds it dead); the list gets its pid."""
    prepare = db.dialect.prepare_connection
    killed: list[int] = []

    def prepare_then_kill(pooled: Any) -> Callable[[], None] | None:
        undo = prepare(pooled)
        if not killed:
            killed.append(pooled.dbapi_connection.info.backend_pid)
            terminate(server, killed[0])
        return undo

    monkeypatch.setattr(db.dialect, "prepare_connection", prepare_then_kill)
    return killed


def test_a_write_whose_begin_finds_the_connection_dead_runs_once_on_a_new_one(
    own_db: PostgresDb, restartable_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = own_db.append_run(turn("s", 0))
    killed = kill_after_checkout(own_db, restartable_server, monkeypatch)
    second = own_db.append_run(turn("s", 1))
    assert killed and second.seq == 2
    assert stored(restartable_server, own_db.schema or "") == [
        (first.run_id, 1),
        (second.run_id, 2),
    ]


def test_a_read_on_a_dead_connection_runs_again_on_a_new_one(
    own_db: PostgresDb, restartable_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = own_db.append_run(turn("s", 0))
    killed = kill_after_checkout(own_db, restartable_server, monkeypatch)
    assert own_db.get_last_runs("s", 10) == [first]
    assert killed


def lose_at_commit(server: Any, monkeypatch: pytest.MonkeyPatch, *, committed: bool) -> list[int]:
    """Lose the connection of the next write at its COMMIT: after the server committed
    (``committed``: the reply is what is lost) or before. The list gets the pid."""
    commit = Link.commit
    lost: list[int] = []

    def commit_and_lose(link: Link) -> None:
        if lost:
            return commit(link)
        lost.append(link.dbapi_connection.info.backend_pid)
        if committed:
            commit(link)
        terminate(server, lost[0])
        link.sql("SELECT 1" if committed else "COMMIT")  # the dead connection raises

    monkeypatch.setattr(Link, "commit", commit_and_lose)
    return lost


@pytest.mark.parametrize("committed", [True, False], ids=["after-commit", "before-commit"])
def test_commit_turn_lost_at_commit_is_stored_once(
    own_db: PostgresDb,
    restartable_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    committed: bool,
) -> None:
    """Retried, because commit_turn is idempotent on run_id: a turn the server committed is
    read back (its run and session returned, nothing written again), one it did not is
    written now."""
    session = own_db.upsert_session(Session(session_id="s"), expected_version=None)
    lost = lose_at_commit(restartable_server, monkeypatch, committed=committed)
    read_back: list[object] = []
    stored_turn = own_db._stored_turn

    def spy(run: Run) -> Any:
        read_back.append(stored_turn(run))
        return read_back[-1]

    monkeypatch.setattr(own_db, "_stored_turn", spy)
    changed = session.model_copy(update={"state": {"n": 1}})
    run, saved = own_db.commit_turn(turn("s", 0), changed, expected_version=1)
    monkeypatch.undo()
    assert lost
    # the retry found the turn stored and returned it, or (not committed) wrote it itself
    assert read_back == ([(run, saved)] if committed else [])
    assert (run.seq, saved.version, saved.state) == (1, 2, {"n": 1})
    schema = own_db.schema or ""
    assert stored(restartable_server, schema) == [(run.run_id, 1)]
    assert session_version(restartable_server, schema) == 2  # one write, not two
    assert own_db.get_run(run.run_id) == run


def test_other_writes_lost_after_begin_are_not_repeated(
    own_db: PostgresDb, restartable_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session write lost at COMMIT may be stored: running it again would apply it twice
    (or conflict), so the caller gets StorageUnavailableError saying so."""
    session = own_db.upsert_session(Session(session_id="s"), expected_version=None)
    lost = lose_at_commit(restartable_server, monkeypatch, committed=True)
    changed = session.model_copy(update={"state": {"n": 1}})
    with pytest.raises(StorageUnavailableError) as error:
        own_db.upsert_session(changed, expected_version=1)
    monkeypatch.undo()
    assert len(lost) == 1
    message = str(error.value)
    assert "may or may not be stored" in message and "same run_id" in message
    assert isinstance(error.value.__cause__, psycopg.OperationalError)
    assert session_version(restartable_server, own_db.schema or "") == 2  # stored, once


def lose_append(
    db: PostgresDb, server: Any, monkeypatch: pytest.MonkeyPatch, *, stored: bool
) -> list[int]:
    """Lose the connection of the next one-statement append: after the server stored the
    run (``stored``: the reply is what is lost) or before it could. The list gets the pid."""
    at_once = db._ops.append_run_at_once
    lost: list[int] = []

    def append_and_lose(link: Link, run: Run) -> Run:
        if lost:
            return at_once(link, run)
        lost.append(link.dbapi_connection.info.backend_pid)
        if stored:
            at_once(link, run)
        terminate(server, lost[0])
        link.sql("SELECT 1")  # the dead connection raises
        raise AssertionError("unreachable")

    monkeypatch.setattr(db._ops, "append_run_at_once", append_and_lose)
    return lost


@pytest.mark.parametrize("was_stored", [True, False], ids=["stored", "not-stored"])
def test_append_run_lost_in_flight_is_stored_once(
    own_db: PostgresDb,
    restartable_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    was_stored: bool,
) -> None:
    """An append is one autocommitted statement: lost in flight, it may or may not be
    stored. The retry looks the run up first: stored, it is returned; not, it is appended.
    Either way once, at the next seq."""
    first = own_db.append_run(turn("s", 0))
    lost = lose_append(own_db, restartable_server, monkeypatch, stored=was_stored)
    second = own_db.append_run(turn("s", 1))
    monkeypatch.undo()
    assert len(lost) == 1 and second.seq == 2
    assert stored(restartable_server, own_db.schema or "") == [
        (first.run_id, 1),
        (second.run_id, 2),
    ]
    assert own_db.get_run(second.run_id) == second
    with pytest.raises(ValueError, match="already stored"):
        own_db.append_run(second)  # a second append of a stored run is still refused


# -- failover: a primary stopped, its standby promoted -------------------------------------------
def spying(method: Callable[..., Any], seen: Callable[[], object]) -> Callable[..., Any]:
    def spy(*args: Any, **kwargs: Any) -> Any:
        seen()
        return method(*args, **kwargs)

    return spy


def failover_agent(db: Any, scripted: Any) -> Agent:
    model = OpenAIChat(id="pg-failover", base_url=scripted.base_url, api_key="test")
    return Agent(model=model, db=db, add_history_to_context=True)


def runs_on(cluster: Any, database: str, schema: str) -> list[tuple[str, int, str]]:
    """(run_id, seq, input) of session ``s`` as ``cluster`` has them, by seq."""
    url = cluster.url.set(database=database).render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            f"SELECT run_id, seq, input #>> '{{}}' FROM {schema}.kern_runs "
            "WHERE session_id = 's' ORDER BY seq"
        ).fetchall()
    return [(str(run_id), int(seq), str(text)) for run_id, seq, text in rows]


def assert_failed_over(
    replicated: Any, schema: str, outputs: list[RunOutput], failures: list[BaseException]
) -> None:
    """At most one turn failed, clearly; the promoted standby has every returned run once."""
    assert len(failures) <= 1, [str(f) for f in failures]
    for failure in failures:
        assert isinstance(failure, StorageUnavailableError)
        assert str(failure).startswith("the postgres database at postgresql+psycopg")
        assert "same run_id" in str(failure)
        assert isinstance(failure.__cause__, psycopg.Error)
    rows = runs_on(replicated.standby, replicated.database, schema)
    assert [seq for _, seq, _ in rows] == list(range(1, len(outputs) + 1))
    assert [run_id for run_id, _, _ in rows] == [o.run_id for o in outputs]
    assert [text for _, _, text in rows] == [f"turn {i}" for i in range(len(outputs))]
    assert [o.seq for o in outputs] == list(range(1, len(outputs) + 1))


#: Turns before the failover, turns after the promotion, and a bound if it never comes.
BEFORE, AFTER, LIMIT = 15, 10, 500


def test_sync_agent_turns_fail_over_to_the_promoted_standby(replicated: Any, scripted: Any) -> None:
    """Turns run back to back; after BEFORE of them another thread stops the primary at once
    (a turn is in flight) and promotes the standby. A failed turn is retried with its run_id
    once the standby is promoted, as the error says to. Each turn changes the session state,
    so each is stored with commit_turn (the async test's turns, with append_run)."""
    db = PostgresDb(db_url=replicated.url(), schema="sync_failover")
    agent = failover_agent(db, scripted)
    ready, promoted = threading.Event(), threading.Event()

    def fail_over() -> None:
        ready.wait(timeout=120)
        replicated.primary.halt()
        replicated.standby.promote()
        promoted.set()

    switch = threading.Thread(target=fail_over)
    switch.start()
    outputs: list[RunOutput] = []
    failures: list[BaseException] = []
    retry: str | None = None
    after = 0
    try:
        while after < AFTER and len(outputs) < LIMIT:
            try:
                n = len(outputs)
                output = agent.run(
                    f"turn {n}", session_id="s", session_state={"n": n}, run_id=retry
                )
            except StorageUnavailableError as error:
                failures.append(error)
                if len(failures) > 1 or not promoted.wait(timeout=120):
                    break
                retry = error.run_id  # None if it failed before its commit: nothing stored
                continue
            outputs.append(output)
            retry = None
            if len(outputs) == BEFORE:
                ready.set()
            after += promoted.is_set()
    finally:
        ready.set()
        switch.join(timeout=120)
        db.close()
    assert promoted.is_set()
    assert_failed_over(replicated, "sync_failover", outputs, failures)


async def test_async_agent_turns_fail_over_to_the_promoted_standby(
    replicated: Any, scripted: Any
) -> None:
    db = AsyncPostgresDb(db_url=replicated.url("postgresql+psycopg_async"), schema="async_failover")
    agent = failover_agent(db, scripted)
    ready, promoted = asyncio.Event(), asyncio.Event()

    async def fail_over() -> None:
        await ready.wait()
        await asyncio.to_thread(replicated.primary.halt)
        await asyncio.to_thread(replicated.standby.promote)
        promoted.set()

    switch = asyncio.create_task(fail_over())
    outputs: list[RunOutput] = []
    failures: list[BaseException] = []
    retry: str | None = None
    after = 0
    try:
        while after < AFTER and len(outputs) < LIMIT:
            try:
                output = await agent.arun(f"turn {len(outputs)}", session_id="s", run_id=retry)
            except StorageUnavailableError as error:
                failures.append(error)
                if len(failures) > 1:
                    break
                await asyncio.wait_for(promoted.wait(), timeout=120)
                retry = error.run_id
                continue
            outputs.append(output)
            retry = None
            if len(outputs) == BEFORE:
                ready.set()
                await asyncio.sleep(0)  # let the switch start: the next turn is in flight
            after += promoted.is_set()
    finally:
        ready.set()
        await asyncio.wait_for(switch, timeout=120)
        await db.close()
    assert promoted.is_set()
    assert_failed_over(replicated, "async_failover", outputs, failures)


@pytest.mark.parametrize("write", ["append_run", "commit_turn"])
def test_the_turn_in_flight_fails_clearly_and_its_retry_is_stored_once(
    replicated: Any, scripted: Any, monkeypatch: pytest.MonkeyPatch, write: str
) -> None:
    """The primary stops inside the write of a turn. A turn that leaves the state as it was
    is an append_run (one statement, about to be sent), one that changes it a commit_turn
    (after its BEGIN); each is repeated at once, idempotent on run_id, when no host takes
    writes yet. Either way the turn fails with
    StorageUnavailableError naming its run_id; once the standby is promoted, its retry with
    that run_id is stored once and the next turn follows it."""
    db = PostgresDb(db_url=replicated.url(), schema="in_flight")
    state: Callable[[int], dict[str, int] | None] = (
        (lambda n: {"n": n}) if write == "commit_turn" else (lambda n: None)
    )
    writes: list[str] = []
    monkeypatch.setattr(db, write, spying(getattr(db, write), lambda: writes.append(write)))
    agent = failover_agent(db, scripted)
    # Where the write is under way: after commit_turn's BEGIN; as append_run's one
    # statement is about to be sent.
    owner, hook = (
        (db.dialect, "begin_write")
        if write == "commit_turn"
        else (
            db._ops,
            "append_run_at_once",
        )
    )
    original = getattr(owner, hook)
    halted: list[bool] = []

    def halt_in_flight(link: Any, *args: Any) -> Any:
        if write == "commit_turn":
            original(link)
        if not halted:
            halted.append(True)
            replicated.primary.halt()
        return None if write == "commit_turn" else original(link, *args)

    try:
        outputs = [agent.run("turn 0", session_id="s", session_state=state(0))]
        monkeypatch.setattr(owner, hook, halt_in_flight)
        with pytest.raises(StorageUnavailableError) as error:
            agent.run("turn 1", session_id="s", session_state=state(1))
        monkeypatch.setattr(owner, hook, original)
        assert halted and error.value.run_id is not None
        replicated.standby.promote()
        retried = agent.run(
            "turn 1", session_id="s", session_state=state(1), run_id=error.value.run_id
        )
        outputs += [retried, agent.run("turn 2", session_id="s", session_state=state(2))]
    finally:
        db.close()
    assert writes.count(write) >= 3  # the turns were stored the way this case is about
    assert outputs[1].run_id == error.value.run_id
    assert_failed_over(replicated, "in_flight", outputs, [error.value])
