"""The concurrency cases' child processes: a "spawn" pool started once per test session.

Why processes and not threads: the contract promises atomic ``seq`` and compare-and-set
sessions to writers in *different* processes, whose only shared thing is the database. Each
child builds its own db from the recipe, waits at a barrier so that all of them start
together, does its part and returns its payload (see ``_run_in_processes``). The functions
are module level so that "spawn" workers can import them.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pytest

from kern.db.base import AsyncBaseDb, BaseDb
from kern.errors import VersionConflictError
from kern.records import Session
from kern.testing.conformance.common import _turn
from kern.testing.conformance.recipes import Recipe, build_db

#: Processes and appends of the concurrency acceptance case.
PROCESSES = 4
#: Seconds a child process may take before the suite gives up on it (a hang guard only).
CHILD_TIMEOUT = 300.0


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
