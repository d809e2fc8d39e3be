"""What the scenarios of every topic share: fresh ids, a typical turn, odd search text.

Scenarios use fresh ids (``_uid``) so that they never see each other's rows, even in one
database shared by every test; helpers compare records by their JSON, type-strictly.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from kern.records import Message, Run

# Odd search text: FTS operators, quotes, wildcards, LIKE and regex metacharacters.
ODD_QUERIES = (
    'what\'s "up" AND (x',
    '"',
    "'",
    "*",
    "-",
    "NEAR(",
    "a OR",
    "col:value",
    "^start",
    "100%_done\\",
    "(((",
    "   ",
    "",
)


def _uid(prefix: str) -> str:
    """A fresh id, so that scenarios never see each other's rows in a shared database."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _tick() -> None:
    """Let the clock move past every backend's timestamp resolution (Mongo keeps ms).

    Used only between writes whose ``updated_at`` order a scenario asserts; never timed.
    """
    time.sleep(0.005)


def _json(value: object) -> str:
    """Type-strict JSON text: tells ``True`` from ``1`` and ``2.0`` from ``2``."""
    return json.dumps(value, sort_keys=True)


def _seqs(runs: Sequence[Run]) -> list[int | None]:
    return [run.seq for run in runs]


def _seq(run: Run) -> int:
    """A stored run's ``seq``, which the contract assigns to every run it stores."""
    assert run.seq is not None, f"a stored run without seq: {run!r}"
    return run.seq


def _ids(records: Sequence[Any], attr: str) -> list[str]:
    return [getattr(record, attr) for record in records]


def _turn(session_id: str, i: int, user_id: str | None = None, **fields: Any) -> Run:
    """A typical completed agent turn: the user's question and the model's answer."""
    return Run(
        session_id=session_id,
        user_id=user_id,
        input=f"question {i}",
        messages=[
            Message(role="user", content=f"question {i}"),
            Message(role="assistant", content=f"answer {i}"),
        ],
        output=f"answer {i}",
        **fields,
    )
