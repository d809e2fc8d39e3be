"""What every topic of the suite stands on: the subclass's hooks, the recipe, capabilities.

``ScenarioBase`` holds what a backend's test class provides (``db_factory``,
``capabilities``) and the hooks each suite fills in (``BackendConformance`` with threads and
``_drive``, ``AsyncBackendConformance`` with tasks), so that a topic mixin's scenarios can be
written once against ``store`` and these hooks, whichever suite runs them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from kern.records import Run
from kern.testing.capabilities import Capabilities, skip_unless_capable
from kern.testing.conformance.recipes import Recipe, _check_recipe

__all__ = ["ScenarioBase"]


class ScenarioBase:
    """The base of every topic mixin (see the module docstring). Not collected itself."""

    #: The contract class the suite's db must implement.
    base_class: ClassVar[type]
    #: What the backend does of the contract's optional behaviours: a subclass sets its own
    #: (``kern.testing.capabilities``); scenarios needing one it lacks are skipped.
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not isinstance(cls.capabilities, Capabilities):
            raise TypeError(
                f"{cls.__name__}.capabilities must be a kern.testing.capabilities.Capabilities "
                f"(e.g. Capabilities(multi_process=False)), not {cls.capabilities!r}"
            )

    @pytest.fixture(autouse=True)
    def _declared_capabilities(self, request: pytest.FixtureRequest) -> None:
        """Skip a scenario that ``requires`` a capability this class declares it lacks."""
        skip_unless_capable(type(self), self.capabilities, request.node)

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
