"""A self-check of ``kern.testing.conformance``: the machinery, not a backend.

Every scenario must exist in both suites (a plain function in the sync one, a coroutine in
the async one), the sync driver must really run the scenario body, and pytest must collect
a plugin's ``Test*`` subclasses but never the base classes.
"""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.register_assert_rewrite("kern.testing.conformance")

from kern.testing import conformance  # noqa: E402
from kern.testing.conformance import (  # noqa: E402
    AsyncBackendConformance,
    BackendConformance,
    build_db,
)

SCENARIOS = sorted(  # written on _Scenarios or a topic mixin it inherits (kern.testing.isolation)
    name
    for name in dir(conformance._Scenarios)
    if name.startswith("test_")
    and inspect.iscoroutinefunction(getattr(conformance._Scenarios, name))
)


def test_scenarios_exist_in_both_suites() -> None:
    assert len(SCENARIOS) >= 40
    for name in SCENARIOS:
        sync_test = getattr(BackendConformance, name)
        async_test = getattr(AsyncBackendConformance, name)
        assert not inspect.iscoroutinefunction(sync_test), name
        assert inspect.iscoroutinefunction(async_test), name
        assert inspect.signature(sync_test) == inspect.signature(async_test), name
        assert sync_test.__doc__ == async_test.__doc__


def test_base_classes_are_not_collected() -> None:
    for cls in (conformance._Scenarios, BackendConformance, AsyncBackendConformance):
        assert not cls.__name__.startswith("Test")


class _Stub:
    def __init__(self, session: object) -> None:
        self.session = session

    def get_session(self, session_id: str) -> object:
        return self.session


def test_sync_driver_runs_the_scenario_body() -> None:
    suite = BackendConformance()
    suite.test_get_unknown_session_is_none(store=conformance._AwaitableDb(_Stub(None)))
    with pytest.raises(AssertionError):
        suite.test_get_unknown_session_is_none(store=conformance._AwaitableDb(_Stub("found")))


def test_drive_refuses_a_scenario_that_suspends() -> None:
    assert conformance._drive(conformance._Ready(42)) == 42

    async def suspends() -> None:
        await asyncio.sleep(0)

    with pytest.raises(TypeError, match="suspends"):
        conformance._drive(suspends())


def test_recipes_are_checked() -> None:
    assert conformance._check_recipe(("collections:OrderedDict", {})) == (
        "collections:OrderedDict",
        {},
    )
    assert build_db(("collections:OrderedDict", {"a": 1})) == {"a": 1}
    for bad in ("kern.db.sqlite:SqliteDb", ("no-colon", {}), ("m:C", {"f": lambda: None})):
        with pytest.raises(TypeError):
            conformance._check_recipe(bad)


def test_pytest_collects_subclasses_only(tmp_path: Path) -> None:
    (tmp_path / "test_plugin.py").write_text(
        textwrap.dedent(
            """
            from kern.testing.conformance import AsyncBackendConformance, BackendConformance

            class TestMine(BackendConformance):
                def db_factory(self, tmp_path):
                    return "mypkg:MyDb", {}

            class TestAsyncMine(AsyncBackendConformance):
                def db_factory(self, tmp_path):
                    return "mypkg:AsyncMyDb", {}
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    collected = [line for line in done.stdout.splitlines() if "::" in line]
    assert sorted(collected) == sorted(
        f"test_plugin.py::{cls}::{name}"
        for cls in ("TestMine", "TestAsyncMine")
        for name in SCENARIOS
    )
