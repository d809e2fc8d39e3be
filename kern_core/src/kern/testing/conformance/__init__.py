"""The storage-backend conformance suite: every kern backend runs it, first-party or not.

It checks a backend against the contract of ``kern.db.base`` (``BaseDb`` / ``AsyncBaseDb``):
compare-and-set sessions, atomic ``seq`` under concurrent writers from several processes,
history reads whose cost does not grow with the session, exact record round-trips, scoped
search, and a complete ``forget_user``; and, from ``kern.testing.isolation``, the checks of
ids and stored text at the contract's door (the injection table), ids that look like syntax,
user isolation and a ``forget_user`` that leaves no raw trace; and, from
``kern.testing.turns``, the atomic ``commit_turn``. It needs pytest and pytest-asyncio:
install ``kern-core[testing]``. kern's pytest plugin (``kern.testing.pytest_plugin``, loaded
through the ``pytest11`` entry point) rewrites the suite's assertions for readable failures.

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
    fails that case, unless it declares ``Capabilities(raw_storage_scan=False)``. In the
    async suite it may also be a coroutine.

Example: kern's own SQLite plugin (``plugins/kern-sqlite/tests/test_conformance.py``, where
``vm_instructions`` counts SQLite VM steps with a progress handler and ``sqlite_rows`` reads
every row of the prefix's tables)::

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
Each behaviour is written once, as an ``async def test_*`` method of a topic mixin composed
into ``scenarios.Scenarios`` (see Layout) that calls the contract through ``store`` and
awaits the result. In the async suite ``store`` is the async
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

Capabilities
------------
A backend that cannot (yet) do one of the contract's optional behaviours declares it, in one
object, instead of overriding scenarios with skips: ``capabilities = Capabilities(...)`` on
the test class (``kern.testing.capabilities``: ``multi_process``, ``persistent``,
``concurrent_use``, ``bounded_history_reads``, ``ranked_search``, ``raw_storage_scan``; every
one ``True`` by default, the full contract). Scenarios that depend on a capability say so
with ``requires(...)``, and the suite skips them for that class with a message naming the
capability::

    class TestMyMemoryDb(BackendConformance):
        capabilities = Capabilities(multi_process=False, persistent=False)

Layout
------
``kern.testing.conformance`` is a package; this module is its public face (import the suites,
``Capabilities``, ``Recipe`` and ``build_db`` from here). Each topic is a mixin in a module of
its own: ``sessions``, ``runs``, ``concurrency``, ``memories``, ``learnings``, ``lifecycle``,
``encryption`` (what ``kern.crypto`` needs of a backend: store what it is given),
``fork`` (``fork_session``: a session's history up to a seq, copied into a new one),
``retention`` (``apply_retention`` over ``retention_batch``: what a policy removes and keeps),
and ``kern.testing.isolation`` and ``kern.testing.turns``; ``scenarios`` composes them on
``base.ScenarioBase`` (the hooks, the recipe, capabilities), against ``base.Store``, the
type of ``store`` in both suites. ``sync_suite`` and ``async_suite`` turn them into the two
suites; ``_sync`` holds the sync suite's driver, ``processes`` the child processes of the
concurrency cases, ``recipes`` the recipe checks.
"""

from __future__ import annotations

from kern.testing.capabilities import Capabilities, requires
from kern.testing.conformance.async_suite import AsyncBackendConformance
from kern.testing.conformance.recipes import Recipe, build_db
from kern.testing.conformance.sync_suite import BackendConformance

__all__ = [
    "AsyncBackendConformance",
    "BackendConformance",
    "Capabilities",
    "Recipe",
    "build_db",
    "requires",
]
