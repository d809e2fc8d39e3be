"""The hook specifications of kern's three plugin families (pluggy project ``"kern"``).

Each hook takes a ``register`` callback, the pattern of simonw/llm and datasette: a plugin
calls it once per thing it provides. Built-in providers go through the same hooks as third
parties, so there is one code path.

A plugin module looks like::

    from kern.hookspecs import hookimpl
    from kern.plugins import Backend

    @hookimpl
    def register_backends(register):
        register(Backend(name="mydb", schemes=("mydb",), sync="mypkg.db:MyDb"))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from kern.plugins import Backend, LearningStoreSpec

PROJECT = "kern"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_backends(register: Callable[[Backend], None]) -> None:
    """Register storage backends: call ``register(kern.plugins.Backend(...))`` for each."""


@hookspec
def register_learning_stores(register: Callable[[LearningStoreSpec], None]) -> None:
    """Register learning-store kinds and their per-backend implementations.

    ``register(kern.plugins.LearningStoreSpec(kind=..., store=..., backend=None))``: with no
    ``backend`` the store is the generic one built on the storage contract; with a backend
    name it is that backend's own implementation, preferred when that backend is in use.
    """


@hookspec
def register_models(register: Callable[[str, type | str], None]) -> None:
    """Register model classes under a provider prefix: ``register("openai", OpenAIChat)``.

    ``Agent(model="openai:gpt-4.1-mini")`` then builds ``OpenAIChat(id="gpt-4.1-mini")``.
    """
