"""kern's plugin manager and the registries its hooks fill.

Plugins are found through the ``kern`` entry-point group (``[project.entry-points.kern]``).
Two environment variables narrow what loads, read once when the manager is first built:

- ``KERN_LOAD_PLUGINS=a,b``: load only these entry points (empty: load none).
- ``KERN_DISABLE_PLUGINS=a,b``: load every entry point but these.

Built-in providers (the OpenAI models) register through the same hooks as third parties.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from kern import hookspecs
from kern.errors import ConfigurationError

if TYPE_CHECKING:
    from kern.db.base import AsyncBaseDb, BaseDb

ENTRY_POINT_GROUP = "kern"

#: Modules of kern-core registered as plugins, exactly like third-party ones.
BUILTIN_PLUGINS = ("kern.models.openai._plugin", "kern.learn._plugin")


@dataclass(frozen=True)
class Backend:
    """A storage backend as a plugin registers it.

    ``sync`` / ``async_`` are classes or lazy ``"module:attr"`` strings, so that choosing a
    backend by URL imports only that backend. ``schemes`` select the sync class and
    ``async_schemes`` the async one (``postgresql`` vs ``postgresql+psycopg_async``).
    """

    name: str
    schemes: tuple[str, ...]
    sync: type | str | None = None
    async_: type | str | None = None
    async_schemes: tuple[str, ...] = ()

    def load(self, *, is_async: bool) -> type[BaseDb | AsyncBaseDb]:
        """The backend's sync or async Db class (imported now if registered by name)."""
        target = self.async_ if is_async else self.sync
        if target is None:
            flavour = "async" if is_async else "sync"
            raise ConfigurationError(f"backend {self.name!r} has no {flavour} class")
        db_class: type[BaseDb | AsyncBaseDb] = resolve(target)  # what the plugin registered
        return db_class


@dataclass(frozen=True)
class LearningStoreSpec:
    """A learning-store kind; with ``backend`` set, that backend's own implementation."""

    kind: str
    store: type | str
    backend: str | None = None


@dataclass
class Registry:
    """What the hooks registered, rebuilt whenever the set of plugins changes."""

    backends: dict[str, Backend] = field(default_factory=dict)
    schemes: dict[str, tuple[Backend, bool]] = field(default_factory=dict)
    learning_stores: dict[tuple[str, str | None], LearningStoreSpec] = field(default_factory=dict)
    models: dict[str, type | str] = field(default_factory=dict)


def resolve(target: type | str) -> Any:
    """Import a ``"module:attr"`` reference (or return an object given directly)."""
    if not isinstance(target, str):
        return target
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


def lazy_exports(package: str, exports: dict[str, str]) -> Any:
    """A module ``__getattr__`` (PEP 562) importing each name from its module on first use.

    A backend package uses it so that loading its ``_plugin`` to learn its URL schemes does
    not import its driver: choosing SQLite never imports psycopg or pymongo.
    """

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None
_registry: Registry | None = None


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    from kern import plugin_filter

    entry_points = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    plugin_filter.record(ep.name for ep in entry_points)
    for ep in entry_points:
        if plugin_filter.skip_reason(ep.name) is not None:
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except ImportError as exc:
            raise ConfigurationError(
                f"kern plugin {ep.name!r} ({ep.value}) failed to import: {exc}. Reinstall "
                f"it, or skip it with KERN_DISABLE_PLUGINS={ep.name}."
            ) from exc
        pm.register(plugin, name=ep.name)


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first use."""
    global _pm
    with _lock:
        if _pm is None:
            pm = pluggy.PluginManager(hookspecs.PROJECT)
            pm.add_hookspecs(hookspecs)
            for module_name in BUILTIN_PLUGINS:
                pm.register(importlib.import_module(module_name), name=module_name)
            _load_entry_points(pm)
            pm.check_pending()
            _pm = pm
        return _pm


def registry() -> Registry:
    """The backends, learning stores and model providers the plugins registered."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = _collect(get_plugin_manager())
        return _registry


def _collect(pm: pluggy.PluginManager) -> Registry:
    """Call the three hooks. pluggy calls the newest plugin first, and the first to claim a
    name keeps it, so a plugin registered later (a test's, say) overrides an earlier one."""
    reg = Registry()

    def add_backend(backend: Backend) -> None:
        if reg.backends.setdefault(backend.name, backend) is not backend:
            return
        for scheme in backend.schemes:
            reg.schemes.setdefault(scheme, (backend, False))
        for scheme in backend.async_schemes:
            reg.schemes.setdefault(scheme, (backend, True))

    def add_store(spec: LearningStoreSpec) -> None:
        reg.learning_stores.setdefault((spec.kind, spec.backend), spec)

    def add_model(provider: str, model_class: type | str) -> None:
        reg.models.setdefault(provider, model_class)

    pm.hook.register_backends(register=add_backend)
    pm.hook.register_learning_stores(register=add_store)
    pm.hook.register_models(register=add_model)
    return reg


def register(plugin: ModuleType | object, name: str | None = None) -> str:
    """Register a plugin object for this process (tests, or code that ships its own)."""
    pm = get_plugin_manager()
    with _lock:
        plugin_name = pm.register(plugin, name=name)
        try:
            pm.check_pending()
        except pluggy.PluginValidationError:
            pm.unregister(plugin)  # a rejected plugin must leave nothing behind
            raise
        _invalidate()
    assert plugin_name is not None
    return plugin_name


def unregister(name: str) -> None:
    pm = get_plugin_manager()
    with _lock:
        pm.unregister(name=name)
        _invalidate()


@contextmanager
def registered(plugin: ModuleType | object, name: str | None = None) -> Iterator[str]:
    """Register ``plugin`` for the duration of a ``with`` block (the test pattern)."""
    plugin_name = register(plugin, name=name)
    try:
        yield plugin_name
    finally:
        unregister(plugin_name)


def _invalidate() -> None:
    global _registry
    _registry = None


def reset() -> None:
    """Forget the manager so the next use rebuilds it (re-reading the environment)."""
    global _pm
    with _lock:
        _pm = None
        _invalidate()


def plugin_names() -> list[str]:
    return sorted(name for name, _ in get_plugin_manager().list_name_plugin())
