"""``kern doctor``: what a database holds of kern's schema, and what to do about each gap.

It connects, reads ``db.storage_report()`` (read-only: nothing is created or migrated, so a
table dropped by hand shows as missing instead of failing the next turn with a raw driver
error) and prints the backend, schema versions against this kern's, pending migrations,
missing tables and indexes, and the optional capabilities with how to get each.
``--repair`` then runs ``create_tables``, which runs pending migrations and puts back what
is missing, and reports again. Exit code 0 when healthy, 1 when something needs doing.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from rich.table import Table
from rich.text import Text

from kern.cli.common import FAILED, OK, add_db_option, add_json_option, open_db, out, print_json
from kern.db.report import StorageReport

REPAIR = "run `kern doctor --repair` (or any kern call: tables are created on first use)"


def register(commands: Any) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check a database: schema versions, missing tables, optional capabilities",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    add_db_option(doctor)
    doctor.add_argument(
        "--repair",
        action="store_true",
        help="run pending migrations and recreate missing tables and indexes, then check again",
    )
    add_json_option(doctor)
    doctor.set_defaults(handler=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    with open_db(args.db) as db:
        report = db.storage_report()
        repaired = None
        if args.repair and not report.healthy:
            db.create_tables()
            repaired = db.storage_report()
    final = repaired or report
    if args.json:
        print_json(
            {
                **_as_dict(report),
                "repaired": _as_dict(repaired) if repaired is not None else None,
                "healthy": final.healthy,
            }
        )
    else:
        _show(report)
        if repaired is not None:
            out.print()
            out.print("[bold]after --repair[/bold]")
            _show(repaired)
    return OK if final.healthy else FAILED


def _as_dict(report: StorageReport) -> dict[str, Any]:
    data = dataclasses.asdict(report)
    data["pending_migrations"] = {
        name: {"applied": applied, "expected": expected}
        for name, (applied, expected) in report.pending_migrations.items()
    }
    data["healthy"] = report.healthy
    return data


def _show(report: StorageReport) -> None:
    out.print(f"backend   {report.backend}", markup=False)
    out.print(f"database  {report.target}", markup=False)
    if report.server_version:
        out.print(f"server    {report.server_version}", markup=False)

    versions = Table("schema", "applied", "this kern", "status", title="schema versions")
    for name in sorted({*report.schema_versions, *report.expected_versions}):
        applied = report.schema_versions.get(name)
        expected = report.expected_versions.get(name)
        if applied is None:
            status = "not created yet: " + REPAIR
        elif expected is None or applied == expected:
            status = "current"
        elif applied < expected:
            status = "migration pending: " + REPAIR
        else:
            status = "newer than this kern: upgrade kern before writing"
        versions.add_row(Text(name), _text(applied), _text(expected), Text(status))
    out.print(versions)

    if report.missing:
        missing = Table("missing", "what to do", title="missing from the database")
        for name in report.missing:
            missing.add_row(Text(name), REPAIR)
        out.print(missing)
    else:
        out.print("nothing missing: every table and index kern needs is there")

    if report.capabilities:
        capabilities = Table("capability", "available", "detail", "to get it", title="capabilities")
        for capability in report.capabilities:
            capabilities.add_row(
                Text(capability.name),
                "yes" if capability.available else "no",
                Text(capability.detail),
                Text(capability.fix or ""),
            )
        out.print(capabilities)

    if report.counts:
        counts = Table("table", "rows", title="contents")
        for name, count in report.counts.items():
            counts.add_row(Text(name), f"{count:,}")
        out.print(counts)
    out.print("healthy" if report.healthy else "needs attention (see above)")


def _text(value: int | None) -> str:
    return "" if value is None else str(value)
