"""``kern approve``, ``kern reject``, ``kern forget``, ``kern prune``, ``kern dedupe``:
decide on proposals, delete a user's data, curate memories and learnings.

Approving, rejecting and curating go through a ``LearningMachine(db=db)`` built with its
defaults and no model: none of them calls one (the store of a proposal's kind does the
approving, whatever stores an agent configured; ``machine.store(kind)`` builds it). The
machine has no embedder either, so approved items are stored without a vector and
``kern dedupe`` compares texts only (``LearningMachine(embedder=...).curator`` in Python
adds embedding similarity).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from kern.cli.common import (
    BAD_INPUT,
    FAILED,
    OK,
    CommandError,
    add_db_option,
    add_json_option,
    at_least,
    cell,
    check_ids,
    compact,
    confirm,
    err,
    open_db,
    out,
    print_json,
)
from kern.db.base import TABLES
from kern.errors import ConfigurationError
from kern.records import Learning, Memory

if TYPE_CHECKING:
    from kern.learn.curator import CurationReport

#: What the curator looks at when no ``--kind`` is given (its own default).
MEMORY_KIND = "user_memory"


def register(commands: Any) -> None:
    for name, verb, effect in (
        ("approve", "approve", "they become active (a user memory becomes a memory)"),
        ("reject", "reject", "they are kept as rejected and never recalled"),
    ):
        decide = commands.add_parser(
            name,
            help=f"{verb} proposed learnings: {effect}",
            description=f"{verb.capitalize()} proposed learnings by id (`kern learnings "
            f"--status proposed` lists them): {effect}. Every id is tried; the exit code is "
            "1 if any of them could not be decided.",
        )
        add_db_option(decide)
        decide.add_argument("ids", nargs="+", metavar="ID", help="learning ids")
        add_json_option(decide)
        decide.set_defaults(handler=_approve if name == "approve" else _reject)

    forget = commands.add_parser(
        "forget",
        help="delete everything stored of a user (sessions, runs, memories, learnings)",
        description="Delete every row holding the user's data and print how many were "
        "removed per table. Asks for confirmation unless --yes.",
    )
    add_db_option(forget)
    forget.add_argument("user", metavar="USER_ID")
    forget.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    add_json_option(forget)
    forget.set_defaults(handler=_forget)

    prune = commands.add_parser(
        "prune",
        help="remove old memories (or learnings), or all but the newest N per user",
        description="Remove items first stored more than --max-age-days ago and, per user "
        "and kind, all but the newest --max-count. User memories by default; --kind names "
        "other stores (their active learnings).",
    )
    _add_curation(prune)
    prune.add_argument(
        "--max-age-days",
        type=at_least(0.0, float),
        metavar="D",
        help="remove items first stored more than D days ago",
    )
    prune.add_argument(
        "--max-count",
        type=at_least(0, int),
        metavar="N",
        help="keep the newest N items per user and kind",
    )
    prune.set_defaults(handler=_prune)

    dedupe = commands.add_parser(
        "dedupe",
        help="remove duplicate memories (or learnings), keeping the newest of each group",
        description="Remove exact duplicates (same text up to case, punctuation and spacing) "
        "and near-duplicates (word overlap of at least --threshold), keeping the newest item "
        "of each group. User memories by default; --kind names other stores.",
    )
    _add_curation(dedupe)
    dedupe.add_argument(
        "--threshold",
        type=float,
        default=0.85,
        metavar="T",
        help="word (Jaccard) similarity from which two items are duplicates, in (0, 1] "
        "(default: 0.85)",
    )
    dedupe.set_defaults(handler=_dedupe)


def _add_curation(parser: argparse.ArgumentParser) -> None:
    add_db_option(parser)
    parser.add_argument(
        "--user", metavar="USER_ID", help="only this user's items (needed for user memories)"
    )
    parser.add_argument(
        "--kind",
        action="extend",
        nargs="+",
        metavar="KIND",
        help=f"store kinds to curate (default: {MEMORY_KIND}), e.g. --kind entity_memory "
        "learned_knowledge",
    )
    parser.add_argument("--namespace", metavar="NS", help="only learnings of this namespace")
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would be removed; change nothing"
    )
    add_json_option(parser)


# -- kern approve / kern reject -----------------------------------------------------------
def _approve(args: argparse.Namespace) -> int:
    return _decide(args, approve=True)


def _reject(args: argparse.Namespace) -> int:
    return _decide(args, approve=False)


def _decide(args: argparse.Namespace, *, approve: bool) -> int:
    """Approve or reject each id; the ids that cannot be are named and the others done."""
    from kern.learn.base import LearningNotFoundError, NotProposedError
    from kern.learn.machine import EMBEDDER_RECORD, LearningMachine

    ids = list(dict.fromkeys(args.ids))
    check_ids("ID", *ids)  # a malformed id is bad input: refuse before deciding any
    done: list[Learning | Memory] = []
    failed: list[dict[str, str]] = []
    with open_db(args.db) as db:
        machine = LearningMachine(db=db)
        for learning_id in ids:
            try:
                stored = machine.approve(learning_id) if approve else machine.reject(learning_id)
            except (LearningNotFoundError, NotProposedError, ConfigurationError) as exc:
                failed.append({"id": learning_id, "error": str(exc)})
            else:
                done.append(stored)
        vectors = db.get_learning(EMBEDDER_RECORD.learning_id) if approve and done else None
    verb = "approved" if approve else "rejected"
    if args.json:
        print_json({verb: done, "failed": failed})
    elif done:
        out.print(Text(verb, style="bold"))
        table = Table()
        table.add_column("id", overflow="fold")
        for name in ("kind", "user", "status", "content"):
            table.add_column(name)
        for item in done:
            table.add_row(*_decided_row(item))
        out.print(table)
    for failure in failed:
        err.print(f"kern {args.command}: {failure['error']}", markup=False, soft_wrap=True)
    if vectors is not None:
        err.print(
            f"note: this database's vectors are made by {vectors.content.get('id')}; what was "
            "approved has none yet (kern has no embedder here): run lm.reembed() with that "
            "embedder to give it one. Until then recall finds it by its words.",
            markup=False,
            soft_wrap=True,
        )
    return FAILED if failed else OK


def _decided_row(item: Learning | Memory) -> tuple[Text, ...]:
    if isinstance(item, Memory):
        return (
            Text(item.memory_id),
            Text(MEMORY_KIND),
            cell(item.user_id, 30),
            Text("active (a memory)"),
            cell(item.content, 80),
        )
    return (
        Text(item.learning_id),
        Text(item.kind),
        cell(item.user_id, 30),
        Text(item.status.value),
        cell(compact(item.content), 80),
    )


# -- kern forget --------------------------------------------------------------------------
def _forget(args: argparse.Namespace) -> int:
    check_ids("USER_ID", args.user)
    with open_db(args.db) as db:
        target = db.storage_target()
        if not args.yes:
            _confirm(args.user, target)
        removed = db.forget_user(args.user)
    if args.json:
        print_json({"user_id": args.user, "target": target, "removed": removed})
        return OK
    total = sum(removed.values())
    out.print(Text(f"forgot user {args.user!r} in {target}: {total:,} removed", style="bold"))
    table = Table("table", "removed")
    for name in sorted(removed, key=_table_order):
        table.add_row(Text(name), f"{removed[name]:,}")
    out.print(table)
    return OK


def _table_order(name: str) -> tuple[int, str]:
    """kern's tables in their usual order (sessions, runs, ...), any others after."""
    return (TABLES.index(name) if name in TABLES else len(TABLES), name)


def _confirm(user: str, target: str) -> None:
    confirm(
        f"Delete every session, run, memory and learning of user {user!r} in {target}?",
        without_terminal=f"no terminal to confirm on: pass --yes to delete everything of "
        f"{user!r} in {target}",
        declined="nothing was deleted (answer y to confirm, or pass --yes)",
    )


# -- kern prune / kern dedupe -------------------------------------------------------------
def _prune(args: argparse.Namespace) -> int:
    from kern.learn.machine import LearningMachine

    if args.max_age_days is None and args.max_count is None:
        raise CommandError(
            "pass --max-age-days D, --max-count N or both: prune removes items by age or count",
            BAD_INPUT,
        )
    kinds = _kinds(args)
    with open_db(args.db) as db:
        report = LearningMachine(db=db).curator.prune(
            args.user,
            max_age_days=args.max_age_days,
            max_count=args.max_count,
            kinds=kinds,
            namespace=args.namespace,
            dry_run=args.dry_run,
        )
    return _report(args, report)


def _dedupe(args: argparse.Namespace) -> int:
    from kern.learn.machine import LearningMachine

    if not 0 < args.threshold <= 1:
        raise CommandError(
            f"--threshold must be more than 0 and at most 1, not {args.threshold}", BAD_INPUT
        )
    kinds = _kinds(args)
    with open_db(args.db) as db:
        report = LearningMachine(db=db).curator.deduplicate(
            args.user,
            kinds=kinds,
            namespace=args.namespace,
            threshold=args.threshold,
            dry_run=args.dry_run,
        )
    return _report(args, report)


def _kinds(args: argparse.Namespace) -> list[str]:
    check_ids("--user", args.user)
    check_ids("--namespace", args.namespace)
    kinds = list(dict.fromkeys(args.kind or [MEMORY_KIND]))
    check_ids("--kind", *kinds)
    if MEMORY_KIND in kinds and args.user is None:
        raise CommandError(
            f"user memories are curated one user at a time: pass --user USER_ID (or --kind "
            f"with other kinds than {MEMORY_KIND})",
            BAD_INPUT,
        )
    return kinds


def _report(args: argparse.Namespace, report: CurationReport) -> int:
    """The curator's ``CurationReport``: what was removed, or would be (``--dry-run``)."""
    if args.json:
        print_json(
            {
                "action": report.action,
                "dry_run": report.dry_run,
                "items": [dataclasses.asdict(item) for item in report.items],
            }
        )
        return OK
    if not report.items:
        out.print("nothing would be removed" if report.dry_run else "nothing to remove")
        return OK
    verb = "would remove" if report.dry_run else "removed"
    count = len(report.items)
    title = f"{verb} {count} item{'s' if count != 1 else ''}"
    out.print(Text(title, style="bold"))
    table = Table()
    table.add_column("id", overflow="fold")
    for name in ("kind", "user", "reason", "text"):
        table.add_column(name)
    duplicates = any(item.duplicate_of for item in report.items)
    if duplicates:
        table.add_column("kept instead", overflow="fold")
    for item in report.items:
        row = [Text(item.id), Text(item.kind), cell(item.user_id, 30), Text(item.reason)]
        row.append(cell(item.text, 80))
        if duplicates:
            row.append(Text(item.duplicate_of or ""))
        table.add_row(*row)
    out.print(table)
    if report.dry_run:
        out.print("dry run: nothing was changed", markup=False)
    return OK
