"""Concurrency: writers racing on one session, from several processes and within one.

The process cases run in ``PROCESSES`` child processes (``processes``) and need the
``multi_process`` capability; the in-process case needs ``concurrent_use``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from kern.records import Run, Session
from kern.testing.capabilities import requires
from kern.testing.conformance.base import ScenarioBase, Store
from kern.testing.conformance.common import _seq, _seqs, _turn, _uid
from kern.testing.conformance.processes import PROCESSES
from kern.testing.conformance.recipes import Recipe

__all__ = ["ConcurrencyScenarios"]

#: Appends of each process in the concurrency acceptance case.
APPENDS_PER_PROCESS = 50


class ConcurrencyScenarios(ScenarioBase):
    """Creators, compare-and-set writers and appenders at once: nothing lost, nothing doubled."""

    @requires("multi_process")
    async def test_concurrent_creators_exactly_one_wins(self, store: Store, recipe: Recipe) -> None:
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
        assert stored is not None
        assert stored.version == 1
        assert stored.state == {"writer": winners[0].removeprefix("won:")}

    @requires("multi_process")
    async def test_concurrent_state_updates_lose_nothing(
        self, store: Store, recipe: Recipe
    ) -> None:
        """Processes increment a counter in session state by read/compare-and-set/retry:
        no increment is lost to a silent overwrite."""
        sid, n = _uid("counter"), 10
        await store.upsert_session(
            Session(session_id=sid, state={"count": 0, "log": []}), expected_version=None
        )
        await self._in_processes("increment", recipe, {"session_id": sid, "n": n})

        stored = await store.get_session(sid)
        assert stored is not None
        assert stored.state["count"] == PROCESSES * n
        log = stored.state["log"]
        assert isinstance(log, list)
        assert len(log) == len(set(log)) == PROCESSES * n
        assert stored.version == 1 + PROCESSES * n

    @requires("multi_process")
    async def test_concurrent_appends_from_processes(self, store: Store, recipe: Recipe) -> None:
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

    @requires("concurrent_use")
    async def test_concurrent_appends_in_one_process(self, store: Store) -> None:
        """Appends racing on one db object (threads in the sync suite, tasks in the async
        one) also get distinct, gapless seqs."""
        sid, n = _uid("s"), 40

        def append(i: int) -> Callable[[], Awaitable[Run]]:
            return lambda: store.append_run(_turn(sid, i))

        stored = await self._concurrently([append(i) for i in range(n)])
        assert sorted(_seq(run) for run in stored) == list(range(1, n + 1))
        assert _seqs(await store.get_last_runs(sid, n)) == list(range(1, n + 1))

    @requires("multi_process")
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
