"""A retention policy: what kern keeps, declared once (on the Db, or in kern.toml).

>>> RetentionPolicy(runs_days=30, keep_last_runs=200, idle_session_days=90)

Memories and learnings are kept until they are forgotten (``forget_user``, ``kern
forget``, ``kern prune``): retention never removes them. Each field left ``None`` keeps
that kind of row forever.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kern.errors import RetentionError
from kern.retention.rules import RetentionRule, RuleKind


class RetentionPolicy(BaseModel):
    """What to remove; ``Db.apply_retention()`` (or ``kern retention``) applies it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Remove runs created more than this many days ago.
    runs_days: float | None = Field(default=None, gt=0)
    #: Keep only this many newest runs of each session (a team's member runs count).
    keep_last_runs: int | None = Field(default=None, ge=1)
    #: Remove sessions, with their runs, not updated for this many days.
    idle_session_days: float | None = Field(default=None, gt=0)

    @classmethod
    def from_mapping(cls, values: Any, *, source: str = "the policy") -> RetentionPolicy:
        """A policy from ``[retention]`` of kern.toml (or any mapping), with an error that
        names the bad key and the keys there are."""
        if not isinstance(values, dict):
            raise RetentionError(f"{source} must be a table of settings, not {values!r}")
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise RetentionError(f"{source} is not a retention policy: {_first(exc)}") from exc

    @property
    def is_empty(self) -> bool:
        return (
            self.runs_days is None
            and self.keep_last_runs is None
            and (self.idle_session_days is None)
        )

    def rules(self, now: datetime) -> list[RetentionRule]:
        """The rules, in the order they are applied: idle sessions first (a session that
        goes takes its runs with it), then old runs, then each session's surplus."""
        rules = []
        if self.idle_session_days is not None:
            cutoff = now - timedelta(days=self.idle_session_days)
            rules.append(RetentionRule(kind=RuleKind.IDLE_SESSIONS, cutoff=cutoff))
        if self.runs_days is not None:
            cutoff = now - timedelta(days=self.runs_days)
            rules.append(RetentionRule(kind=RuleKind.RUNS_BEFORE, cutoff=cutoff))
        if self.keep_last_runs is not None:
            rules.append(RetentionRule(kind=RuleKind.KEEP_LAST_RUNS, keep=self.keep_last_runs))
        return rules


def _first(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "value"
    known = ", ".join(RetentionPolicy.model_fields)
    if error["type"] == "extra_forbidden":
        return f"unknown key {where!r} (known: {known})"
    return f"{where}: {error['msg']} (got {error.get('input')!r})"
