"""The retention policy of kern.toml (``[retention]``) or pyproject.toml
(``[tool.kern.retention]``), found the way ``kern.db.connect`` finds ``db_url``: in the
working directory and its parents, the first file found decides."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from kern.errors import ConfigurationError
from kern.retention.policy import RetentionPolicy


def configured_policy(start: Path | None = None) -> RetentionPolicy | None:
    """The declared policy, or ``None`` when the config file has no retention table."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        kern_toml = folder / "kern.toml"
        if kern_toml.is_file():
            return _policy(kern_toml, ("retention",))
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "kern" in _read(pyproject).get("tool", {}):
            return _policy(pyproject, ("tool", "kern", "retention"))
    return None


def _policy(path: Path, table: tuple[str, ...]) -> RetentionPolicy | None:
    data: Any = _read(path)
    for key in table:
        data = data.get(key) if isinstance(data, dict) else None
        if data is None:
            return None
    return RetentionPolicy.from_mapping(data, source=f"[{'.'.join(table)}] of {path}")


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from exc
