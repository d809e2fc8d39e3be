"""``kern retention``: apply the retention policy (``db.apply_retention``) and print its receipt.

The policy is kern.toml's ``[retention]`` (or ``[tool.kern.retention]``), with any of
``--runs-days``, ``--keep-last-runs`` and ``--idle-session-days`` put over it. ``--dry-run``
counts and removes nothing; without it the command asks on a terminal and needs ``--yes``
in a script, as ``kern forget`` does. Run it from cron as often as you like: each rule
reads through an index and stops where nothing is left to remove.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table
from rich.text import Text

from kern.cli.common import (
    BAD_INPUT,
    OK,
    CommandError,
    add_db_option,
    add_json_option,
    at_least,
    confirm,
    open_db,
    out,
    print_json,
    when,
)
from kern.retention import RetentionPolicy, RetentionReceipt, RuleKind
from kern.retention.config import configured_policy

#: The policy's fields, as options.
OPTIONS = {
    "runs_days": "--runs-days",
    "keep_last_runs": "--keep-last-runs",
    "idle_session_days": "--idle-session-days",
}


def register(commands: Any) -> None:
    retention = commands.add_parser(
        "retention",
        help="remove old runs and idle sessions as the retention policy says (--dry-run first)",
        description="Apply the retention policy of kern.toml's [retention] table, or the one "
        "the options give, in bounded batches, and print what was removed per table. "
        "Memories and learnings are never removed by retention.",
    )
    add_db_option(retention)
    retention.add_argument(
        "--runs-days",
        type=at_least(0.001, float),
        metavar="D",
        help="remove runs created more than D days ago (a session's newest run stays)",
    )
    retention.add_argument(
        "--keep-last-runs",
        type=at_least(1, int),
        metavar="N",
        help="keep only the N newest runs of each session",
    )
    retention.add_argument(
        "--idle-session-days",
        type=at_least(0.001, float),
        metavar="D",
        help="remove sessions, with their runs, not updated for D days",
    )
    retention.add_argument(
        "--dry-run", action="store_true", help="count what would be removed; remove nothing"
    )
    retention.add_argument(
        "--batch-size",
        type=at_least(1, int),
        default=500,
        metavar="N",
        help="candidates each batch examines (default: 500)",
    )
    retention.add_argument(
        "--max-batches",
        type=at_least(1, int),
        metavar="N",
        help="stop each rule after N batches; the next run goes on (default: finish)",
    )
    retention.add_argument(
        "--yes", action="store_true", help="remove without asking (needed without a terminal)"
    )
    add_json_option(retention)
    retention.set_defaults(handler=_retention)


def _retention(args: argparse.Namespace) -> int:
    policy = _policy(args)
    with open_db(args.db) as db:
        target = db.storage_target()
        if not args.dry_run and not args.yes:
            _confirm(policy, target)
        receipt = db.apply_retention(
            policy, dry_run=args.dry_run, batch_size=args.batch_size, max_batches=args.max_batches
        )
    if args.json:
        print_json({"target": target, **receipt.model_dump(mode="json")})
    else:
        _print(receipt, target)
    return OK


def _policy(args: argparse.Namespace) -> RetentionPolicy:
    """kern.toml's policy with the options put over it; an error when neither says a thing."""
    configured = configured_policy()
    values = configured.model_dump(exclude_none=True) if configured else {}
    values.update({f: getattr(args, f) for f in OPTIONS if getattr(args, f) is not None})
    policy = RetentionPolicy.from_mapping(values, source="the retention options")
    if policy.is_empty:
        raise CommandError(
            "no retention policy: add a [retention] table to kern.toml (runs_days = 30, "
            "keep_last_runs = 200, idle_session_days = 90) or pass " + ", ".join(OPTIONS.values()),
            BAD_INPUT,
        )
    return policy


def _describe(policy: RetentionPolicy) -> str:
    parts = []
    if policy.idle_session_days is not None:
        parts.append(f"sessions idle for {policy.idle_session_days:g} days, with their runs")
    if policy.runs_days is not None:
        parts.append(f"runs older than {policy.runs_days:g} days")
    if policy.keep_last_runs is not None:
        parts.append(f"all but the {policy.keep_last_runs:,} newest runs of each session")
    return "; ".join(parts)


def _confirm(policy: RetentionPolicy, target: str) -> None:
    what = f"{_describe(policy)} in {target}"
    confirm(
        f"Remove {what}?",
        without_terminal=f"no terminal to confirm on: pass --yes to remove {what} (or "
        "--dry-run to count)",
        declined="nothing was removed (answer y to confirm, or pass --yes)",
    )


def _print(receipt: RetentionReceipt, target: str) -> None:
    verb = "would remove" if receipt.dry_run else "removed"
    deleted = receipt.deleted
    out.print(
        Text(
            f"retention in {target}: {verb} {deleted['sessions']:,} sessions and "
            f"{deleted['runs']:,} runs"
            + (" (dry run: nothing was removed)" if receipt.dry_run else ""),
            style="bold",
        )
    )
    table = Table("rule", "sessions", "runs", "batches", "finished")
    for part in receipt.rules:
        rule = part.rule
        if rule.kind is RuleKind.KEEP_LAST_RUNS:
            name = f"keep the last {rule.keep:,} runs"
        elif rule.kind is RuleKind.RUNS_BEFORE:
            name = f"runs before {when(rule.cutoff)}"
        else:
            name = f"sessions idle since {when(rule.cutoff)}"
        table.add_row(
            Text(name),
            f"{part.counts.get('sessions', 0):,}",
            f"{part.counts.get('runs', 0):,}",
            str(part.batches),
            "yes" if part.finished else "no: run again to go on",
        )
    out.print(table)
