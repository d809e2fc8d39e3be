"""Choosing a backend from a URL or configuration, through the registry the plugins fill.

SQLAlchemy's dialect registry is the model: the URL scheme names the backend, and a scheme
whose plugin is not installed says which extra to install. This module is the one place
that knows the backends: a backend class given another backend's URL asks
``wrong_backend_hint`` what to suggest instead.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kern.db.base import AsyncBaseDb, BaseDb
from kern.db.config_paths import resolve_from
from kern.errors import BackendNotInstalledError, ConfigurationError, install_command
from kern.plugin_filter import skipped_hint
from kern.plugins import Backend, registry
from kern.retention.steps import resolve_policy


@dataclass(frozen=True)
class FirstParty:
    """A backend kern ships, described well enough to name it when it is not installed.

    ``name`` is the backend's registered name, its extra (``kern-memory[<name>]``) and its
    package (``kern.db.<name>``). Installed plugins describe themselves
    (``kern.plugins.Backend``); this table is for the URLs of missing ones.
    """

    name: str
    label: str
    sync: str
    async_: str
    schemes: tuple[str, ...]
    async_schemes: tuple[str, ...] = ()


#: kern's first-party backends: the one table outside their plugins that knows them.
FIRST_PARTY: tuple[FirstParty, ...] = (
    FirstParty("sqlite", "SQLite", "SqliteDb", "AsyncSqliteDb", ("sqlite",), ("sqlite+aiosqlite",)),
    FirstParty(
        "postgres",
        "PostgreSQL",
        "PostgresDb",
        "AsyncPostgresDb",
        ("postgresql", "postgres", "postgresql+psycopg"),
        ("postgresql+psycopg_async",),
    ),
    FirstParty("duckdb", "DuckDB", "DuckDb", "AsyncDuckDb", ("duckdb",)),
    FirstParty("mongo", "MongoDB", "MongoDb", "AsyncMongoDb", ("mongodb", "mongodb+srv")),
    FirstParty("redis", "Redis", "RedisDb", "AsyncRedisDb", ("redis", "rediss")),
)

#: Scheme -> extra of the first-party backends (derived from ``FIRST_PARTY``).
KNOWN_SCHEMES: dict[str, str] = {
    scheme: backend.name
    for backend in FIRST_PARTY
    for scheme in (*backend.schemes, *backend.async_schemes)
}

ENV_VAR = "KERN_DB_URL"


def scheme_of(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise ConfigurationError(
            f"{url!r} is not a database URL: expected 'scheme://…', for example "
            "'sqlite:///tmp/agent.db' or 'postgresql://user:pass@localhost:5432/app'."
        )
    return scheme.lower()


def configured_url(start: Path | None = None) -> str | None:
    """The URL from ``KERN_DB_URL``, else ``kern.toml``, else ``[tool.kern]`` of ``pyproject.toml``.

    Files are looked for in ``start`` (the working directory) and its parents; the first
    file found decides. Both take ``db_url = "…"``; a relative SQLite/DuckDB path there is
    resolved from that file's folder (``kern.db.config_paths``).
    """
    if url := os.environ.get(ENV_VAR):
        return url
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        kern_toml = folder / "kern.toml"
        if kern_toml.is_file():
            url = _read_url(kern_toml, ())
            return resolve_from(url, folder) if url else url
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            url = _read_url(pyproject, ("tool", "kern"))
            if url:
                return resolve_from(url, folder)
    return None


def _read_url(path: Path, table: tuple[str, ...]) -> str | None:
    try:
        data: Any = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from exc
    for key in table:
        data = data.get(key, {})
    url = data.get("db_url")
    if url is not None and not isinstance(url, str):
        raise ConfigurationError(f"db_url in {path} must be a string, not {type(url).__name__}")
    return url


def backend_class(url: str, *, is_async: bool | None = None) -> type[BaseDb | AsyncBaseDb]:
    """The Db class that serves ``url``. An async scheme picks the async class."""
    scheme = scheme_of(url)
    entry = registry().schemes.get(scheme)
    if entry is None:
        raise _unknown_scheme(scheme)
    backend, scheme_is_async = entry
    return backend.load(is_async=scheme_is_async if is_async is None else is_async)


def connect(url: str | None = None, *, is_async: bool | None = None, **options: Any) -> Any:
    """A Db for ``url`` (or the configured URL). ``is_async=True`` asks for the async class.

    >>> db = connect("sqlite:///tmp/agents.db")
    >>> db = connect("sqlite:///tmp/agents.db", retention=RetentionPolicy(runs_days=30))

    ``retention=`` declares the policy ``db.apply_retention()`` applies (``kern.retention``).
    """
    url = url or configured_url()
    if not url:
        raise ConfigurationError(
            "no database configured: pass a URL to kern.db.connect(), set KERN_DB_URL, or "
            "put db_url = 'sqlite:///kern.db' in kern.toml or [tool.kern] of pyproject.toml."
        )
    # Every backend's constructor takes the URL as ``db_url`` (the contract, kern.db.base);
    # the base classes cannot declare a constructor for all of them.
    factory: Callable[..., BaseDb | AsyncBaseDb] = backend_class(url, is_async=is_async)
    retention = options.pop("retention", None)
    db = factory(db_url=url, **options)
    if retention is not None:  # every Db has the attribute (kern.db.base); no backend's option
        db.retention = resolve_policy(None, retention)
    return db


def _unknown_scheme(scheme: str) -> ConfigurationError:
    extra = KNOWN_SCHEMES.get(scheme)
    if extra is not None and (skipped := skipped_hint(extra)) is not None:
        return ConfigurationError(
            f"URL scheme {scheme!r} needs the kern-{extra} plugin, which {skipped}."
        )
    if extra is not None:
        return BackendNotInstalledError(
            f"URL scheme {scheme!r} needs the kern-{extra} plugin, which is not installed: "
            f"{install_command(extra)}"
        )
    installed = ", ".join(sorted(registry().schemes)) or "none"
    return ConfigurationError(
        f"no installed kern backend handles URL scheme {scheme!r} (installed schemes: "
        f"{installed}). Check the URL, or install the plugin that provides it."
    )


# -- what to use instead -------------------------------------------------------------------
#: The hint for a scheme no other backend is known to serve.
_ANY_BACKEND = "kern.db.connect(url) picks the backend that serves a URL's scheme"


@dataclass(frozen=True)
class _Use:
    """What a hint names: the class the scheme selects, its other flavour, where they are."""

    backend: str
    label: str
    module: str
    first: str
    other: str | None
    is_async: bool
    extra: str | None


def wrong_backend_hint(scheme: str, *, backend: str) -> str:
    """What to use instead, when a class of ``backend`` is given a ``scheme://`` URL.

    Backend plugins call this instead of keeping a table of the other backends, so that
    only the registry knows backends: installed ones from their plugins' registration (a
    third-party backend included), missing first-party ones from ``FIRST_PARTY``. The exact
    scheme decides first (``postgresql+psycopg_async`` selects ``AsyncPostgresDb``), then its
    part before ``+``. ``backend`` is the caller's registered name: its own backend is never
    suggested. The result is a clause for the caller's message, e.g. for ``"duckdb"``:

        for DuckDB use DuckDb (AsyncDuckDb in async code) from kern.db.duckdb
        (pip install 'kern-memory[duckdb]'), or kern.db.connect(url), which picks the
        backend from the URL
    """
    use = _use_for(scheme.lower())
    if use is None or use.backend == backend:
        return _ANY_BACKEND
    flavour = "sync" if use.is_async else "async"
    also = f" ({use.other} in {flavour} code)" if use.other else ""
    install = f" ({install_command(use.extra)})" if use.extra else ""
    return (
        f"for {use.label} use {use.first}{also} from {use.module}{install}, or "
        "kern.db.connect(url), which picks the backend from the URL"
    )


def _use_for(scheme: str) -> _Use | None:
    try:
        installed = registry().schemes
    except Exception:  # a broken plugin: best effort, a hint must not hide the caller's error
        installed = {}
    for candidate in dict.fromkeys((scheme, scheme.split("+", 1)[0])):
        if candidate in installed:
            return _installed(*installed[candidate])
        for known in FIRST_PARTY:
            if candidate in (*known.schemes, *known.async_schemes):
                return _first_party(known, is_async=candidate in known.async_schemes)
    return None


def _installed(backend: Backend, is_async: bool) -> _Use | None:
    classes = [backend.async_, backend.sync] if is_async else [backend.sync, backend.async_]
    refs = [_split_ref(c) for c in classes if c is not None]
    if not refs:
        return None
    known = next((k for k in FIRST_PARTY if k.name == backend.name), None)
    return _Use(
        backend=backend.name,
        label=known.label if known else backend.name,
        module=refs[0][0],
        first=refs[0][1],
        other=refs[1][1] if len(refs) > 1 else None,
        is_async=is_async and backend.async_ is not None,
        extra=known.name if known else None,  # a third party's distribution is unknown
    )


def _first_party(known: FirstParty, *, is_async: bool) -> _Use:
    first, other = (known.async_, known.sync) if is_async else (known.sync, known.async_)
    return _Use(
        known.name, known.label, f"kern.db.{known.name}", first, other, is_async, known.name
    )


def _split_ref(target: type | str) -> tuple[str, str]:
    """``(module, class name)`` of a registered ``"module:Class"`` reference or class."""
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        return module, attr
    return target.__module__, target.__qualname__
