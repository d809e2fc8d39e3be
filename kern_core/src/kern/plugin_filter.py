"""Which installed plugins ``KERN_LOAD_PLUGINS`` / ``KERN_DISABLE_PLUGINS`` leave out, and why.

``kern.plugins`` asks ``skip_reason`` for each entry point while it loads them and records
the answer here, so that an error about a missing backend can say "installed but disabled
by KERN_DISABLE_PLUGINS" instead of "not installed". A name in either variable that no
installed plugin has is a typo that would otherwise silently load nothing: it is a warning
naming the installed plugins.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable

LOAD_VAR = "KERN_LOAD_PLUGINS"
DISABLE_VAR = "KERN_DISABLE_PLUGINS"

#: Installed plugin name -> the variable that left it out (filled by ``record``).
_skipped: dict[str, str] = {}


class PluginSettingsWarning(UserWarning):
    """A plugin variable names a plugin that is not installed."""


def env_names(var: str) -> set[str] | None:
    """The comma-separated names in ``var``; None when it is not set."""
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def skip_reason(name: str) -> str | None:
    """The variable that leaves plugin ``name`` out, or None if it is loaded."""
    allow = env_names(LOAD_VAR)
    if allow is not None and name not in allow:
        return LOAD_VAR
    if name in (env_names(DISABLE_VAR) or set()):
        return DISABLE_VAR
    return None


def record(installed: Iterable[str]) -> None:
    """Remember which of the ``installed`` plugins are left out; warn about unknown names."""
    names = sorted(set(installed))
    _skipped.clear()
    _skipped.update({n: reason for n in names if (reason := skip_reason(n)) is not None})
    for var in (LOAD_VAR, DISABLE_VAR):
        unknown = sorted((env_names(var) or set()) - set(names))
        if unknown:
            warnings.warn(
                f"{var} names {', '.join(map(repr, unknown))}, which is not an installed kern "
                f"plugin; installed: {', '.join(names) or 'none'}",
                PluginSettingsWarning,
                stacklevel=4,
            )


def skipped_hint(name: str) -> str | None:
    """Why installed plugin ``name`` is not loaded, with the fix; None if it is not skipped."""
    var = _skipped.get(name)
    if var == DISABLE_VAR:
        return (
            f"is installed but disabled by {DISABLE_VAR}={os.environ.get(var, '')}: "
            f"remove {name!r} from {DISABLE_VAR}"
        )
    if var == LOAD_VAR:
        return (
            f"is installed but not loaded: {LOAD_VAR}={os.environ.get(var, '')} does not "
            f"name it; add {name!r} to {LOAD_VAR} or unset it"
        )
    return None
