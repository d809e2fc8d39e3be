"""``kern rotate-key``: re-encrypt the database with the first key of ``KERN_ENCRYPTION_KEY``
(``kern.crypto.rotate``), in pages, resumably, then check that no record needs an old key."""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
from typing import Any

from rich.table import Table

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
from kern.db.transfer import DEFAULT_PAGE, MAX_PAGE, RECORD_KINDS


def register(commands: Any) -> None:
    rotate = commands.add_parser(
        "rotate-key",
        help="re-encrypt every record with the first key of KERN_ENCRYPTION_KEY, resumable",
        description="Re-encrypt sessions, runs, memories and learnings with the first key of "
        "KERN_ENCRYPTION_KEY (new:...,old:...: list the new key first and every old key "
        "after it). Records are read and written back in batches; a killed rotation resumes "
        "when rerun. At the end every record is checked to need the new key only; then the "
        "old keys can be removed. Text still in clear is encrypted too.",
    )
    add_db_option(rotate)
    rotate.add_argument(
        "--memories",
        action="store_true",
        default=None,
        help="encrypt memory and learning content still in clear too "
        "(default: KERN_ENCRYPT_MEMORIES; content encrypted before is always rotated)",
    )
    rotate.add_argument(
        "--batch",
        type=int,
        default=DEFAULT_PAGE,
        metavar="N",
        help=f"records per page read and per bulk write (default: {DEFAULT_PAGE})",
    )
    rotate.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="where progress is saved to resume after a kill (default: in ~/.cache/kern/)",
    )
    rotate.add_argument(
        "--restart", action="store_true", help="ignore a saved checkpoint and start over"
    )
    rotate.add_argument(
        "--no-verify", action="store_true", help="skip the check that no record needs an old key"
    )
    add_json_option(rotate)
    rotate.set_defaults(handler=_rotate)


def default_checkpoint(target: str, kid: str) -> Path:
    """One checkpoint file per (database, new key), in the user's cache folder."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kern"
    key = hashlib.sha256(f"{target}\n{kid}".encode()).hexdigest()[:16]
    return base / f"rotate-{key}.json"


def _rotate(args: argparse.Namespace) -> int:
    from kern.crypto.keys import KEY_ENV, Keyring
    from kern.crypto.rotate import RotationCheckpoint, rotate_keys

    if not 1 <= args.batch <= MAX_PAGE:
        raise CommandError(f"--batch must be from 1 to {MAX_PAGE}, not {args.batch}", BAD_INPUT)
    keyring = Keyring.from_env()
    if keyring is None:
        raise CommandError(
            f"set {KEY_ENV} to the new key first, then every old one "
            f"({KEY_ENV}=new:base64key,old:base64key); make a key with "
            "python -c \"import kern.crypto as c; print(c.generate_key('k2'))\"",
            BAD_INPUT,
        )
    kid = keyring.primary.kid
    with open_db(args.db) as db:
        target = db.storage_target()
        path = Path(args.checkpoint) if args.checkpoint else default_checkpoint(target, kid)
        if args.restart:
            path.unlink(missing_ok=True)
        checkpoint = RotationCheckpoint.load(path, target, kid)
        if checkpoint.resumed:
            err.print(f"resuming the rotation saved in {path}", markup=False)
        report = rotate_keys(
            db,
            keyring,
            memories=args.memories,
            checkpoint=checkpoint,
            limit=args.batch,
            verify=not args.no_verify,
        )
    if args.json:
        print_json(
            {
                "database": target,
                "key_id": kid,
                "read": report.read,
                "rewritten": report.rewritten,
                "skipped": report.skipped,
                "resumed": report.resumed,
                "stale": report.stale,
                "verified": report.verified,
            }
        )
    else:
        out.print(
            f"re-encrypted {target} with key {kid!r}{' (resumed)' if report.resumed else ''}",
            markup=False,
            soft_wrap=True,
        )
        table = Table("table", "read", "rewritten", "skipped (busy)", "needing an old key")
        for kind in RECORD_KINDS:
            stale = "-" if report.stale is None else f"{report.stale[kind]:,}"
            counts = (report.read[kind], report.rewritten[kind], report.skipped[kind])
            table.add_row(kind, *(f"{count:,}" for count in counts), stale)
        out.print(table)
    if report.verified is False:
        err.print(
            "some records still need an old key (see the table): they were being written "
            "during the rotation (a turn in progress), or something wrote with an old key. "
            "Run kern rotate-key again; keep the old keys until it reports none.",
            markup=False,
            soft_wrap=True,
        )
        return FAILED
    return OK
