"""What a backend declares it can do, so that the suite, not the backend, skips what it cannot.

Modelled on SQLAlchemy's testing ``Requirements``: a backend's test class fills in one
``Capabilities`` object, and each scenario that depends on a capability says so with
``requires(...)``. Why not let a backend override a scenario with a skip: such overrides hide
*which* behaviour is missing, go stale when the backend catches up, and silently stop running
a scenario that is renamed. A declaration names the behaviour, is checked for typos, and the
skip message says which capability a scenario needed::

    from kern.testing.conformance import BackendConformance, Capabilities

    class TestMyDb(BackendConformance):
        capabilities = Capabilities(multi_process=False)

Every field defaults to ``True``: the storage contract's full behaviour. kern's own backends
declare the defaults (they do all of it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

import pytest

__all__ = ["MARK", "Capabilities", "requires", "skip_unless_capable"]

#: The pytest mark ``requires`` puts on a scenario (registered by ``kern.testing.pytest_plugin``).
MARK = "kern_requires"


@dataclass(frozen=True)
class Capabilities:
    """The optional behaviours of a backend, all on by default (see the module docstring)."""

    #: Several OS processes may use one database at once, each seeing what the others wrote
    #: (a server, or a file the engine locks). Needs ``persistent``. Off: the cases racing
    #: child processes (concurrent creators, state updates, appends, first use) are skipped.
    multi_process: bool = True
    #: The database outlives the db object: another object built from the same recipe
    #: reads what the first stored (not a private in-memory database).
    persistent: bool = True
    #: One db object may be called concurrently: from several threads (sync) or tasks
    #: (async) at once, appends and commits racing on one session included.
    concurrent_use: bool = True
    #: Reading the last runs of a session costs the same however long the session is, as
    #: the test class's ``count_reads`` measures it (the 10,000-run acceptance case).
    bounded_history_reads: bool = True
    #: Memory search ranks by relevance: the best match first, a natural-language query
    #: matched by its words.
    ranked_search: bool = True
    #: The test class's ``raw_scan(db)`` reads everything the backend stores, so that the
    #: suite can check ``forget_user`` left no trace in the raw storage.
    raw_storage_scan: bool = True

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, bool):
                raise TypeError(f"Capabilities.{field.name} must be True or False, not {value!r}")
        if self.multi_process and not self.persistent:
            raise ValueError(
                "Capabilities(persistent=False) needs multi_process=False too: processes can "
                "share only a database that outlives a db object"
            )

    def lacking(self, names: Iterable[str]) -> list[str]:
        """The capabilities among ``names`` this backend declares it lacks."""
        return [name for name in names if not getattr(self, name)]


_NAMES = frozenset(field.name for field in fields(Capabilities))


def requires(*names: str) -> pytest.MarkDecorator:
    """Mark a scenario as depending on the capabilities ``names``: the suite skips it for a
    test class whose ``capabilities`` declares any of them ``False``."""
    unknown = sorted(set(names) - _NAMES)
    if not names or unknown:
        raise ValueError(
            f"requires() takes Capabilities field names ({', '.join(sorted(_NAMES))}), "
            f"not {unknown or 'nothing'}"
        )
    mark: pytest.MarkDecorator = getattr(pytest.mark, MARK)
    return mark(*names)


def skip_unless_capable(owner: type, capabilities: Capabilities, node: Any) -> None:
    """Skip the test ``node`` if it ``requires`` a capability ``capabilities`` lacks."""
    required = [name for mark in node.iter_markers(MARK) for name in mark.args]
    lacking = capabilities.lacking(required)
    if lacking:
        declared = ", ".join(f"{name}=False" for name in lacking)
        pytest.skip(
            f"needs the {' and '.join(repr(n) for n in lacking)} capability: "
            f"{owner.__name__}.capabilities declares Capabilities({declared})"
        )
