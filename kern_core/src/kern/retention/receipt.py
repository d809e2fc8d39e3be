"""The receipt of ``apply_retention``: what each rule removed, and the totals per table."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, computed_field

from kern.retention.policy import RetentionPolicy
from kern.retention.rules import RetentionRule


class RuleReceipt(BaseModel):
    """One rule's part: rows per table, the batches it took, and whether it finished."""

    model_config = ConfigDict(extra="forbid")

    rule: RetentionRule
    counts: dict[str, int] = Field(default_factory=dict)
    batches: int = 0
    #: False when ``max_batches`` stopped the rule; the next call goes on from the start.
    finished: bool = False


class RetentionReceipt(BaseModel):
    """What ``apply_retention`` removed, or in a dry run would remove.

    ``deleted`` holds the rows per logical table (``"sessions"``, ``"runs"``), the sum of
    the rules' counts. A dry run counts each rule as if it ran alone: a run that two rules
    would both remove is counted twice, so its totals can be higher than the real run's.
    """

    # Its dump carries ``deleted`` and ``finished`` (computed); reading one back ignores them.
    model_config = ConfigDict(extra="ignore")

    backend: str
    policy: RetentionPolicy
    now: datetime
    dry_run: bool
    rules: list[RuleReceipt] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def deleted(self) -> dict[str, int]:
        totals = {"sessions": 0, "runs": 0}
        for part in self.rules:
            for table, count in part.counts.items():
                totals[table] = totals.get(table, 0) + count
        return totals

    @computed_field  # type: ignore[prop-decorator]
    @property
    def finished(self) -> bool:
        return all(part.finished for part in self.rules)
