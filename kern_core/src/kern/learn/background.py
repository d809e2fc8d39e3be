"""Background learning: the answer first, the extraction after, and none lost to a crash.

With ``LearningMachine(background=True)`` a turn stores its run, writes a *marker* saying
"this run's learning is pending", and returns (or streams its last event); the extraction
and the stores' writes run afterwards: on the running event loop as a task for ``arun``,
on a small thread pool shared by the process for ``run`` (the same turn generator, driven
with the same performers as a sync turn). Failures there are logged, never raised into a
later turn. ``lm.wait()`` / ``await lm.await_pending()`` wait for what is scheduled.

How it is built on the storage contract as it is (nothing new for the five backends)
-----------------------------------------------------------------------------------

*Marker.* One session row per pending run, written right after the run's commit (before the
answer is returned): ``session_id = "kern.learning.pending." + run_id``, ``component_id =
MARKER_COMPONENT`` (so ``list_sessions(component_id=...)`` finds them through the index every
backend has), ``user_id`` the run's user (``forget_user`` removes it with the user's runs).
Its state names the run and its scope, and the *lease*: the owner (a random token per
process, its host and pid) and ``lease_until`` (wall-clock seconds). It is created with
``upsert_session(expected_version=None)`` already leased to the process that answered, which
is the one that goes on to learn from the run. A crash between the commit and the marker
(two writes in a row, no model call between them) loses that run's learning; a crash at any
later moment does not.

*Claim.* A process takes a marker with a compare-and-set: ``upsert_session(marker,
expected_version=<the version it read>)`` with itself as owner and a new lease. The
contract makes that atomic on every backend (a stale version raises
``VersionConflictError`` and changes nothing), so of several processes that read the same
version exactly one gets it. A marker may be claimed when its lease has run out, or when its
owner is visibly gone: same host and its pid no longer exists (or is this process's pid with
another token: a restarted container), or this process's own marker that no job of this
process is working on. A claimer that crashes is retried once its lease runs out; after
``MAX_CLAIMS`` claims the run's learning is given up (logged), so one poisonous run cannot
come back forever.

*Exactly once.* The holder extracts (the slow model call), then takes the *commit point*:
a second compare-and-set on the version of its claim. Only if that succeeds does it write
what was learned, and then it deletes the marker. Whoever claims a marker bumps its
version, so a holder whose lease ran out and was taken over fails the commit point and
writes nothing; of two processes resuming at once, one claims and the other skips. The one
window left is a holder that dies after its commit point and before the delete: the next
holder writes again (so does one whose writes outlast the lease the commit point renewed),
and the stores refuse that restatement (a memory that repeats a stored one refreshes it,
profile and document stores merge the same fields to the same values, collection stores
skip duplicates), each row still naming ``source_run_id``. Within one process a set of the
markers its jobs hold keeps two of its own jobs off one marker before they reach the
compare-and-set.

*Resume.* The first turn of a background machine in a process detaches a resume job for the
markers other processes left, and ``lm.resume_pending()`` / ``await lm.aresume_pending()``
run one (this process's own markers included, e.g. one whose extraction failed): up to
``limit`` markers, each claimed and finished as above (a marker whose run is gone, deleted
with its session or user, is removed). The extraction metrics of a background run go to the
log only: the contract updates a run only while it is ``running``, and a stored run is
``completed``.

*Scheduling.* The turn hands the job to its driver as an effect, ``Detach``: the agent's
drivers use ``BackgroundPerformer`` / ``AsyncBackgroundPerformer`` (the standard performers
plus that one effect), so the turn stays one generator for sync and async. A driver whose
performer does not know ``Detach`` runs the job in the turn instead (foreground).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import JsonValue

from kern import storage
from kern.effects import Effect, Turn, adrive, arun, drive, run
from kern.errors import VersionConflictError
from kern.learn.scope import LearningScope
from kern.models.base import Model
from kern.performers import AsyncPerformer, Performer
from kern.records import Run, Session

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from kern.db.base import AsyncBaseDb, BaseDb
    from kern.learn.machine import LearningMachine

T = TypeVar("T")

log = logging.getLogger("kern.learn")

#: The ``component_id`` of marker rows: what ``resume`` lists.
MARKER_COMPONENT = "kern.learning.pending"
#: A marker's ``session_id`` is this prefix and the run's id.
MARKER_PREFIX = "kern.learning.pending."
#: How long a claim holds before another process may take the marker over (seconds).
LEASE_SECONDS = 120.0
#: Claims after which a run's learning is given up.
MAX_CLAIMS = 3
#: Markers one ``resume`` looks at.
RESUME_LIMIT = 100
#: Threads of the process's pool for sync runs.
POOL_THREADS = 4

_HOST = socket.gethostname()
_state_lock = threading.Lock()
_token = uuid.uuid4().hex
#: Markers a job of this process is working on (their ids).
_in_flight: set[str] = set()
_pool: ThreadPoolExecutor | None = None


def _after_fork() -> None:
    """A forked child is another process: its own token, no jobs, no pool."""
    global _token, _pool, _state_lock
    _token = uuid.uuid4().hex
    _in_flight.clear()
    _pool = None
    _state_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


# -- markers --------------------------------------------------------------------------------


def marker_id(run_id: str) -> str:
    """The marker row of ``run_id`` (a hash when the run's id is too long to prefix)."""
    if len(MARKER_PREFIX) + len(run_id) <= 255:
        return MARKER_PREFIX + run_id
    return MARKER_PREFIX + hashlib.sha256(run_id.encode()).hexdigest()


def _lease(lease_seconds: float) -> dict[str, JsonValue]:
    return {
        "owner": _token,
        "host": _HOST,
        "pid": os.getpid(),
        "lease_until": time.time() + lease_seconds,
    }


def new_marker(scope: LearningScope, run: Run, lease_seconds: float) -> Session:
    """The marker of ``run``, leased to this process."""
    state: dict[str, JsonValue] = {
        "run_id": run.run_id,
        "session_id": scope.session_id,
        "user_id": scope.user_id,
        "agent_id": scope.agent_id,
        "backend": scope.backend,
        "claims": 1,
        **_lease(lease_seconds),
    }
    return Session(
        session_id=marker_id(run.run_id),
        component_id=MARKER_COMPONENT,
        user_id=scope.user_id,
        name="pending learning",
        state=state,
    )


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # no harmless probe elsewhere: trust the lease
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def claimable(marker: Session, now: float | None = None, *, own: bool = True) -> bool:
    """Whether this process may take ``marker`` (see the module docstring); ``own=False``
    leaves out the markers this process wrote (the resume a turn starts is for others')."""
    state = marker.state
    if state.get("owner") == _token:
        with _state_lock:
            return own and marker.session_id not in _in_flight
    lease_until = state.get("lease_until")
    if not isinstance(lease_until, int | float) or lease_until <= (now or time.time()):
        return True
    pid = state.get("pid")
    if state.get("host") != _HOST or not isinstance(pid, int):
        return False
    return pid == os.getpid() or not _pid_alive(pid)


def _hold(marker: str) -> bool:
    """Note that a job of this process works on ``marker``; False if one already does."""
    with _state_lock:
        if marker in _in_flight:
            return False
        _in_flight.add(marker)
        return True


def _release(marker: str) -> None:
    with _state_lock:
        _in_flight.discard(marker)


def claim(marker: Session, lease_seconds: float, *, count: bool = True) -> Turn[Session | None]:
    """``marker`` leased to this process (compare-and-set), or None if another has it.
    ``count=False`` renews a lease this process holds (the commit point) without counting
    a claim."""
    claims = marker.state.get("claims")
    state = {
        **marker.state,
        **_lease(lease_seconds),
        "claims": (claims if isinstance(claims, int) else 0) + count,
    }
    try:
        return (
            yield from storage.upsert_session(
                marker.model_copy(update={"state": state}), expected_version=marker.version
            )
        )
    except VersionConflictError:
        return None


# -- one run's learning -----------------------------------------------------------------------


def finish(
    machine: LearningMachine,
    marker: Session | None,
    scope: LearningScope,
    run: Run,
    model: Model,
) -> Turn[bool]:
    """Extract, take the commit point, let the stores write, remove the marker. False when
    nothing was written (another process took the marker over, or every extraction call
    failed: the marker stays for a later resume)."""
    from kern.learn.machine import EXTRACTION_METRICS

    extracted = yield from machine.extract(scope, run, model)
    metrics = run.metrics.get(EXTRACTION_METRICS)
    log.debug("background extraction of run %s: %s", run.run_id, metrics)
    if (
        isinstance(metrics, dict)
        and metrics.get("calls")
        and (metrics.get("failed_calls") == metrics.get("calls"))
    ):
        log.warning("the extraction of run %s failed; it is retried later", run.run_id)
        return False
    # The commit point: the marker is still ours, or another process took it over meanwhile.
    if (
        marker is not None
        and (yield from claim(marker, machine.lease_seconds, count=False)) is None
    ):
        log.info("the learning of run %s was taken over by another process", run.run_id)
        return False
    yield from machine.process(scope, run, model, extracted)
    if marker is not None:
        yield from storage.delete_session(marker.session_id)
    return True


def _guarded(marker: str, job: Turn[T], what: str) -> Turn[T | None]:
    """``job`` with its failure logged, never raised, and the marker released after."""
    try:
        return (yield from job)
    except Exception:
        log.exception("background learning failed (%s); a later resume retries it", what)
        return None
    finally:
        _release(marker)


def learn_later(
    machine: LearningMachine, scope: LearningScope, run: Run, model: Model
) -> Turn[None]:
    """In the turn, after the run is stored: mark its learning pending and detach the job
    that does it (and, on a machine's first turn, a resume of what other processes left)."""
    run = run.model_copy(deep=True)  # the caller's output is not changed behind its back
    marker: Session | None = new_marker(scope, run, machine.lease_seconds)
    assert marker is not None
    name = marker.session_id
    _hold(name)
    try:
        marker = yield from storage.upsert_session(marker, expected_version=None)
    except VersionConflictError:
        _release(name)
        log.info("the learning of run %s is already pending elsewhere", run.run_id)
        return
    except Exception:
        log.warning(
            "could not mark the learning of run %s pending; it runs, but a crash loses it",
            run.run_id,
            exc_info=True,
        )
        marker = None
    job = _guarded(name, finish(machine, marker, scope, run, model), f"run {run.run_id}")
    yield from detach(job, machine.jobs)
    if machine.jobs.first_turn():
        yield from detach(resume_job(machine, model, scope.backend), machine.jobs)


def resume(
    machine: LearningMachine,
    model: Model,
    backend: str | None,
    limit: int = RESUME_LIMIT,
    *,
    own: bool = True,
) -> Turn[int]:
    """Finish up to ``limit`` pending runs that no live process holds; how many were.
    ``own=False``: only those other processes left."""
    markers = yield from storage.list_sessions(component_id=MARKER_COMPONENT, limit=limit)
    finished = 0
    for marker in markers:
        if not marker.session_id.startswith(MARKER_PREFIX):
            continue
        if not claimable(marker, own=own):
            continue
        if not _hold(marker.session_id):  # before the claim: no twin in this process
            continue
        held = yield from claim(marker, machine.lease_seconds)
        if held is None:
            _release(marker.session_id)
            continue
        done = yield from _guarded(
            held.session_id, _resume_one(machine, held, model, backend), held.session_id
        )
        finished += bool(done)
    return finished


def _resume_one(
    machine: LearningMachine, marker: Session, model: Model, backend: str | None
) -> Turn[bool]:
    state = marker.state
    run_id, claims = state.get("run_id"), state.get("claims")
    stored = (yield from storage.get_run(run_id)) if isinstance(run_id, str) else None
    if stored is None or (isinstance(claims, int) and claims > MAX_CLAIMS):
        if stored is not None:
            log.warning("gave up the learning of run %s after %d claims", run_id, MAX_CLAIMS)
        yield from storage.delete_session(marker.session_id)
        return False
    scope = LearningScope(
        _text(state.get("user_id")),
        stored.session_id,
        _text(state.get("agent_id")),
        stored.run_id,
        backend,
    )
    return (yield from finish(machine, marker, scope, stored, model))


def _text(value: JsonValue) -> str | None:
    return value if isinstance(value, str) else None


def resume_job(machine: LearningMachine, model: Model, backend: str | None) -> Turn[int | None]:
    """What a machine's first turn in a process detaches: finish what others left."""
    return _guarded("", resume(machine, model, backend, own=False), "resume")


# -- scheduling ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Detach(Effect[None]):
    """Run ``job`` after the turn, off its path: the background performers below do it."""

    job: Turn[Any]
    jobs: Jobs


def detach(job: Turn[Any], jobs: Jobs) -> Turn[None]:
    """Hand ``job`` to the driver; a driver whose performer cannot run work in the
    background (it raises ``TypeError`` for an effect it does not know) runs it here."""
    try:
        yield from Detach(job, jobs)
    except TypeError:
        yield from job


def _pool_of_process() -> ThreadPoolExecutor:
    global _pool
    with _state_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="kern-learning")
        return _pool


class Jobs:
    """A machine's scheduled jobs (shared by its bound copies), to wait for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: set[Future[Any]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._turns = 0

    def first_turn(self) -> bool:
        """True once: for the machine's first background turn (it starts a resume)."""
        with self._lock:
            self._turns += 1
            return self._turns == 1

    def submit(self, job: Turn[Any], db: BaseDb | AsyncBaseDb | None) -> None:
        """Run ``job`` on the process's pool, with blocking calls."""
        future = _pool_of_process().submit(run, job, Performer(db))
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._forget_future)

    def spawn(self, job: Turn[Any], db: BaseDb | AsyncBaseDb | None) -> None:
        """Run ``job`` as a task of the running loop."""
        task = asyncio.get_running_loop().create_task(arun(job, AsyncPerformer(db)))
        with self._lock:
            self._tasks.add(task)
        task.add_done_callback(self._forget_task)

    def _forget_future(self, future: Future[Any]) -> None:
        with self._lock:
            self._futures.discard(future)

    def _forget_task(self, task: asyncio.Task[Any]) -> None:
        with self._lock:
            self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # pragma: no cover
            log.error("background learning failed", exc_info=task.exception())

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the jobs on the thread pool; True if none is left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                futures = set(self._futures)
            if not futures:
                return True
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            _, pending = wait_futures(futures, timeout=left)
            if pending and deadline is not None and time.monotonic() >= deadline:
                return False

    async def await_pending(self, timeout: float | None = None) -> bool:
        """Wait for the tasks on this loop and the jobs on the pool; True if none is left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                tasks = {t for t in self._tasks if t.get_loop() is loop}
                futures = set(self._futures)
            waiting = [*tasks, *(asyncio.wrap_future(f) for f in futures)]
            if not waiting:
                return True
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            _, pending = await asyncio.wait(waiting, timeout=left)
            if pending and deadline is not None and time.monotonic() >= deadline:
                return False


class BackgroundPerformer(Performer):
    """``Performer`` that also runs ``Detach`` on the process's thread pool."""

    def __call__(self, effect: Effect[Any]) -> Any:
        if isinstance(effect, Detach):
            effect.jobs.submit(effect.job, self.db)
            return None
        return super().__call__(effect)


class AsyncBackgroundPerformer(AsyncPerformer):
    """``AsyncPerformer`` that also runs ``Detach`` as a task of the running loop."""

    async def __call__(self, effect: Effect[Any]) -> Any:
        if isinstance(effect, Detach):
            effect.jobs.spawn(effect.job, self.db)
            return None
        return await super().__call__(effect)


def run_turn(turn: Turn[T], db: BaseDb | AsyncBaseDb | None) -> T:
    """``kern.performers.run_turn``, with detached jobs run on the pool."""
    return run(turn, BackgroundPerformer(db))


async def arun_turn(turn: Turn[T], db: BaseDb | AsyncBaseDb | None) -> T:
    """``kern.performers.arun_turn``, with detached jobs run as tasks."""
    return await arun(turn, AsyncBackgroundPerformer(db))


def stream_turn(turn: Turn[T], db: BaseDb | AsyncBaseDb | None) -> Generator[Any, None, T]:
    """``kern.performers.stream_turn``, with detached jobs run on the pool."""
    return drive(turn, BackgroundPerformer(db, stream=True))


def astream_turn(turn: Turn[T], db: BaseDb | AsyncBaseDb | None) -> AsyncIterator[Any]:
    """``kern.performers.astream_turn``, with detached jobs run as tasks."""
    return adrive(turn, AsyncBackgroundPerformer(db, stream=True))


__all__ = [
    "LEASE_SECONDS",
    "MARKER_COMPONENT",
    "AsyncBackgroundPerformer",
    "BackgroundPerformer",
    "Detach",
    "Jobs",
    "arun_turn",
    "astream_turn",
    "claim",
    "claimable",
    "learn_later",
    "marker_id",
    "resume",
    "run_turn",
    "stream_turn",
]
