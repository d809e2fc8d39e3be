"""``kern export``, ``kern import``, ``kern copy``: a database out to a file, back in, or
straight into another backend (``kern.transfer``)."""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from kern.cli.common import (
    BAD_INPUT,
    FAILED,
    OK,
    CommandError,
    add_db_option,
    add_json_option,
    err,
    open_db,
    out,
    print_json,
)
from kern.db.transfer import DEFAULT_PAGE, MAX_PAGE, RECORD_KINDS, RecordKind, RecordPage
from kern.transfer.checksum import Tally


def register(commands: Any) -> None:
    export = commands.add_parser(
        "export",
        help="write every record (or one user's) as JSON lines: kern export > file.jsonl",
        description="Write the database (or one user's data) as kern's JSON-lines export "
        "format (docs/cli.md#the-export-format) to stdout or --output. Memory stays flat.",
    )
    add_db_option(export)
    export.add_argument("--user", metavar="USER_ID", help="only this user's data")
    export.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    _add_batch(export)
    export.set_defaults(handler=_export)

    importer = commands.add_parser(
        "import",
        help="import a file made by kern export (idempotent)",
        description="Import a kern export file into the database. Ids, seq, versions and "
        "timestamps are kept; importing twice changes nothing.",
    )
    add_db_option(importer)
    importer.add_argument("file", metavar="FILE", help="the export file, or - for stdin")
    _add_batch(importer)
    add_json_option(importer)
    importer.set_defaults(handler=_import)

    copy = commands.add_parser(
        "copy",
        help="copy every record from one database to another, resumable and verified",
        description="Copy sessions, runs, memories and learnings (with their vectors) from "
        "SRC_URL to DST_URL in batches through each backend's bulk path. A killed copy "
        "resumes where it stopped when rerun; at the end both sides are counted and "
        "checksummed.",
    )
    copy.add_argument("source", metavar="SRC_URL", help="the database to read")
    copy.add_argument("destination", metavar="DST_URL", help="the database to write")
    copy.add_argument("--user", metavar="USER_ID", help="only this user's data")
    _add_batch(copy)
    copy.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="where progress is saved to resume after a kill (default: in ~/.cache/kern/)",
    )
    copy.add_argument(
        "--restart", action="store_true", help="ignore a saved checkpoint and start over"
    )
    copy.add_argument(
        "--no-verify", action="store_true", help="skip the counts and checksums at the end"
    )
    add_json_option(copy)
    copy.set_defaults(handler=_copy)


def _add_batch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch",
        type=int,
        default=DEFAULT_PAGE,
        metavar="N",
        help=f"records per page read and per bulk write (default: {DEFAULT_PAGE})",
    )


def _check_batch(args: argparse.Namespace) -> int:
    if not 1 <= args.batch <= MAX_PAGE:
        raise CommandError(f"--batch must be from 1 to {MAX_PAGE}, not {args.batch}", BAD_INPUT)
    return int(args.batch)


# -- export ----------------------------------------------------------------------------
@contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    if path is None or path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with open(path, "w", encoding="utf-8") as handle:
        yield handle


def _export(args: argparse.Namespace) -> int:
    from kern.transfer.lines import export_lines

    batch = _check_batch(args)
    with open_db(args.db) as db, _output(args.output) as stream:
        tally = export_lines(db, stream.write, user_id=args.user, limit=batch)
    err.print(f"exported from {db.storage_target()}:", markup=False)
    err.print(_tally_table(tally))
    return OK


# -- import ----------------------------------------------------------------------------
@contextmanager
def _input(path: str) -> Iterator[TextIO]:
    if path == "-":
        yield sys.stdin
        return
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 (closed below; open errors only)
    except OSError as exc:
        raise CommandError(
            f"cannot read {path} ({exc.strerror}): give the path of a kern export", BAD_INPUT
        ) from None
    with handle:
        yield handle


def _import(args: argparse.Namespace) -> int:
    from kern.transfer.lines import import_lines

    batch = _check_batch(args)
    with _input(args.file) as lines, open_db(args.db) as db:
        report = import_lines(db, lines, limit=batch)
        target = db.storage_target()
    if args.json:
        print_json(
            {
                "imported": report.tally.as_dict(),
                "expected": report.expected,
                "complete": not report.mismatches,
            }
        )
    else:
        out.print(f"imported into {target}:", markup=False)
        out.print(_tally_table(report.tally))
    if report.mismatches:
        err.print(
            "the records read differ from the file's end line for "
            f"{', '.join(report.mismatches)}: the file was changed after export",
            markup=False,
            soft_wrap=True,
        )
        return FAILED
    return OK


# -- copy ------------------------------------------------------------------------------
def default_checkpoint(source: str, destination: str, user: str | None) -> Path:
    """One checkpoint file per (source, destination, user), in the user's cache folder."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kern"
    key = hashlib.sha256(f"{source}\n{destination}\n{user}".encode()).hexdigest()[:16]
    return base / f"copy-{key}.json"


def _copy(args: argparse.Namespace) -> int:
    from kern.transfer.copy import Checkpoint, copy_database

    batch = _check_batch(args)
    if args.source == args.destination:
        raise CommandError("SRC_URL and DST_URL are the same database", BAD_INPUT)
    path = (
        Path(args.checkpoint)
        if args.checkpoint
        else default_checkpoint(args.source, args.destination, args.user)
    )
    with open_db(args.source) as source, open_db(args.destination) as destination:
        if args.restart:
            path.unlink(missing_ok=True)
        checkpoint = Checkpoint.load(
            path, source.storage_target(), destination.storage_target(), args.user
        )
        if checkpoint.resumed:
            err.print(f"resuming the copy saved in {path}", markup=False)
        totals = source.storage_report().counts if args.user is None else {}
        with _progress(totals, checkpoint.copied) as advance:
            report = copy_database(
                source,
                destination,
                checkpoint=checkpoint,
                user_id=args.user,
                limit=batch,
                verify=not args.no_verify,
                on_page=advance,
            )
        targets = (source.storage_target(), destination.storage_target())
    rate = sum(report.copied.values()) / report.seconds if report.seconds else 0.0
    if args.json:
        print_json(
            {
                "source": targets[0],
                "destination": targets[1],
                "copied": report.copied,
                "seconds": round(report.seconds, 3),
                "rows_per_second": round(rate),
                "resumed": report.resumed,
                "verified": report.verified,
                "source_tally": report.source.as_dict() if report.source else None,
                "destination_tally": report.destination.as_dict() if report.destination else None,
            }
        )
    else:
        out.print(
            f"copied {targets[0]} -> {targets[1]} in {report.seconds:.1f} s "
            f"({rate:,.0f} rows/s){' (resumed)' if report.resumed else ''}",
            markup=False,
            soft_wrap=True,
        )
        if report.source is not None and report.destination is not None:
            out.print(_verification_table(report.source, report.destination))
    if report.verified is False:
        err.print(
            "the destination differs from the source (see the table): was it empty "
            "before the copy, and did anything write to either side during it?",
            markup=False,
            soft_wrap=True,
        )
        return FAILED
    return OK


class _RowsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:>9,.0f} rows/s" if task.speed else "")


@contextmanager
def _progress(totals: dict[str, int], done: dict[str, int]) -> Iterator[Any]:
    """A progress bar per kind on stderr; yields the ``on_page`` callback that moves them."""
    progress = Progress(
        TextColumn("{task.description:>9}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RowsPerSecond(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    tasks = {
        kind: progress.add_task(kind, total=totals.get(kind), completed=done.get(kind, 0))
        for kind in RECORD_KINDS
    }

    def advance(kind: RecordKind, page: RecordPage) -> None:
        progress.advance(tasks[kind], len(page.records))

    with progress:
        yield advance


# -- tables ----------------------------------------------------------------------------
def _tally_table(tally: Tally) -> Table:
    table = Table("table", "rows", "checksum")
    for kind in RECORD_KINDS:
        table.add_row(kind, f"{tally.counts[kind]:,}", tally.checksum(kind))
    return table


def _verification_table(source: Tally, destination: Tally) -> Table:
    table = Table(
        "table",
        "source rows",
        "destination rows",
        "source checksum",
        "destination checksum",
        "equal",
    )
    differ = set(source.differences(destination))
    for kind in RECORD_KINDS:
        table.add_row(
            kind,
            f"{source.counts[kind]:,}",
            f"{destination.counts[kind]:,}",
            source.checksum(kind),
            destination.checksum(kind),
            "no" if kind in differ else "yes",
        )
    return table
