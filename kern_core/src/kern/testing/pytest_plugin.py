"""kern's pytest plugin: the test kit's shared fixtures, for kern's tests and everyone else's.

Registered through kern-core's ``pytest11`` entry point (``kern``), so pytest loads it in any
environment where kern-core is installed: a backend plugin's tests get the same fixtures as
kern's own, with no conftest copied from kern (disable it with ``-p no:kern``). It gives:

- ``scripted_server``: one ``ScriptedServer`` (kern's OpenAI-compatible model on loopback)
  for the whole test session; ``scripted``: the same server, cleared before and after the
  test (no requests recorded, nothing queued). A module that needs a server of its own
  overrides ``scripted`` with its own fixture, as pytest allows.
- the ``kern_requires`` marker that ``kern.testing.capabilities.requires`` puts on the
  conformance scenarios that depend on a capability;
- readable assertion failures from the kit's scenario modules (``ASSERTION_REWRITTEN``),
  registered before any test module imports them.

It imports nothing but pytest at load time: it is loaded in every pytest run of the
environment, including ones that never use kern.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from kern.testing.scripted_server import ScriptedServer

__all__ = ["ASSERTION_REWRITTEN", "scripted", "scripted_server"]

#: The kit's modules whose assertions are scenario checks (a package covers its modules).
ASSERTION_REWRITTEN = (
    "kern.testing.conformance",
    "kern.testing.isolation",
    "kern.testing.turns",
    "kern.testing.learning",
    "kern.testing.files",
    "kern.testing.scenarios",
)

pytest.register_assert_rewrite(*ASSERTION_REWRITTEN)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "kern_requires(*capabilities): a kern conformance scenario that runs only for a "
        "backend whose Capabilities declare every one of them (kern.testing.capabilities)",
    )


@pytest.fixture(scope="session")
def scripted_server() -> Iterator[ScriptedServer]:
    """kern's scripted model server, started once for the test session."""
    from kern.testing.scripted_server import ScriptedServer

    with ScriptedServer() as server:
        yield server


@pytest.fixture
def scripted(scripted_server: ScriptedServer) -> Iterator[ScriptedServer]:
    """The scripted model server with no requests recorded and nothing queued."""
    scripted_server.clear()
    yield scripted_server
    scripted_server.clear()
