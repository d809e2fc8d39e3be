"""What a backend is asked to do for retention: one rule, one bounded batch at a time.

``apply_retention`` (``kern.retention.steps``) turns a policy into rules and calls the
contract's ``retention_batch(rule, limit=, after=, dry_run=)`` until each rule is done. A
backend implements only the batch; the loop, the receipt and the order of the rules are
written once. What every backend keeps (docs/lifecycle.md, "Retention"):

- **Never the newest run of a session.** ``append_run`` numbers a run after the session's
  highest stored seq on SQL and MongoDB; keeping that run keeps the seq going.
- **Never a run of an unfinished workflow or team turn:** a run whose status is
  ``running``, or whose parent run is ``running``, stays; a session holding a running run
  is not dropped as idle.
- **Bounded:** a batch examines at most ``limit`` candidates, read through an index in a
  stable order; ``after`` (an opaque cursor) continues after the last one examined.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kern.errors import RetentionError


class RuleKind(StrEnum):
    #: Sessions whose ``updated_at`` is before ``cutoff`` go, with all of their runs.
    IDLE_SESSIONS = "idle_sessions"
    #: Runs whose ``created_at`` is before ``cutoff`` go (the kept ones above aside).
    RUNS_BEFORE = "runs_before"
    #: In each session, runs with ``seq <= highest seq - keep`` go (members' runs counted).
    KEEP_LAST_RUNS = "keep_last_runs"


class RetentionRule(BaseModel):
    """One rule of a policy, with its cutoff resolved against the time it is applied."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: RuleKind
    #: For ``idle_sessions`` and ``runs_before``: an aware UTC datetime.
    cutoff: datetime | None = None
    #: For ``keep_last_runs``: how many of each session's newest runs stay (at least 1).
    keep: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _complete(self) -> RetentionRule:
        if self.kind is RuleKind.KEEP_LAST_RUNS:
            if self.keep is None or self.cutoff is not None:
                raise ValueError("a keep_last_runs rule takes keep=<int >= 1> and no cutoff")
        elif self.cutoff is None or self.keep is not None:
            raise ValueError(f"a {self.kind.value} rule takes cutoff=<datetime> and no keep")
        elif self.cutoff.tzinfo is None:
            raise ValueError("a retention cutoff must be timezone-aware (UTC)")
        return self


class RetentionBatch(BaseModel):
    """What one ``retention_batch`` call removed (or, in a dry run, would remove)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Rows per logical table (``"sessions"``, ``"runs"``).
    counts: dict[str, int] = Field(default_factory=dict)
    #: Where the next batch of this rule continues; ``None`` when the rule is done.
    after: str | None = None


def check_rule(argument: str, value: Any) -> None:
    """The door's check of ``retention_batch``'s ``rule``."""
    if not isinstance(value, RetentionRule):
        raise RetentionError(
            f"{argument} must be a kern.retention.RetentionRule, got {type(value).__name__}; "
            "use db.apply_retention(policy), which makes the rules."
        )


def check_batch_limit(argument: str, value: Any) -> None:
    """The door's check of ``retention_batch``'s ``limit``: a batch is bounded."""
    if type(value) is not int or not 1 <= value <= 100_000:
        raise RetentionError(f"{argument} must be an int from 1 to 100000, got {value!r}")
