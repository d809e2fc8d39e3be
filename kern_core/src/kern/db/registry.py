"""Choosing a backend from a URL or configuration, through the registry the plugins fill.

SQLAlchemy's dialect registry is the model: the URL scheme names the backend, and a scheme
whose plugin is not installed says which extra to install.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from kern.db.base import AsyncBaseDb, BaseDb
from kern.errors import BackendNotInstalledError, ConfigurationError, install_command
from kern.plugins import registry

#: Schemes of kern's first-party backends and the extra that installs each.
KNOWN_SCHEMES: dict[str, str] = {
    "sqlite": "sqlite",
    "postgresql": "postgres",
    "postgres": "postgres",
    "postgresql+psycopg": "postgres",
    "postgresql+psycopg_async": "postgres",
    "mongodb": "mongo",
    "mongodb+srv": "mongo",
    "redis": "redis",
    "rediss": "redis",
    "duckdb": "duckdb",
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
    file found decides. Both take ``db_url = "…"``.
    """
    if url := os.environ.get(ENV_VAR):
        return url
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        kern_toml = folder / "kern.toml"
        if kern_toml.is_file():
            return _read_url(kern_toml, ())
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            url = _read_url(pyproject, ("tool", "kern"))
            if url:
                return url
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
    """
    url = url or configured_url()
    if not url:
        raise ConfigurationError(
            "no database configured: pass a URL to kern.db.connect(), set KERN_DB_URL, or "
            "put db_url = 'sqlite:///kern.db' in kern.toml or [tool.kern] of pyproject.toml."
        )
    return backend_class(url, is_async=is_async)(db_url=url, **options)


def _unknown_scheme(scheme: str) -> ConfigurationError:
    extra = KNOWN_SCHEMES.get(scheme)
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
