"""A self-check of ``kern.testing.conformance``: the machinery, not a backend.

Every scenario must exist in both suites (a plain function in the sync one, a coroutine in
the async one), the sync driver must really run the scenario body, pytest must collect a
plugin's ``Test*`` subclasses but never the base classes, and a capability a backend
declares it lacks must skip exactly the scenarios that need it, saying which.
"""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kern.testing.capabilities import MARK
from kern.testing.conformance import (
    AsyncBackendConformance,
    BackendConformance,
    Capabilities,
    build_db,
    requires,
)
from kern.testing.conformance._sync import _AwaitableDb, _drive
from kern.testing.conformance.recipes import _check_recipe
from kern.testing.conformance.scenarios import Scenarios

SCENARIOS = sorted(  # written on a topic mixin composed into Scenarios
    name
    for name in dir(Scenarios)
    if name.startswith("test_") and inspect.iscoroutinefunction(getattr(Scenarios, name))
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
    for cls in (Scenarios, BackendConformance, AsyncBackendConformance):
        assert not cls.__name__.startswith("Test")


class _Stub:
    def __init__(self, session: object) -> None:
        self.session = session

    def get_session(self, session_id: str) -> object:
        return self.session


def test_sync_driver_runs_the_scenario_body() -> None:
    suite = BackendConformance()
    suite.test_get_unknown_session_is_none(store=_AwaitableDb(_Stub(None)))
    with pytest.raises(AssertionError):
        suite.test_get_unknown_session_is_none(store=_AwaitableDb(_Stub("found")))


def test_drive_performs_awaited_db_calls_with_kerns_driver() -> None:
    async def scenario() -> object:
        return await _AwaitableDb(_Stub("found")).get_session("s")

    assert _drive(scenario()) == "found"


def test_drive_refuses_a_scenario_that_suspends() -> None:
    async def suspends() -> None:
        await asyncio.sleep(0)

    with pytest.raises(TypeError, match="suspends"):
        _drive(suspends())


def test_recipes_are_checked() -> None:
    assert _check_recipe(("collections:OrderedDict", {})) == (
        "collections:OrderedDict",
        {},
    )
    assert build_db(("collections:OrderedDict", {"a": 1})) == {"a": 1}
    for bad in ("kern.db.sqlite:SqliteDb", ("no-colon", {}), ("m:C", {"f": lambda: None})):
        with pytest.raises(TypeError):
            _check_recipe(bad)


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


# -- capabilities ---------------------------------------------------------------------------


def _required(test: object) -> set[str]:
    return {
        name for mark in getattr(test, "pytestmark", []) if mark.name == MARK for name in mark.args
    }


def test_capabilities_default_to_the_full_contract() -> None:
    full = Capabilities()
    assert all(getattr(full, field) is True for field in full.__dataclass_fields__)
    with pytest.raises(AttributeError):
        full.multi_process = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        Capabilities(persistent=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="multi_process"):
        Capabilities(persistent=False)  # processes share only a database that persists
    assert Capabilities(persistent=False, multi_process=False).lacking(
        ["persistent", "ranked_search", "multi_process"]
    ) == ["persistent", "multi_process"]


def test_requires_takes_only_capability_names() -> None:
    for bad in ((), ("multiprocess",), ("persistent", "typo")):
        with pytest.raises(ValueError, match="Capabilities field names"):
            requires(*bad)


def test_every_capability_gates_a_scenario_in_both_suites() -> None:
    gated: dict[str, set[str]] = {}
    for name in SCENARIOS:
        needs = _required(getattr(AsyncBackendConformance, name))
        assert _required(getattr(BackendConformance, name)) == needs, name
        for capability in needs:
            gated.setdefault(capability, set()).add(name)
    assert set(gated) == set(Capabilities.__dataclass_fields__)
    assert gated["multi_process"] == {
        "test_concurrent_creators_exactly_one_wins",
        "test_concurrent_state_updates_lose_nothing",
        "test_concurrent_appends_from_processes",
        "test_first_use_from_several_processes_at_once",
    }
    assert gated["raw_storage_scan"] == {
        "test_forget_user_leaves_no_raw_trace",
        "test_vector_leaves_no_raw_trace_after_delete_or_forget",
        "test_encrypted_text_never_reaches_storage_and_reads_back",
    }


def test_capabilities_must_be_declared_with_the_class() -> None:
    with pytest.raises(TypeError, match="Capabilities"):

        class TestBad(BackendConformance):
            capabilities = {"multi_process": False}  # type: ignore[assignment]


def test_a_lacking_capability_skips_its_scenarios_and_says_which(tmp_path: Path) -> None:
    (tmp_path / "test_memory_only.py").write_text(
        textwrap.dedent(
            """
            from kern.testing.conformance import (
                AsyncBackendConformance, BackendConformance, Capabilities,
            )

            LACKING = Capabilities(multi_process=False, persistent=False)

            class TestMine(BackendConformance):
                capabilities = LACKING

                def db_factory(self, tmp_path):
                    return "kern.db.sqlite:SqliteDb", {"db_file": str(tmp_path / "k.db")}

            class TestAsyncMine(AsyncBackendConformance):
                capabilities = LACKING

                def db_factory(self, tmp_path):
                    return "kern.db.sqlite:AsyncSqliteDb", {"db_file": str(tmp_path / "k.db")}
            """
        )
    )
    chosen = (
        "test_get_unknown_session_is_none or test_data_persists_in_a_second_db_object "
        "or test_concurrent_appends_from_processes"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-k", chosen],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed, 4 skipped" in done.stdout, done.stdout
    skips = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skips) == 4, done.stdout
    for cls in ("TestMine", "TestAsyncMine"):
        assert (
            f"needs the 'persistent' capability: {cls}.capabilities declares "
            "Capabilities(persistent=False)"
        ) in done.stdout, done.stdout
        assert (
            f"needs the 'multi_process' capability: {cls}.capabilities declares "
            "Capabilities(multi_process=False)"
        ) in done.stdout, done.stdout
