"""Recipes: how the suite builds a backend's db, in the test process and in child processes.

A test class's ``db_factory`` returns a recipe, ``("module:Class", constructor kwargs)``,
rather than a db: child processes must build their own db from it, so it has to be plain,
picklable data (checked by ``_check_recipe`` before any scenario runs).
"""

from __future__ import annotations

import pickle
from typing import Any

from kern.plugins import resolve

__all__ = ["Recipe", "_check_recipe", "build_db"]

#: ``("module:Class", constructor kwargs)``: what ``db_factory`` returns.
Recipe = tuple[str, dict[str, Any]]


def build_db(recipe: Recipe) -> Any:
    """Build a db from a ``("module:Class", kwargs)`` recipe."""
    target, kwargs = recipe
    return resolve(target)(**kwargs)


def _check_recipe(recipe: object) -> Recipe:
    if not (
        isinstance(recipe, tuple)
        and len(recipe) == 2
        and isinstance(recipe[0], str)
        and ":" in recipe[0]
        and isinstance(recipe[1], dict)
    ):
        raise TypeError(f"db_factory must return ('module:Class', {{kwargs}}), not {recipe!r}")
    try:
        pickle.dumps(recipe)
    except Exception as exc:
        raise TypeError(
            f"db_factory's recipe must be picklable (child processes build from it): {exc}"
        ) from exc
    return recipe
