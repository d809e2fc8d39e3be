"""The file behind a resumable job's checkpoint (``kern copy``, ``kern rotate-key``): JSON,
read with an error that says what to do, written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def read_checkpoint(path: Path, error: type[Exception]) -> dict[str, Any] | None:
    """The saved body at ``path``, ``None`` if there is none; ``error`` if it is unreadable."""
    if not path.exists():
        return None
    try:
        body: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise error(
            f"the checkpoint {path} cannot be read ({exc}): delete it, or pass --restart"
        ) from None
    return body


def write_checkpoint(path: Path, body: dict[str, Any]) -> None:
    """Write ``body`` atomically: a kill leaves the old checkpoint or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(body))
    os.replace(partial, path)
