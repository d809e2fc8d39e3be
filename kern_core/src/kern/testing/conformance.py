"""The storage-backend conformance suite: every kern backend runs it, first-party or not.

It checks a backend against the contract of ``kern.db.base`` (``BaseDb`` / ``AsyncBaseDb``):
compare-and-set sessions, atomic ``seq`` under concurrent writers from several processes,
history reads whose cost does not grow with the session, exact record round-trips, scoped
search, and a complete ``forget_user``; and, from ``kern.testing.isolation``, the checks of
ids and stored text at the contract's door (the injection table), ids that look like syntax,
user isolation and a ``forget_user`` that leaves no raw trace. It needs pytest and
pytest-asyncio.

Subclass contract
-----------------
A plugin's test module subclasses ``BackendConformance`` (for its sync class) and/or
``AsyncBackendConformance`` (for its async class) under a name pytest collects (``Test*``),
and provides three methods:

``db_factory(self, tmp_path) -> tuple[str, dict]``
    A picklable recipe: a ``"module:Class"`` reference and constructor keyword arguments.
    The suite builds the db in-process from it (the ``db`` fixture) and in child processes
    (the concurrency cases), so it must name something every process can reach: a file
    under ``tmp_path``, or a server URL. Do not call ``create_tables``: backends do that
    themselves before first use, and the suite checks they do. A database shared by every
    test works (the suite uses fresh ids), but a fresh one per test is easier to debug.

``count_reads(self, db, fn) -> int``
    A backend-specific measure of the work done by the read that ``fn()`` performs (SQLite:
    VM instructions; Postgres: buffers or rows of ``EXPLAIN (ANALYZE, BUFFERS)`` or the
    ``pg_stat`` counters; Mongo: ``totalDocsExamined``; Redis: ``INFO commandstats``). It
    must call ``fn`` exactly once. The suite compares two such measures (last 3 runs of a
    10,000-run session and of a 10-run one), so any measure that grows with rows examined
    will do.
    In the async suite it is a coroutine and ``fn`` an async callable: ``await fn()``.

``raw_scan(self, db) -> list[str]``
    The raw text of everything ``db`` stores, read with the driver, not through kern: one
    ``str`` per row of every table whose name starts with the db's table prefix (full-text
    and shadow tables included: SQLite's FTS5 ``*_fts_data``...), per document of each of
    its collections, or per key under its key prefix together with its value(s) (strings,
    hashes, sets, sorted sets, lists). Start each entry with where it was found (table,
    collection or key) so that failures say where. ``test_forget_user_leaves_no_raw_trace``
    stores data under a user id holding a unique word, calls ``forget_user`` and asserts that
    neither the id nor the word is anywhere in the scan; a test class without ``raw_scan``
    fails that case. In the async suite it may also be a coroutine.

Example: kern's own SQLite plugin (``plugins/kern-sqlite/tests/test_conformance.py``, where
``vm_instructions`` counts SQLite VM steps with a progress handler and ``sqlite_rows`` reads
every row of the prefix's tables)::

    import pytest

    pytest.register_assert_rewrite(  # readable failures
        "kern.testing.conformance", "kern.testing.isolation"
    )

    from kern.testing.conformance import AsyncBackendConformance, BackendConformance


    class TestSqliteConformance(BackendConformance):
        def db_factory(self, tmp_path):
            return "kern.db.sqlite:SqliteDb", {"db_file": str(tmp_path / "kern.db")}

        def count_reads(self, db, fn):
            with vm_instructions(db.engine) as count:
                fn()
            return count[0]

        def raw_scan(self, db):
            return sqlite_rows(db.engine, db.table_prefix)


    class TestAsyncSqliteConformance(AsyncBackendConformance):
        def db_factory(self, tmp_path):
            return "kern.db.sqlite:AsyncSqliteDb", {"db_file": str(tmp_path / "kern.db")}

        async def count_reads(self, db, fn):
            with vm_instructions(db.sync_db.engine) as count:
                await fn()
            return count[0]

        def raw_scan(self, db):
            return sqlite_rows(db.engine, db.table_prefix)

Fixtures: ``recipe`` (what ``db_factory`` returned), ``db`` (the db built from it, closed
after the test; an async fixture in the async suite) and ``store`` (the db as the scenarios
see it, below). ``AsyncBackendConformance.seed_concurrency`` (default 1) sets how many
appends the 10,000-run seed keeps in flight; raise it for a networked backend.

How one scenario serves both suites
-----------------------------------
Each behaviour is written once, as an ``async def test_*`` method of ``_Scenarios`` (or of
a topic mixin it inherits: ``kern.testing.isolation``, ``kern.testing.turns``) that calls the
contract through ``store`` and awaits the result. In the async suite ``store`` is the async
db itself and pytest-asyncio runs the test. In the sync suite ``store`` is the sync db
behind ``_AwaitableDb``, which calls each method directly and hands back an already-finished
awaitable, and each test is a plain function that drives the scenario to its end without an
event loop: the sync db is called exactly as user code calls it.

What the suite holds every backend to, beyond the docstrings of ``kern.db.base``: records
come back equal to what was stored (``==`` on the pydantic records, JSON types kept exactly,
timestamps to the microsecond and timezone-aware); searches read query text as data, never
as syntax; a sync db object may be used from several threads at once (``arun`` on a sync
db offloads to threads). The concurrency cases run in a pool of ``PROCESSES`` "spawn"
worker processes started once per test session (a fresh interpreter takes seconds to
import a driver); each task builds its own db from the recipe in each process.

To skip a scenario a backend cannot support yet, override it in the subclass with a
``pytest.mark.skip`` (or ``xfail``) and a reason.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import multiprocessing
import pickle
import threading
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytest_asyncio

from kern.db.base import AsyncBaseDb, BaseDb
from kern.errors import RunFinishedError, RunNotFoundError, VersionConflictError
from kern.plugins import resolve
from kern.records import (
    Learning,
    LearningStatus,
    Memory,
    Message,
    Run,
    RunStatus,
    Session,
    SessionType,
    ToolCall,
)
from kern.testing.isolation import IsolationScenarios
from kern.testing.turns import TurnScenarios

__all__ = ["AsyncBackendConformance", "BackendConformance", "Recipe", "build_db"]

#: ``("module:Class", constructor kwargs)``: what ``db_factory`` returns.
Recipe = tuple[str, dict[str, Any]]

#: Processes and appends of the concurrency acceptance case.
PROCESSES = 4
APPENDS_PER_PROCESS = 50
#: Runs in the long session of the history-cost acceptance case.
LONG_SESSION_RUNS = 10_000
#: How far the history-cost measures may differ (a fraction of the short session's cost).
READ_COST_TOLERANCE = 0.05
#: Seconds a child process may take before the suite gives up on it (a hang guard only).
CHILD_TIMEOUT = 300.0

# Odd search text: FTS operators, quotes, wildcards, LIKE and regex metacharacters.
ODD_QUERIES = (
    'what\'s "up" AND (x',
    '"',
    "'",
    "*",
    "-",
    "NEAR(",
    "a OR",
    "col:value",
    "^start",
    "100%_done\\",
    "(((",
    "   ",
    "",
)


def build_db(recipe: Recipe) -> Any:
    """Build a db from a ``("module:Class", kwargs)`` recipe."""
    target, kwargs = recipe
    return resolve(target)(**kwargs)


# -- helpers ----------------------------------------------------------------------------


def _uid(prefix: str) -> str:
    """A fresh id, so that scenarios never see each other's rows in a shared database."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _tick() -> None:
    """Let the clock move past every backend's timestamp resolution (Mongo keeps ms).

    Used only between writes whose ``updated_at`` order a scenario asserts; never timed.
    """
    time.sleep(0.005)


def _json(value: object) -> str:
    """Type-strict JSON text: tells ``True`` from ``1`` and ``2.0`` from ``2``."""
    return json.dumps(value, sort_keys=True)


def _seqs(runs: Sequence[Run]) -> list[int | None]:
    return [run.seq for run in runs]


def _ids(records: Sequence[Any], attr: str) -> list[str]:
    return [getattr(record, attr) for record in records]


def _turn(session_id: str, i: int, user_id: str | None = None, **fields: Any) -> Run:
    """A typical completed agent turn: the user's question and the model's answer."""
    return Run(
        session_id=session_id,
        user_id=user_id,
        input=f"question {i}",
        messages=[
            Message(role="user", content=f"question {i}"),
            Message(role="assistant", content=f"answer {i}"),
        ],
        output=f"answer {i}",
        **fields,
    )


class _Ready:
    """An awaitable whose result is already there: awaiting it never suspends."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Iterator[Any]:
        return self.value
        yield  # pragma: no cover - makes this a generator


class _AwaitableDb:
    """A sync db seen through awaitable calls: each method runs at once, in this thread,
    and its result is handed back ready to ``await``. Exceptions raise at the call."""

    def __init__(self, db: BaseDb) -> None:
        self.wrapped = db

    def __getattr__(self, name: str) -> Callable[..., _Ready]:
        method = getattr(self.wrapped, name)

        def call(*args: Any, **kwargs: Any) -> _Ready:
            return _Ready(method(*args, **kwargs))

        return call


def _drive(awaitable: Awaitable[Any]) -> Any:
    """Run an awaitable that never suspends to its end, without an event loop."""
    steps = awaitable.__await__()
    try:
        yielded = steps.send(None)
    except StopIteration as done:
        return done.value
    close = getattr(steps, "close", None)
    if close is not None:
        close()
    raise TypeError(
        f"a sync-suite scenario awaited something that suspends ({yielded!r}); sync scenarios "
        "may only await the db's results"
    )


def _sync_test(scenario: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    """A plain test function that drives ``scenario`` (with the same fixtures and marks)."""

    def test(self: Any, *args: Any, **kwargs: Any) -> None:
        _drive(scenario(self, *args, **kwargs))

    for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
        setattr(test, attr, getattr(scenario, attr))
    test.__signature__ = inspect.signature(scenario)  # type: ignore[attr-defined]
    if hasattr(scenario, "pytestmark"):
        test.pytestmark = list(scenario.pytestmark)  # type: ignore[attr-defined]
    return test


def _check_recipe(recipe: object) -> Recipe:
    if not (
        isinstance(recipe, tuple)
        and len(recipe) == 2
        and isinstance(recipe[0], str)
        and ":" in recipe[0]
        and isinstance(recipe[1], dict)
    ):
        raise TypeError(f"db_factory must return ('module:Class', {{kwargs}}), not {recipe!r}")
    try:
        pickle.dumps(recipe)
    except Exception as exc:
        raise TypeError(
            f"db_factory's recipe must be picklable (child processes build from it): {exc}"
        ) from exc
    return recipe


# -- child processes ----------------------------------------------------------------------
# Each child builds its own db from the recipe, waits at a barrier so that all of them
# start together, does its part and returns its payload (see ``_run_in_processes``).


def _child_append(db: BaseDb, index: int, params: dict[str, Any]) -> list[tuple[str, int]]:
    sid, n = params["session_id"], params["n"]
    stored = [db.append_run(_turn(sid, i, params["user_id"])) for i in range(n)]
    return [(run.run_id, run.seq) for run in stored]  # type: ignore[misc]


async def _child_append_async(
    db: AsyncBaseDb, index: int, params: dict[str, Any]
) -> list[tuple[str, int]]:
    sid, n = params["session_id"], params["n"]
    stored = await asyncio.gather(
        *(db.append_run(_turn(sid, i, params["user_id"])) for i in range(n))
    )
    return [(run.run_id, run.seq) for run in stored]  # type: ignore[misc]


def _child_create(db: BaseDb, index: int, params: dict[str, Any]) -> list[str]:
    outcomes = []
    for attempt in range(params["attempts"]):
        writer = f"{index}-{attempt}"
        session = Session(session_id=params["session_id"], state={"writer": writer})
        try:
            db.upsert_session(session, expected_version=None)
            outcomes.append(f"won:{writer}")
        except VersionConflictError:
            outcomes.append("conflict")
    return outcomes


async def _child_create_async(db: AsyncBaseDb, index: int, params: dict[str, Any]) -> list[str]:
    async def attempt(k: int) -> str:
        writer = f"{index}-{k}"
        session = Session(session_id=params["session_id"], state={"writer": writer})
        try:
            await db.upsert_session(session, expected_version=None)
        except VersionConflictError:
            return "conflict"
        return f"won:{writer}"

    return list(await asyncio.gather(*(attempt(k) for k in range(params["attempts"]))))


def _increment(session: Session, mark: str) -> Session:
    state = dict(session.state)
    state["count"] = state["count"] + 1  # type: ignore[operator]
    state["log"] = [*state["log"], mark]  # type: ignore[misc]
    return session.model_copy(update={"state": state})


def _child_increment(db: BaseDb, index: int, params: dict[str, Any]) -> int:
    conflicts = 0
    for k in range(params["n"]):
        while True:  # read, modify, compare-and-set; on conflict read again
            current = db.get_session(params["session_id"])
            assert current is not None
            try:
                db.upsert_session(
                    _increment(current, f"{index}-{k}"), expected_version=current.version
                )
                break
            except VersionConflictError:
                conflicts += 1
    return conflicts


async def _child_increment_async(db: AsyncBaseDb, index: int, params: dict[str, Any]) -> int:
    conflicts = 0

    async def writer(task: int, n: int) -> None:
        nonlocal conflicts
        for k in range(n):
            while True:
                current = await db.get_session(params["session_id"])
                assert current is not None
                try:
                    await db.upsert_session(
                        _increment(current, f"{index}-{task}-{k}"),
                        expected_version=current.version,
                    )
                    break
                except VersionConflictError:
                    conflicts += 1

    half = params["n"] // 2
    await asyncio.gather(writer(0, half), writer(1, params["n"] - half))
    return conflicts


def _child_first_use(db: BaseDb, index: int, params: dict[str, Any]) -> list[int]:
    db.create_tables()
    return [
        db.append_run(_turn(params["session_id"], i)).seq  # type: ignore[misc]
        for i in range(params["n"])
    ]


async def _child_first_use_async(db: AsyncBaseDb, index: int, params: dict[str, Any]) -> list[int]:
    await db.create_tables()
    return [
        (await db.append_run(_turn(params["session_id"], i))).seq  # type: ignore[misc]
        for i in range(params["n"])
    ]


_CHILD_TASKS: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "append": (_child_append, _child_append_async),
    "create": (_child_create, _child_create_async),
    "increment": (_child_increment, _child_increment_async),
    "first_use": (_child_first_use, _child_first_use_async),
}


#: Set in each worker process by ``_worker_init``: where the children of a task meet.
_barrier: Any = None


def _worker_init(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


def _child_main(
    task: str, recipe: Recipe, is_async: bool, index: int, params: dict[str, Any]
) -> tuple[bool, Any]:
    """One child's part of ``task``: ``(True, payload)`` or ``(False, traceback text)``.

    Module level, so that "spawn" workers can import it. Errors travel as text: kern's
    exceptions need not survive pickling.
    """
    # ``barrier_first``: meet before building the db, so that first use itself races.
    barrier_first = params.get("barrier_first", False)
    sync_fn, async_fn = _CHILD_TASKS[task]
    try:
        if is_async:

            async def main() -> Any:
                if barrier_first:
                    _barrier.wait(timeout=CHILD_TIMEOUT)
                db = build_db(recipe)
                try:
                    if not barrier_first:
                        _barrier.wait(timeout=CHILD_TIMEOUT)
                    return await async_fn(db, index, params)
                finally:
                    await db.close()

            return True, asyncio.run(main())
        if barrier_first:
            _barrier.wait(timeout=CHILD_TIMEOUT)
        db = build_db(recipe)
        try:
            if not barrier_first:
                _barrier.wait(timeout=CHILD_TIMEOUT)
            return True, sync_fn(db, index, params)
        finally:
            db.close()
    except BaseException:
        _barrier.abort()  # release the others rather than leave them waiting
        return False, traceback.format_exc()


class _ChildPool:
    """``PROCESSES`` worker processes ("spawn": fresh interpreters, nothing inherited).

    Started once per test session and reused: a spawned interpreter takes seconds to
    import kern and a driver, which would otherwise dominate every concurrency case. Each
    task still builds its own db from the recipe, in its own process.
    """

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.barrier = ctx.Barrier(PROCESSES)
        self.executor = ProcessPoolExecutor(
            PROCESSES, mp_context=ctx, initializer=_worker_init, initargs=(self.barrier,)
        )

    def discard(self) -> None:
        self.barrier.abort()
        processes = list(getattr(self.executor, "_processes", {}).values())
        self.executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.kill()


_pool: _ChildPool | None = None
_pool_lock = threading.Lock()


def _run_in_processes(
    task: str, recipe: Recipe, is_async: bool, params: dict[str, Any]
) -> list[Any]:
    """Run ``task`` in ``PROCESSES`` OS processes at once (they meet at a barrier).

    Returns each child's payload; fails the test with every child's traceback if any
    child failed.
    """
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = _ChildPool()
        pool = _pool
        pool.barrier.reset()
        futures = [
            pool.executor.submit(_child_main, task, recipe, is_async, index, params)
            for index in range(PROCESSES)
        ]
        reports: list[tuple[bool, Any]] = []
        try:
            for future in futures:
                reports.append(future.result(timeout=CHILD_TIMEOUT))
        except (BrokenProcessPool, TimeoutError) as exc:
            _pool = None
            pool.discard()
            pytest.fail(f"{task!r}: the child processes did not finish: {exc!r}")
    problems = [f"child {index}: {text}" for index, (ok, text) in enumerate(reports) if not ok]
    if problems:
        pytest.fail(f"{task!r} failed in child processes:\n" + "\n".join(problems))
    return [payload for _, payload in reports]


# -- the scenarios ------------------------------------------------------------------------


class _Scenarios(IsolationScenarios, TurnScenarios):
    """Every behaviour of the contract, written once against ``store`` (see module doc).

    The cases of ids, stored text and user isolation live in ``kern.testing.isolation``.

    Not collected itself (no ``Test`` prefix); ``BackendConformance`` and
    ``AsyncBackendConformance`` turn these into the sync and async suites.
    """

    #: The contract class the suite's db must implement.
    base_class: ClassVar[type]

    # -- what a subclass provides --------------------------------------------------------
    def db_factory(self, tmp_path: Path) -> Recipe:
        raise NotImplementedError(
            f"{type(self).__name__} must define db_factory(self, tmp_path) returning "
            "('module:Class', {constructor kwargs})"
        )

    @pytest.fixture
    def recipe(self, tmp_path: Path) -> Recipe:
        return _check_recipe(self.db_factory(tmp_path))

    # -- what each suite provides (see BackendConformance / AsyncBackendConformance) -----
    async def _open(self, recipe: Recipe) -> Any:
        """A second db built from ``recipe``, seen as a ``store``."""
        raise NotImplementedError

    async def _close(self, store: Any) -> None:
        raise NotImplementedError

    async def _measure(self, db: Any, read: Callable[[], Awaitable[Any]]) -> tuple[int, Any]:
        """``count_reads`` of ``read()``, and what the read returned."""
        raise NotImplementedError

    async def _concurrently(self, calls: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
        """Run the calls at once (threads in the sync suite, tasks in the async one)."""
        raise NotImplementedError

    async def _append_many(self, store: Any, runs: Sequence[Run]) -> list[Run]:
        """Append ``runs`` as fast as the contract allows (one ``append_run`` each)."""
        raise NotImplementedError

    async def _in_processes(self, task: str, recipe: Recipe, params: dict[str, Any]) -> list[Any]:
        """Run a child task in ``PROCESSES`` processes at once; each child's payload."""
        raise NotImplementedError

    # -- identity ------------------------------------------------------------------------
    async def test_db_implements_the_contract(self, db: Any) -> None:
        """The class is a ``BaseDb`` (sync suite) / ``AsyncBaseDb`` (async suite) and says so."""
        assert isinstance(db, self.base_class)
        assert db.is_async is (self.base_class is AsyncBaseDb)
        assert isinstance(db.backend_name, str) and db.backend_name

    # -- sessions ------------------------------------------------------------------------
    async def test_create_session_then_get(self, store: Any) -> None:
        """expected_version=None creates the session at version 1; get returns what was stored."""
        old = datetime(2020, 1, 1, tzinfo=UTC)
        session = Session(
            session_id=_uid("s"),
            user_id=_uid("u"),
            component_id=_uid("agent"),
            state={"step": 1},
            created_at=old,
            updated_at=old,
        )
        stored = await store.upsert_session(session, expected_version=None)

        assert stored.version == 1
        assert stored.created_at == old  # a new session keeps the created_at it was given
        assert stored.updated_at > old  # ...and gets a fresh updated_at
        assert stored.model_copy(update={"version": 0, "updated_at": old}) == session
        assert await store.get_session(session.session_id) == stored

    async def test_get_unknown_session_is_none(self, store: Any) -> None:
        assert await store.get_session(_uid("missing")) is None

    async def test_update_session_with_current_version(self, store: Any) -> None:
        """A write naming the stored version succeeds: version +1, created_at kept,
        updated_at moves, every other field replaced (the written object's own
        ``version`` and ``created_at`` are ignored)."""
        sid, user = _uid("s"), _uid("u")
        v1 = await store.upsert_session(
            Session(session_id=sid, user_id=user, name="first", state={"n": 1}),
            expected_version=None,
        )
        _tick()
        rewrite = Session(  # a fresh object: version 0, created_at now
            session_id=sid,
            user_id=user,
            name="second",
            summary="talked about tests",
            state={"n": 2, "added": [1, 2]},
            metadata={"tag": "x"},
        )
        v2 = await store.upsert_session(rewrite, expected_version=1)

        assert v2.version == 2
        assert v2.created_at == v1.created_at
        assert v2.updated_at > v1.updated_at
        assert (v2.name, v2.summary, v2.state, v2.metadata) == (
            "second",
            "talked about tests",
            {"n": 2, "added": [1, 2]},
            {"tag": "x"},
        )
        assert await store.get_session(sid) == v2

        v3 = await store.upsert_session(
            v2.model_copy(update={"state": {"n": 3}}), expected_version=2
        )
        assert v3.version == 3
        assert (await store.get_session(sid)).state == {"n": 3}

    async def test_stale_version_write_is_refused(self, store: Any) -> None:
        """Acceptance case 2: a write naming an old version raises VersionConflictError and
        leaves the stored session exactly as it was."""
        sid = _uid("s")
        await store.upsert_session(Session(session_id=sid, state={"n": 1}), expected_version=None)
        current = await store.upsert_session(
            Session(session_id=sid, state={"n": 2}), expected_version=1
        )

        stale = Session(session_id=sid, state={"n": "stale"})
        with pytest.raises(VersionConflictError) as conflict:
            await store.upsert_session(stale, expected_version=1)
        assert conflict.value.session_id == sid
        assert conflict.value.expected == 1
        for wrong in (0, 5):  # neither older nor newer than the stored version
            with pytest.raises(VersionConflictError):
                await store.upsert_session(stale, expected_version=wrong)

        assert await store.get_session(sid) == current

    async def test_creating_an_existing_session_is_refused(self, store: Any) -> None:
        sid = _uid("s")
        stored = await store.upsert_session(
            Session(session_id=sid, state={"owner": "first"}), expected_version=None
        )
        with pytest.raises(VersionConflictError):
            await store.upsert_session(
                Session(session_id=sid, state={"owner": "second"}), expected_version=None
            )
        assert await store.get_session(sid) == stored

    async def test_updating_a_missing_session_is_refused(self, store: Any) -> None:
        """expected_version=N on a session that is not stored conflicts and creates nothing."""
        sid = _uid("s")
        with pytest.raises(VersionConflictError):
            await store.upsert_session(Session(session_id=sid), expected_version=1)
        assert await store.get_session(sid) is None

    async def test_concurrent_creators_exactly_one_wins(self, store: Any, recipe: Recipe) -> None:
        """Several processes (and, async, several tasks in each) create the same session at
        once with expected_version=None: one wins, every other gets VersionConflictError."""
        sid = _uid("race")
        outcomes = [
            outcome
            for child in await self._in_processes("create", recipe, {"session_id": sid})
            for outcome in child
        ]
        winners = [outcome for outcome in outcomes if outcome.startswith("won:")]

        assert len(winners) == 1, outcomes
        assert outcomes.count("conflict") == len(outcomes) - 1
        stored = await store.get_session(sid)
        assert stored.version == 1
        assert stored.state == {"writer": winners[0].removeprefix("won:")}

    async def test_concurrent_state_updates_lose_nothing(self, store: Any, recipe: Recipe) -> None:
        """Processes increment a counter in session state by read/compare-and-set/retry:
        no increment is lost to a silent overwrite."""
        sid, n = _uid("counter"), 10
        await store.upsert_session(
            Session(session_id=sid, state={"count": 0, "log": []}), expected_version=None
        )
        await self._in_processes("increment", recipe, {"session_id": sid, "n": n})

        stored = await store.get_session(sid)
        assert stored.state["count"] == PROCESSES * n
        assert len(stored.state["log"]) == len(set(stored.state["log"])) == PROCESSES * n
        assert stored.version == 1 + PROCESSES * n

    async def test_list_sessions_filters(self, store: Any) -> None:
        """Every given filter applies (user_id, component_id, session_type), combined."""
        u1, u2, c1, c2 = _uid("u1"), _uid("u2"), _uid("c1"), _uid("c2")
        specs = {
            "s1": (u1, c1, SessionType.AGENT),
            "s2": (u1, c2, SessionType.TEAM),
            "s3": (u2, c1, SessionType.AGENT),
            "s4": (None, c1, SessionType.WORKFLOW),
        }
        ids = {name: _uid(name) for name in specs}
        for name, (user, component, kind) in specs.items():
            await store.upsert_session(
                Session(
                    session_id=ids[name], user_id=user, component_id=component, session_type=kind
                ),
                expected_version=None,
            )

        async def listed(**filters: Any) -> set[str]:
            found = await store.list_sessions(**filters, limit=100)
            return {name for name, sid in ids.items() if sid in _ids(found, "session_id")}

        assert await listed(user_id=u1) == {"s1", "s2"}
        assert await listed(component_id=c1) == {"s1", "s3", "s4"}
        assert await listed(user_id=u1, component_id=c1) == {"s1"}
        assert await listed(user_id=u1, session_type=SessionType.TEAM) == {"s2"}
        assert await listed(component_id=c1, session_type=SessionType.WORKFLOW) == {"s4"}
        assert await listed(component_id=c1, session_type=SessionType.TEAM) == set()
        assert await store.list_sessions(user_id=_uid("nobody")) == []
        workflows = await store.list_sessions(session_type=SessionType.WORKFLOW, limit=1000)
        assert all(s.session_type == SessionType.WORKFLOW for s in workflows)
        assert ids["s4"] in _ids(workflows, "session_id")
        # the filtered list holds whole, exact sessions
        assert await store.list_sessions(user_id=u2) == [await store.get_session(ids["s3"])]

    async def test_list_sessions_newest_first_and_paging(self, store: Any) -> None:
        """Newest updated_at first (an update moves a session to the front); limit/offset page."""
        user = _uid("u")
        a, b, c = _uid("a"), _uid("b"), _uid("c")
        for sid in (a, b, c):
            await store.upsert_session(Session(session_id=sid, user_id=user), expected_version=None)
            _tick()
        await store.upsert_session(Session(session_id=a, user_id=user), expected_version=1)

        async def page(**kw: Any) -> list[str]:
            return _ids(await store.list_sessions(user_id=user, **kw), "session_id")

        assert await page() == [a, c, b]
        assert await page(limit=2) == [a, c]
        assert await page(limit=2, offset=2) == [b]
        assert await page(limit=1, offset=1) == [c]
        assert await page(offset=3) == []

    async def test_list_sessions_default_limit_is_20(self, store: Any) -> None:
        user = _uid("u")
        for _ in range(23):
            await store.upsert_session(Session(user_id=user), expected_version=None)
        assert len(await store.list_sessions(user_id=user)) == 20
        assert len(await store.list_sessions(user_id=user, offset=20)) == 3

    async def test_delete_session_removes_its_runs(self, store: Any) -> None:
        user, sid, other = _uid("u"), _uid("s"), _uid("other")
        await store.upsert_session(Session(session_id=sid, user_id=user), expected_version=None)
        runs = [await store.append_run(_turn(sid, i, user)) for i in range(3)]
        kept = [await store.append_run(_turn(other, i, user)) for i in range(2)]

        assert await store.delete_session(sid) is True
        assert await store.get_session(sid) is None
        assert await store.get_last_runs(sid, 10) == []
        for run in runs:
            assert await store.get_run(run.run_id) is None
        assert await store.get_last_runs(other, 10) == kept
        assert await store.list_sessions(user_id=user) == []
        assert await store.delete_session(sid) is False

    # -- runs ----------------------------------------------------------------------------
    async def test_append_run_assigns_seq_per_session(self, store: Any) -> None:
        """seq is 1, 2, 3... in each session independently, whatever seq the caller set;
        the session row need not exist."""
        a, b = _uid("a"), _uid("b")
        await store.upsert_session(Session(session_id=a), expected_version=None)  # b has none
        order = [a, b, a, a, b]
        stored = [await store.append_run(Run(session_id=sid)) for sid in order]
        assert _seqs(stored) == [1, 1, 2, 3, 2]

        ignored = await store.append_run(Run(session_id=b, seq=99))
        assert ignored.seq == 3

        assert _seqs(await store.get_last_runs(a, 10)) == [1, 2, 3]
        assert _ids(await store.get_last_runs(b, 10), "run_id") == [
            stored[1].run_id,
            stored[4].run_id,
            ignored.run_id,
        ]

    async def test_append_run_returns_the_stored_run(self, store: Any) -> None:
        """Records round-trip exactly: messages with tool calls, nested JSON, unicode and
        timezone-aware timestamps come back as they went in."""
        created = datetime(2024, 5, 17, 14, 3, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
        run = Run(
            session_id=_uid("s"),
            parent_run_id=_uid("parent"),
            component_id="weather-agent",
            user_id=_uid("ü"),
            status=RunStatus.COMPLETED,
            input={"question": "Wie wird das Wetter in Zürich? 🌦", "options": [1, 2.5, None]},
            messages=[
                Message(role="system", content="You are terse."),
                Message(role="user", content="Wie wird das Wetter in Zürich? 🌦"),
                Message(
                    role="assistant",
                    content=None,
                    tool_calls=[
                        ToolCall(id="call_1", name="get_weather", arguments='{"city": "Zürich"}')
                    ],
                ),
                Message(
                    role="tool", tool_call_id="call_1", name="get_weather", content='{"t": 21.5}'
                ),
                Message(role="assistant", content='Sonnig, 21.5 °C — "schön"\n\\ 東京でも晴れ'),
            ],
            output={"answer": "Sonnig", "confidence": 0.9, "ok": True, "n": 2, "x": 2.0},
            metrics={"tokens": {"input": 120, "output": 8}, "cost": 0.0012, "tags": []},
            created_at=created,
        )
        stored = await store.append_run(run)

        assert stored.seq == 1
        assert stored == run.model_copy(update={"seq": 1})
        for fetched in (
            await store.get_run(run.run_id),
            *(await store.get_last_runs(run.session_id, 1)),
        ):
            assert fetched == stored
            assert fetched.created_at.tzinfo is not None
            assert fetched.created_at == created
            for field in ("input", "output", "metrics"):
                assert _json(getattr(fetched, field)) == _json(getattr(run, field))
            assert _json([m.model_dump() for m in fetched.messages]) == _json(
                [m.model_dump() for m in run.messages]
            )

    async def test_session_round_trips_exactly(self, store: Any) -> None:
        created = datetime.now(UTC) - timedelta(days=3, microseconds=1)
        session = Session(
            session_id=_uid("s"),
            session_type=SessionType.TEAM,
            component_id="support-team",
            user_id=_uid("user"),
            name="Ünïcode — 名前 🚀",
            state={
                "cart": [{"sku": "A-1", "qty": 2, "price": 9.99}],
                "flags": {"vip": True, "one": 1, "two": 2.0, "none": None},
                "empty": {},
                "nothing": [],
                "text": 'quote " backslash \\ newline \n tab \t',
                "big": 2**53,
                "neg": -7,
            },
            summary="Résumé",
            metadata={"source": "api", "nested": {"deep": [[1], [2, {"k": "v"}]]}},
            created_at=created,
        )
        stored = await store.upsert_session(session, expected_version=None)
        fetched = await store.get_session(session.session_id)

        assert fetched == stored
        assert (
            fetched.model_copy(update={"version": 0, "updated_at": session.updated_at}) == session
        )
        assert _json(fetched.state) == _json(session.state)
        assert _json(fetched.metadata) == _json(session.metadata)
        assert fetched.created_at.tzinfo is not None and fetched.updated_at.tzinfo is not None

    async def test_append_run_with_a_stored_run_id_raises_value_error(self, store: Any) -> None:
        sid, other = _uid("s"), _uid("other")
        first = await store.append_run(_turn(sid, 0))
        with pytest.raises(ValueError):
            await store.append_run(first)
        with pytest.raises(ValueError):  # the same run_id in another session
            await store.append_run(_turn(other, 0).model_copy(update={"run_id": first.run_id}))

        assert await store.get_last_runs(sid, 10) == [first]
        assert await store.get_run(first.run_id) == first
        assert await store.get_last_runs(other, 10) == []

    async def test_append_run_moves_session_updated_at_not_version(self, store: Any) -> None:
        sid = _uid("s")
        before = await store.upsert_session(
            Session(session_id=sid, state={"k": 1}), expected_version=None
        )
        _tick()
        await store.append_run(
            _turn(sid, 0).model_copy(
                update={"created_at": before.updated_at + timedelta(seconds=1)}
            )
        )

        after = await store.get_session(sid)
        assert after.updated_at > before.updated_at
        assert after.version == before.version == 1
        assert after.state == before.state
        # the version was not touched: a writer holding version 1 still succeeds
        assert (await store.upsert_session(after, expected_version=1)).version == 2

    async def test_get_run(self, store: Any) -> None:
        stored = await store.append_run(_turn(_uid("s"), 0))
        assert await store.get_run(stored.run_id) == stored
        assert await store.get_run(_uid("missing")) is None

    async def test_get_last_runs_order_limit_and_paging(self, store: Any) -> None:
        """The newest ``limit`` runs, returned oldest first; before_seq pages backwards."""
        sid = _uid("s")
        runs = [await store.append_run(_turn(sid, i)) for i in range(7)]

        assert await store.get_last_runs(sid, 3) == runs[4:]
        assert await store.get_last_runs(sid, 100) == runs
        assert _seqs(await store.get_last_runs(sid, 3, before_seq=5)) == [2, 3, 4]
        assert _seqs(await store.get_last_runs(sid, 3, before_seq=3)) == [1, 2]
        assert await store.get_last_runs(sid, 3, before_seq=1) == []
        assert await store.get_last_runs(_uid("unknown"), 3) == []

    async def test_get_last_runs_top_level_only(self, store: Any) -> None:
        """top_level_only drops runs with a parent_run_id, before the limit applies."""
        sid = _uid("team")
        leader1 = await store.append_run(_turn(sid, 1))
        await store.append_run(_turn(sid, 2, parent_run_id=leader1.run_id))
        await store.append_run(_turn(sid, 3, parent_run_id=leader1.run_id))
        leader2 = await store.append_run(_turn(sid, 4))
        await store.append_run(_turn(sid, 5, parent_run_id=leader2.run_id))
        await store.append_run(_turn(sid, 6, parent_run_id=leader2.run_id))

        assert await store.get_last_runs(sid, 10, top_level_only=True) == [leader1, leader2]
        assert await store.get_last_runs(sid, 1, top_level_only=True) == [leader2]
        assert await store.get_last_runs(sid, 10, top_level_only=True, before_seq=4) == [leader1]
        assert _seqs(await store.get_last_runs(sid, 2)) == [5, 6]

    async def test_get_last_runs_status_filter(self, store: Any) -> None:
        sid = _uid("s")
        statuses = [
            RunStatus.COMPLETED,
            RunStatus.ERROR,
            RunStatus.COMPLETED,
            RunStatus.RUNNING,
            RunStatus.ERROR,
            RunStatus.COMPLETED,
        ]
        for i, status in enumerate(statuses):
            await store.append_run(_turn(sid, i, status=status))

        async def seqs(**kw: Any) -> list[int | None]:
            return _seqs(await store.get_last_runs(sid, kw.pop("limit", 10), **kw))

        assert await seqs(status=RunStatus.ERROR) == [2, 5]
        assert await seqs(status=RunStatus.ERROR, limit=1) == [5]
        assert await seqs(status=RunStatus.RUNNING) == [4]
        assert await seqs(status=RunStatus.COMPLETED, before_seq=6) == [1, 3]
        assert await seqs(status=RunStatus.CANCELLED) == []

    async def test_update_run_finishes_a_running_run(self, store: Any) -> None:
        started = await store.append_run(
            Run(session_id=_uid("s"), status=RunStatus.RUNNING, input="hi")
        )
        answer = [Message(role="user", content="hi"), Message(role="assistant", content="hello")]
        finished = await store.update_run(
            started.run_id,
            status=RunStatus.COMPLETED,
            output={"text": "hello", "parts": [1, {"a": None}]},
            messages=answer,
            metrics={"tokens": 7, "latency": {"ms": 12.5}},
        )

        assert finished == started.model_copy(
            update={
                "status": RunStatus.COMPLETED,
                "output": {"text": "hello", "parts": [1, {"a": None}]},
                "messages": answer,
                "metrics": {"tokens": 7, "latency": {"ms": 12.5}},
            }
        )
        assert await store.get_run(started.run_id) == finished

    async def test_update_run_none_leaves_fields_as_they_are(self, store: Any) -> None:
        started = await store.append_run(
            Run(
                session_id=_uid("s"),
                status=RunStatus.RUNNING,
                output="partial",
                messages=[Message(role="user", content="hi")],
                metrics={"tokens": 3},
            )
        )
        remarked = await store.update_run(started.run_id, status=RunStatus.RUNNING)
        assert remarked == started

        done = await store.update_run(started.run_id, status=RunStatus.ERROR, output="failed")
        assert done == started.model_copy(update={"status": RunStatus.ERROR, "output": "failed"})
        assert await store.get_run(started.run_id) == done

    async def test_update_run_unknown_id_raises_run_not_found(self, store: Any) -> None:
        with pytest.raises(RunNotFoundError):
            await store.update_run(_uid("missing"), status=RunStatus.COMPLETED)

    async def test_update_run_on_a_finished_run_raises_run_finished(self, store: Any) -> None:
        sid = _uid("s")
        completed = await store.append_run(_turn(sid, 0))  # appended already finished
        started = await store.append_run(Run(session_id=sid, status=RunStatus.RUNNING))
        cancelled = await store.update_run(started.run_id, status=RunStatus.CANCELLED)

        for run in (completed, cancelled):
            with pytest.raises(RunFinishedError):
                await store.update_run(run.run_id, status=RunStatus.COMPLETED, output="late")
            assert await store.get_run(run.run_id) == run

    async def test_concurrent_appends_from_processes(self, store: Any, recipe: Recipe) -> None:
        """Acceptance case 1: 4 processes x 50 appends to ONE session give exactly 200 runs
        with seq 1..200, no gap, no duplicate (async: each process appends concurrently)."""
        sid, user = _uid("shared"), _uid("u")
        await store.upsert_session(Session(session_id=sid, user_id=user), expected_version=None)
        reported = await self._in_processes(
            "append", recipe, {"session_id": sid, "user_id": user, "n": APPENDS_PER_PROCESS}
        )
        pairs = [pair for child in reported for pair in child]  # (run_id, seq)
        total = PROCESSES * APPENDS_PER_PROCESS

        assert sorted(seq for _, seq in pairs) == list(range(1, total + 1))
        stored = await store.get_last_runs(sid, total + 10)
        assert _seqs(stored) == list(range(1, total + 1))
        assert sorted((run.run_id, run.seq) for run in stored) == sorted(pairs)

    async def test_concurrent_appends_in_one_process(self, store: Any) -> None:
        """Appends racing on one db object (threads in the sync suite, tasks in the async
        one) also get distinct, gapless seqs."""
        sid, n = _uid("s"), 40
        stored = await self._concurrently(
            [lambda i=i: store.append_run(_turn(sid, i)) for i in range(n)]
        )
        assert sorted(_seqs(stored)) == list(range(1, n + 1))
        assert _seqs(await store.get_last_runs(sid, n)) == list(range(1, n + 1))

    async def test_last_runs_cost_does_not_grow_with_session(self, db: Any, store: Any) -> None:
        """Acceptance case 3: reading the last 3 runs of a 10,000-run session costs what it
        costs in a 10-run session (``count_reads``), and returns exactly the 3 newest."""
        user, big, small = _uid("u"), _uid("big"), _uid("small")
        for sid in (big, small):
            await store.upsert_session(Session(session_id=sid, user_id=user), expected_version=None)
        big_runs = await self._append_many(
            store, [_turn(big, i, user) for i in range(LONG_SESSION_RUNS)]
        )
        await self._append_many(store, [_turn(small, i, user) for i in range(10)])
        for sid in (small, big):  # warm caches, so that neither measure pays for set-up
            await store.get_last_runs(sid, 3)

        small_cost, small_last = await self._measure(db, lambda: store.get_last_runs(small, 3))
        big_cost, big_last = await self._measure(db, lambda: store.get_last_runs(big, 3))

        newest = sorted(big_runs, key=lambda run: run.seq)[-3:]
        assert _ids(big_last, "run_id") == _ids(newest, "run_id")
        assert _seqs(big_last) == [LONG_SESSION_RUNS - 2, LONG_SESSION_RUNS - 1, LONG_SESSION_RUNS]
        assert _seqs(small_last) == [8, 9, 10]
        assert small_cost > 0, "count_reads measured nothing: is the counter installed?"
        assert abs(big_cost - small_cost) <= READ_COST_TOLERANCE * small_cost, (
            f"last 3 runs of a {LONG_SESSION_RUNS}-run session cost {big_cost}, "
            f"of a 10-run session {small_cost}"
        )

    # -- memories ------------------------------------------------------------------------
    async def test_memory_upsert_get_and_replace(self, store: Any) -> None:
        old = datetime(2020, 1, 1, tzinfo=UTC)
        user = _uid("u")
        memory = Memory(
            user_id=user,
            agent_id="assistant",
            content="Prefers tea over coffee — 緑茶 🍵",
            topics=["drinks", "preferences"],
            source_run_id=_uid("run"),
            created_at=old,
            updated_at=old,
        )
        stored = await store.upsert_memory(memory)

        assert stored.updated_at > old  # refreshed
        assert stored.model_copy(update={"updated_at": old}) == memory
        assert await store.get_memory(memory.memory_id) == stored
        assert await store.get_memory(_uid("missing")) is None

        replaced = await store.upsert_memory(
            memory.model_copy(update={"content": "Prefers coffee now", "topics": ["drinks"]})
        )
        assert (replaced.content, replaced.topics) == ("Prefers coffee now", ["drinks"])
        assert await store.get_memory(memory.memory_id) == replaced
        assert await store.list_memories(user) == [replaced]

    async def test_list_memories_scoped_ordered_and_paged(self, store: Any) -> None:
        alice, bob = _uid("alice"), _uid("bob")
        m1, m2, m3 = (
            Memory(user_id=alice, agent_id=agent, content=f"fact {i}")
            for i, agent in enumerate(("x", "y", "x"))
        )
        m4 = Memory(user_id=bob, agent_id="x", content="bob's fact")
        for memory in (m1, m2, m3, m4):
            await store.upsert_memory(memory)
            _tick()
        await store.upsert_memory(m1.model_copy(update={"content": "fact 0, revised"}))

        async def listed(user: str, **kw: Any) -> list[str]:
            return _ids(await store.list_memories(user, **kw), "memory_id")

        assert await listed(alice) == [m1.memory_id, m3.memory_id, m2.memory_id]
        assert await listed(alice, agent_id="x") == [m1.memory_id, m3.memory_id]
        assert await listed(alice, limit=2) == [m1.memory_id, m3.memory_id]
        assert await listed(alice, limit=2, offset=2) == [m2.memory_id]
        assert await listed(alice, agent_id="x", offset=1) == [m3.memory_id]
        assert await listed(bob) == [m4.memory_id]
        assert await listed(_uid("nobody")) == []

    async def test_search_memories_relevant_first(self, store: Any) -> None:
        user = _uid("u")
        contents = {
            "hiking": "I love hiking in the Alps every summer",
            "sushi": "My favourite food is sushi",
            "job": "I work as a data engineer at Acme",
            "dog": "I have a dog named Rex",
        }
        ids = {}
        for key, content in contents.items():
            ids[key] = (await store.upsert_memory(Memory(user_id=user, content=content))).memory_id

        for query, best in (
            ("sushi", "sushi"),
            ("data engineer", "job"),
            ("Rex", "dog"),
            ("Which mountains do I go hiking in?", "hiking"),  # natural language, partial match
        ):
            found = await store.search_memories(user, query)
            assert found, f"nothing found for {query!r}"
            assert found[0].memory.memory_id == ids[best], (query, found)
            assert all(isinstance(hit.score, float) for hit in found)
            assert len({hit.memory.memory_id for hit in found}) == len(found)

    async def test_search_memories_bounded_by_limit(self, store: Any) -> None:
        user = _uid("u")
        for i in range(7):
            await store.upsert_memory(Memory(user_id=user, content=f"coffee fact number {i}"))

        assert len(await store.search_memories(user, "coffee", limit=3)) == 3
        assert len(await store.search_memories(user, "coffee", limit=1)) == 1
        assert len(await store.search_memories(user, "coffee")) == 5  # the default limit

    async def test_search_memories_never_returns_another_users(self, store: Any) -> None:
        alice, bob = _uid("alice"), _uid("bob")
        mine = await store.upsert_memory(Memory(user_id=alice, content="hiking in the Alps"))
        for i in range(10):
            await store.upsert_memory(Memory(user_id=bob, content=f"hiking hiking Alps {i}"))

        found = await store.search_memories(alice, "hiking Alps", limit=5)
        assert [hit.memory.memory_id for hit in found] == [mine.memory_id]
        assert await store.search_memories(_uid("nobody"), "hiking") == []

    async def test_search_memories_agent_filter(self, store: Any) -> None:
        user = _uid("u")
        one = await store.upsert_memory(Memory(user_id=user, agent_id="one", content="likes tea"))
        await store.upsert_memory(Memory(user_id=user, agent_id="two", content="likes tea a lot"))

        found = await store.search_memories(user, "tea", agent_id="one")
        assert [hit.memory.memory_id for hit in found] == [one.memory_id]

    async def test_search_memories_odd_query_text(self, store: Any) -> None:
        """Query text is data, never syntax: operators, quotes and wildcards do not raise."""
        user, other = _uid("u"), _uid("other")
        await store.upsert_memory(Memory(user_id=user, content='what\'s "up" AND (x) 100%_done'))
        await store.upsert_memory(Memory(user_id=other, content='what\'s "up" AND (x) 100%_done'))
        for query in ODD_QUERIES:
            found = await store.search_memories(user, query, limit=3)
            assert isinstance(found, list)
            assert len(found) <= 3
            assert all(hit.memory.user_id == user for hit in found), query

    async def test_delete_memory(self, store: Any) -> None:
        user = _uid("u")
        gone = await store.upsert_memory(Memory(user_id=user, content="to forget"))
        kept = await store.upsert_memory(Memory(user_id=user, content="to keep"))

        assert await store.delete_memory(gone.memory_id) is True
        assert await store.get_memory(gone.memory_id) is None
        assert await store.list_memories(user) == [kept]
        assert gone.memory_id not in {
            hit.memory.memory_id for hit in await store.search_memories(user, "forget")
        }
        assert await store.delete_memory(gone.memory_id) is False

    # -- learnings -----------------------------------------------------------------------
    async def test_learning_upsert_get_and_replace(self, store: Any) -> None:
        old = datetime(2020, 1, 1, tzinfo=UTC)
        learning = Learning(
            kind=_uid("entity"),
            namespace="user",
            user_id=_uid("u"),
            session_id=_uid("s"),
            entity_id="acme",
            content={
                "name": "Acme GmbH",
                "facts": ["headquartered in Zürich", {"founded": 1999, "public": False}],
                "score": 0.5,
            },
            status=LearningStatus.PROPOSED,
            source_run_id=_uid("run"),
            created_at=old,
            updated_at=old,
        )
        stored = await store.upsert_learning(learning)

        assert stored.updated_at > old
        assert stored.model_copy(update={"updated_at": old}) == learning
        fetched = await store.get_learning(learning.learning_id)
        assert fetched == stored
        assert _json(fetched.content) == _json(learning.content)
        assert await store.get_learning(_uid("missing")) is None

        replaced = await store.upsert_learning(
            learning.model_copy(update={"status": LearningStatus.ACTIVE, "content": {"v": 2}})
        )
        assert (replaced.status, replaced.content) == (LearningStatus.ACTIVE, {"v": 2})
        assert await store.get_learning(learning.learning_id) == replaced
        assert await store.query_learnings(kind=learning.kind) == [replaced]

    async def test_query_learnings_by_every_filter(self, store: Any) -> None:
        k1, k2, ns1, ns2 = _uid("k1"), _uid("k2"), _uid("ns1"), _uid("ns2")
        ua, ub, s1, e1 = _uid("ua"), _uid("ub"), _uid("s1"), _uid("e1")
        specs: dict[str, dict[str, Any]] = {
            "a": {"kind": k1, "namespace": ns1, "user_id": ua, "session_id": s1},
            "b": {"kind": k1, "namespace": ns1, "user_id": ub, "entity_id": e1},
            "c": {"kind": k1, "namespace": ns2, "status": LearningStatus.PROPOSED},
            "d": {"kind": k2, "namespace": ns1, "user_id": ua, "entity_id": e1},
            "e": {
                "kind": k2,
                "namespace": ns2,
                "session_id": s1,
                "status": LearningStatus.REJECTED,
            },
            "f": {"kind": k1, "namespace": ns1, "user_id": ua, "status": LearningStatus.SUPERSEDED},
        }
        ids = {}
        for name, fields in specs.items():
            ids[name] = (
                await store.upsert_learning(Learning(content={"n": name}, **fields))
            ).learning_id

        async def found(**filters: Any) -> set[str]:
            got = await store.query_learnings(**filters)
            names = {name for name, lid in ids.items() if lid in _ids(got, "learning_id")}
            assert len(names) == len(got), "query returned learnings of another scenario"
            return names

        assert await found(kind=k1) == {"a", "b", "c", "f"}
        assert await found(namespace=ns2) == {"c", "e"}
        assert await found(user_id=ua) == {"a", "d", "f"}
        assert await found(session_id=s1) == {"a", "e"}
        assert await found(entity_id=e1) == {"b", "d"}
        assert await found(kind=k1, status=LearningStatus.ACTIVE) == {"a", "b"}
        assert await found(kind=k1, status=LearningStatus.PROPOSED) == {"c"}
        assert await found(kind=k2, status=LearningStatus.REJECTED) == {"e"}
        assert await found(user_id=ua, status=LearningStatus.SUPERSEDED) == {"f"}
        assert await found(kind=k1, namespace=ns1, user_id=ua) == {"a", "f"}
        assert await found(kind=k2, namespace=ns1, entity_id=e1) == {"d"}
        assert await found(kind=k2, user_id=ub) == set()

    async def test_query_learnings_newest_first_and_paging(self, store: Any) -> None:
        kind = _uid("kind")
        first, second, third = (Learning(kind=kind, content={"i": i}) for i in range(3))
        for learning in (first, second, third):
            await store.upsert_learning(learning)
            _tick()
        await store.upsert_learning(first.model_copy(update={"content": {"i": "revised"}}))

        async def page(**kw: Any) -> list[str]:
            return _ids(await store.query_learnings(kind=kind, **kw), "learning_id")

        assert await page() == [first.learning_id, third.learning_id, second.learning_id]
        assert await page(limit=2) == [first.learning_id, third.learning_id]
        assert await page(limit=2, offset=2) == [second.learning_id]
        assert await page(offset=3) == []

    async def test_search_learnings_over_json_content(self, store: Any) -> None:
        """Search looks into the values of the JSON content, nested ones included."""
        kind = _uid("knowledge")
        docs = {
            "units": {"fact": "The user prefers metric units", "topic": "units"},
            "acme": {"entity": "Acme", "facts": ["headquartered in Berlin", "founded 1999"]},
            "deploy": {"insight": "Deploys on Fridays cause incidents", "confidence": 0.8},
        }
        ids = {}
        for key, content in docs.items():
            ids[key] = (
                await store.upsert_learning(Learning(kind=kind, content=content))
            ).learning_id

        for query, best in (("metric", "units"), ("Berlin", "acme"), ("Fridays deploys", "deploy")):
            found = await store.search_learnings(query, kind=kind)
            assert found, f"nothing found for {query!r}"
            assert found[0].learning.learning_id == ids[best], (query, found)
            assert all(isinstance(hit.score, float) for hit in found)

        assert len(await store.search_learnings("the", kind=kind, limit=1)) <= 1
        for query in ODD_QUERIES:
            found = await store.search_learnings(query, kind=kind, limit=2)
            assert isinstance(found, list) and len(found) <= 2
        assert await store.search_learnings("metric", kind=_uid("empty")) == []

    async def test_search_learnings_scoping_and_status(self, store: Any) -> None:
        """user_id and namespace scope the search; status defaults to active only."""
        kind, alice, bob, ns = _uid("k"), _uid("alice"), _uid("bob"), _uid("ns")
        fact = {"fact": "prefers metric units"}
        mine = await store.upsert_learning(
            Learning(kind=kind, namespace="user", user_id=alice, content=fact)
        )
        await store.upsert_learning(
            Learning(kind=kind, namespace="user", user_id=bob, content=fact)
        )
        shared = await store.upsert_learning(Learning(kind=kind, namespace=ns, content=fact))
        pending = await store.upsert_learning(
            Learning(
                kind=kind,
                namespace="user",
                user_id=alice,
                content={"fact": "maybe metric units everywhere"},
                status=LearningStatus.PROPOSED,
            )
        )

        async def found(**kw: Any) -> set[str]:
            return {
                hit.learning.learning_id for hit in await store.search_learnings("metric", **kw)
            }

        assert await found(kind=kind, user_id=alice) == {mine.learning_id}
        assert await found(user_id=alice) == {mine.learning_id}
        assert await found(kind=kind, namespace=ns) == {shared.learning_id}
        assert await found(namespace=ns) == {shared.learning_id}
        assert await found(kind=kind, user_id=alice, status=LearningStatus.PROPOSED) == {
            pending.learning_id
        }
        assert await found(kind=kind, user_id=alice, status=None) == {
            mine.learning_id,
            pending.learning_id,
        }
        assert await found(kind=kind, user_id=_uid("nobody")) == set()

    async def test_delete_learning(self, store: Any) -> None:
        kind = _uid("k")
        gone = await store.upsert_learning(Learning(kind=kind, content={"fact": "obsolete"}))
        kept = await store.upsert_learning(Learning(kind=kind, content={"fact": "current"}))

        assert await store.delete_learning(gone.learning_id) is True
        assert await store.get_learning(gone.learning_id) is None
        assert await store.query_learnings(kind=kind) == [kept]
        assert gone.learning_id not in {
            hit.learning.learning_id for hit in await store.search_learnings("obsolete", kind=kind)
        }
        assert await store.delete_learning(gone.learning_id) is False

    # -- lifecycle -----------------------------------------------------------------------
    async def test_forget_user_removes_exactly_that_user(self, store: Any) -> None:
        """Sessions (with all their runs), runs, memories and learnings of the user go and
        are counted per table; another user's data is untouched."""
        alice, bob = _uid("alice"), _uid("bob")
        alice_sessions = [_uid("a1"), _uid("a2")]
        for sid in alice_sessions:
            await store.upsert_session(
                Session(session_id=sid, user_id=alice), expected_version=None
            )
            for i in range(3):
                await store.append_run(_turn(sid, i, alice))
        # a workflow step without user_id, inside alice's session: goes with the session
        await store.append_run(_turn(alice_sessions[0], 9))
        # alice's run in a session with no row (nor user): goes because it holds her data
        await store.append_run(_turn(_uid("loose"), 0, alice))
        for i in range(2):
            await store.upsert_memory(Memory(user_id=alice, content=f"alice fact {i}"))
            await store.upsert_learning(Learning(kind="profile", user_id=alice, content={"i": i}))

        bob_sid = _uid("b1")
        await store.upsert_session(Session(session_id=bob_sid, user_id=bob), expected_version=None)
        bob_runs = [await store.append_run(_turn(bob_sid, i, bob)) for i in range(2)]
        bob_session = await store.get_session(bob_sid)
        bob_memory = await store.upsert_memory(Memory(user_id=bob, content="bob fact"))
        bob_learning = await store.upsert_learning(
            Learning(kind="profile", user_id=bob, content={"name": "Bob"})
        )

        counts = await store.forget_user(alice)

        assert {
            table: counts[table] for table in ("sessions", "runs", "memories", "learnings")
        } == {
            "sessions": 2,
            "runs": 8,
            "memories": 2,
            "learnings": 2,
        }
        assert await store.list_sessions(user_id=alice) == []
        for sid in alice_sessions:
            assert await store.get_session(sid) is None
            assert await store.get_last_runs(sid, 10) == []
        assert await store.list_memories(alice) == []
        assert await store.search_memories(alice, "alice fact") == []
        assert await store.query_learnings(user_id=alice) == []

        assert await store.get_session(bob_sid) == bob_session
        assert await store.get_last_runs(bob_sid, 10) == bob_runs
        assert await store.list_memories(bob) == [bob_memory]
        assert await store.query_learnings(user_id=bob) == [bob_learning]

        again = await store.forget_user(alice)
        assert all(again[table] == 0 for table in ("sessions", "runs", "memories", "learnings"))

    async def test_create_tables_is_idempotent(self, store: Any) -> None:
        sid = _uid("s")
        await store.create_tables()
        await store.upsert_session(Session(session_id=sid), expected_version=None)
        first = await store.append_run(_turn(sid, 0))
        session = await store.get_session(sid)
        await store.create_tables()
        await store.create_tables()

        assert await store.get_session(sid) == session
        assert await store.get_last_runs(sid, 10) == [first]
        assert (await store.append_run(_turn(sid, 1))).seq == 2

    async def test_data_persists_in_a_second_db_object(self, store: Any, recipe: Recipe) -> None:
        user, sid = _uid("u"), _uid("s")
        await store.upsert_session(
            Session(session_id=sid, user_id=user, state={"k": "v"}), expected_version=None
        )
        run = await store.append_run(_turn(sid, 0, user))
        session = await store.get_session(sid)
        memory = await store.upsert_memory(Memory(user_id=user, content="persisted"))
        learning = await store.upsert_learning(Learning(kind="k", user_id=user, content={"a": 1}))

        second = await self._open(recipe)
        try:
            assert await second.get_session(sid) == session
            assert await second.get_last_runs(sid, 10) == [run]
            assert await second.get_memory(memory.memory_id) == memory
            assert await second.get_learning(learning.learning_id) == learning
            assert (await second.append_run(_turn(sid, 1, user))).seq == 2
        finally:
            await self._close(second)
        assert _seqs(await store.get_last_runs(sid, 10)) == [1, 2]

    async def test_first_use_from_several_processes_at_once(self, recipe: Recipe) -> None:
        """Several processes build the db and call create_tables at the same moment on a
        database nobody has used yet, then append: no error, no lost run."""
        sid, n = _uid("s"), 5
        seqs = await self._in_processes(
            "first_use", recipe, {"session_id": sid, "n": n, "barrier_first": True}
        )
        assert sorted(seq for child in seqs for seq in child) == list(range(1, PROCESSES * n + 1))

        store = await self._open(recipe)
        try:
            assert _seqs(await store.get_last_runs(sid, 100)) == list(range(1, PROCESSES * n + 1))
        finally:
            await self._close(store)


# -- the two suites -----------------------------------------------------------------------


class BackendConformance(_Scenarios):
    """The conformance suite for a sync ``BaseDb``: subclass it as ``Test...``.

    Provide ``db_factory(self, tmp_path)`` and ``count_reads(self, db, fn) -> int`` (``fn()``
    performs the read to measure). See the module docstring.
    """

    base_class = BaseDb

    def count_reads(self, db: BaseDb, fn: Callable[[], Any]) -> int:
        raise NotImplementedError(
            f"{type(self).__name__} must define count_reads(self, db, fn) -> int: call fn() "
            "once and return a backend-specific measure of the rows/work it read"
        )

    @pytest.fixture
    def db(self, recipe: Recipe) -> Iterator[BaseDb]:
        db = build_db(recipe)
        try:
            yield db
        finally:
            db.close()

    @pytest.fixture
    def store(self, db: BaseDb) -> _AwaitableDb:
        return _AwaitableDb(db)

    async def _open(self, recipe: Recipe) -> _AwaitableDb:
        return _AwaitableDb(build_db(recipe))

    async def _close(self, store: _AwaitableDb) -> None:
        store.wrapped.close()

    async def _measure(self, db: BaseDb, read: Callable[[], Awaitable[Any]]) -> tuple[int, Any]:
        results = []
        count = self.count_reads(db, lambda: results.append(_drive(read())))
        assert len(results) == 1, "count_reads must call fn exactly once"
        return count, results[0]

    async def _concurrently(self, calls: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda call: _drive(call()), calls))

    async def _append_many(self, store: _AwaitableDb, runs: Sequence[Run]) -> list[Run]:
        append = store.wrapped.append_run
        return [append(run) for run in runs]

    async def _in_processes(self, task: str, recipe: Recipe, params: dict[str, Any]) -> list[Any]:
        return _run_in_processes(task, recipe, False, {"attempts": 1, **params})


class AsyncBackendConformance(_Scenarios):
    """The conformance suite for an ``AsyncBaseDb``: subclass it as ``Test...``.

    Provide ``db_factory(self, tmp_path)`` and ``async count_reads(self, db, fn) -> int``
    (``await fn()`` performs the read to measure). See the module docstring.
    """

    pytestmark = pytest.mark.asyncio
    base_class = AsyncBaseDb
    #: Appends the 10,000-run seed keeps in flight at once.
    seed_concurrency: ClassVar[int] = 1

    async def count_reads(self, db: AsyncBaseDb, fn: Callable[[], Awaitable[Any]]) -> int:
        raise NotImplementedError(
            f"{type(self).__name__} must define async count_reads(self, db, fn) -> int: "
            "await fn() once and return a backend-specific measure of the rows/work it read"
        )

    @pytest_asyncio.fixture
    async def db(self, recipe: Recipe) -> Any:
        db = build_db(recipe)
        try:
            yield db
        finally:
            await db.close()

    @pytest.fixture
    def store(self, db: AsyncBaseDb) -> AsyncBaseDb:
        return db

    async def _open(self, recipe: Recipe) -> AsyncBaseDb:
        return build_db(recipe)

    async def _close(self, store: AsyncBaseDb) -> None:
        await store.close()

    async def _measure(
        self, db: AsyncBaseDb, read: Callable[[], Awaitable[Any]]
    ) -> tuple[int, Any]:
        results = []

        async def fn() -> None:
            results.append(await read())

        count = await self.count_reads(db, fn)
        assert len(results) == 1, "count_reads must await fn() exactly once"
        return count, results[0]

    async def _concurrently(self, calls: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
        return list(await asyncio.gather(*(call() for call in calls)))

    async def _append_many(self, store: AsyncBaseDb, runs: Sequence[Run]) -> list[Run]:
        stored: list[Run] = []
        step = max(1, self.seed_concurrency)
        for start in range(0, len(runs), step):
            chunk = runs[start : start + step]
            stored.extend(await asyncio.gather(*(store.append_run(run) for run in chunk)))
        return stored

    async def _in_processes(self, task: str, recipe: Recipe, params: dict[str, Any]) -> list[Any]:
        return await asyncio.to_thread(
            _run_in_processes, task, recipe, True, {"attempts": 3, **params}
        )


for _name in dir(_Scenarios):  # the scenarios of _Scenarios and of its mixins
    _scenario = getattr(_Scenarios, _name)
    if _name.startswith("test_") and inspect.iscoroutinefunction(_scenario):
        setattr(BackendConformance, _name, _sync_test(_scenario))
del _name, _scenario
