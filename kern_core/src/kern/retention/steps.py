"""``apply_retention`` written once: a policy's rules, each in bounded batches, and the
receipt. A generator of contract calls (``kern.db.steps``), so the sync Db, the async Db
and the Dbs of plans all run the same loop; the backends implement one batch."""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime
from typing import Any

from kern.db.steps import Request
from kern.errors import RetentionError
from kern.records import utcnow
from kern.retention.policy import RetentionPolicy
from kern.retention.receipt import RetentionReceipt, RuleReceipt
from kern.retention.rules import RuleKind

#: Candidates a batch examines unless the caller says otherwise.
DEFAULT_BATCH = 500

#: The tables each rule removes rows from (its receipt's keys).
TABLES: dict[RuleKind, tuple[str, ...]] = {
    RuleKind.IDLE_SESSIONS: ("sessions", "runs"),
    RuleKind.RUNS_BEFORE: ("runs",),
    RuleKind.KEEP_LAST_RUNS: ("runs",),
}


def retention_steps(
    backend: str,
    policy: RetentionPolicy,
    *,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH,
    max_batches: int | None = None,
    now: datetime | None = None,
) -> Generator[Request, Any, RetentionReceipt]:
    """Each rule of ``policy`` until it is done (or ``max_batches`` batches per rule)."""
    check_arguments(dry_run=dry_run, batch_size=batch_size, max_batches=max_batches, now=now)
    at = now or utcnow()
    receipt = RetentionReceipt(backend=backend, policy=policy, now=at, dry_run=dry_run)
    for rule in policy.rules(at):
        part = RuleReceipt(rule=rule, counts=dict.fromkeys(TABLES[rule.kind], 0))
        receipt.rules.append(part)
        after: str | None = None
        while max_batches is None or part.batches < max_batches:
            batch = yield (
                "retention_batch",
                (rule,),
                {"limit": batch_size, "after": after, "dry_run": dry_run},
            )
            part.batches += 1
            for table, count in batch.counts.items():
                if count or table in part.counts:
                    part.counts[table] = part.counts.get(table, 0) + count
            after = batch.after
            if after is None:
                part.finished = True
                break
    return receipt


def check_arguments(*, dry_run: Any, batch_size: Any, max_batches: Any, now: Any) -> None:
    """Bad arguments are refused before anything is read or deleted."""
    if not isinstance(dry_run, bool):
        raise RetentionError(f"dry_run must be True or False, got {dry_run!r}")
    if type(batch_size) is not int or not 1 <= batch_size <= 100_000:
        raise RetentionError(f"batch_size must be an int from 1 to 100000, got {batch_size!r}")
    if max_batches is not None and (type(max_batches) is not int or max_batches < 1):
        raise RetentionError(
            f"max_batches must be a positive int, or None to finish every rule; got {max_batches!r}"
        )
    if now is not None and (not isinstance(now, datetime) or now.tzinfo is None):
        raise RetentionError(
            f"now must be a timezone-aware datetime (datetime.now(UTC)), got {now!r}"
        )


def resolve_policy(declared: RetentionPolicy | None, given: Any) -> RetentionPolicy:
    """The policy to apply: the one passed, else the Db's, else kern.toml's ``[retention]``."""
    if given is not None:
        if isinstance(given, dict):
            return RetentionPolicy.from_mapping(given, source="the policy passed")
        if not isinstance(given, RetentionPolicy):
            raise RetentionError(
                f"policy must be a kern.retention.RetentionPolicy (or a dict of its fields), "
                f"got {type(given).__name__}"
            )
        return given
    if declared is not None:
        return declared
    from kern.retention.config import configured_policy

    configured = configured_policy()
    if configured is None:
        raise RetentionError(
            "no retention policy: pass one (db.apply_retention(RetentionPolicy(runs_days=30))),"
            " set db.retention = RetentionPolicy(...), or add a [retention] table to "
            "kern.toml (runs_days = 30). Nothing was deleted."
        )
    return configured
