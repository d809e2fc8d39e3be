"""The export format: JSON lines, versioned, streamed one page at a time.

A file is a header line, one line per record, and an end line::

    {"format": "kern-export", "version": 1, "kern": "0.1.0", "exported_at": "...",
     "source": {"backend": "sqlite", "schema_versions": {...}}, "user_id": null}
    {"kind": "sessions", "record": {...}}
    {"kind": "runs", "record": {..., "seq": 1, ...}}
    {"kind": "memories", "record": {...}, "embedding": {"model": "...", "f32": "<base64>"}}
    {"kind": "learnings", "record": {...}}
    {"end": true, "counts": {"sessions": 2, ...}, "checksums": {"sessions": "…", ...}}

Records are the JSON of kern's records (``kern.records``): ids, ``seq``, ``version`` and
timestamps as stored. Vectors are little-endian float32 bytes in base64, bit for bit what the
database holds. Kinds come in import order (sessions before runs). The end line carries each
kind's count and checksum (``kern.transfer.checksum``), so an import can tell a complete
file from one cut short. A reader refuses a newer ``version`` than it knows and ignores
fields it does not know inside the header and end lines.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kern import __version__
from kern.db.base import BaseDb
from kern.db.transfer import (
    DEFAULT_PAGE,
    ID_FIELDS,
    RECORD_KINDS,
    RECORD_TYPES,
    RecordKind,
    RecordPage,
    TransferRecord,
)
from kern.errors import KernError
from kern.records import Embedding
from kern.transfer.checksum import Tally, pages

FORMAT = "kern-export"
FORMAT_VERSION = 1


class ExportFormatError(KernError, ValueError):
    """A file that is not a kern export, is of a newer version, or is cut short."""


def _record_line(kind: RecordKind, record: TransferRecord, embedding: Embedding | None) -> str:
    line: dict[str, Any] = {"kind": kind, "record": record.model_dump(mode="json")}
    if embedding is not None:
        line["embedding"] = {
            "model": embedding.model,
            "f32": base64.b64encode(embedding.as_float32()).decode("ascii"),
        }
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def export_lines(
    db: BaseDb,
    write: Callable[[str], object],
    *,
    user_id: str | None = None,
    limit: int = DEFAULT_PAGE,
    on_page: Callable[[RecordPage], None] | None = None,
) -> Tally:
    """Write the export of ``db`` (or of one user) as lines through ``write``; the tally.

    Memory stays flat: one page of records is held at a time, whatever the database's size.
    """
    report = db.storage_report()
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kern": __version__,
        "exported_at": datetime.now(UTC).isoformat(),
        "source": {"backend": report.backend, "schema_versions": report.schema_versions},
        "user_id": user_id,
    }
    write(json.dumps(header, ensure_ascii=False) + "\n")
    tally = Tally()
    for kind in RECORD_KINDS:
        key = ID_FIELDS[kind]
        for page in pages(db, kind, user_id=user_id, limit=limit):
            write(
                "".join(
                    _record_line(kind, record, page.embeddings.get(getattr(record, key))) + "\n"
                    for record in page.records
                )
            )
            tally.add_page(page)
            if on_page is not None:
                on_page(page)
    end = {
        "end": True,
        "counts": tally.counts,
        "checksums": {kind: tally.checksum(kind) for kind in RECORD_KINDS},
    }
    write(json.dumps(end) + "\n")
    return tally


@dataclass
class ImportReport:
    """What an import wrote, and what the file's end line said it should hold."""

    header: dict[str, Any]
    tally: Tally
    expected: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def mismatches(self) -> list[str]:
        """Kinds whose rows or checksum differ from the end line's."""
        mine = self.tally.as_dict()
        return [kind for kind, want in self.expected.items() if mine.get(kind) != want]


def _parse(number: int, line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ExportFormatError(
            f"line {number} is not JSON ({exc.msg}): the file is damaged or not a kern export"
        ) from None
    if not isinstance(value, dict):
        raise ExportFormatError(f"line {number} is not a JSON object")
    return value


def read_header(number: int, line: str) -> dict[str, Any]:
    header = _parse(number, line)
    if header.get("format") != FORMAT:
        raise ExportFormatError(
            "the file does not start with a kern export header: make it with `kern export`"
        )
    version = header.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ExportFormatError(
            f"the file is format version {version!r}; this kern ({__version__}) reads up to "
            f"version {FORMAT_VERSION}: upgrade kern to import it"
        )
    return header


def _record(
    number: int, line: dict[str, Any]
) -> tuple[RecordKind, TransferRecord, Embedding | None]:
    kind = line.get("kind")
    if kind not in RECORD_TYPES:
        raise ExportFormatError(f"line {number}: unknown kind {kind!r}")
    try:
        record = RECORD_TYPES[kind].model_validate(line.get("record"))
        stored = line.get("embedding")
        embedding = (
            Embedding.from_float32(stored["model"], base64.b64decode(stored["f32"]))
            if stored is not None
            else None
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportFormatError(f"line {number}: not a valid {kind} record ({exc})") from None
    return kind, record, embedding


def import_lines(
    db: BaseDb,
    lines: Iterable[str],
    *,
    limit: int = DEFAULT_PAGE,
    on_page: Callable[[RecordPage], None] | None = None,
) -> ImportReport:
    """Import an export file's lines into ``db``, ``limit`` records per bulk write.

    Idempotent: importing a file twice leaves what importing it once leaves. A file cut
    short is imported up to where it stops, then ``ExportFormatError`` says so (import the
    complete file again: nothing is doubled).
    """
    numbered = enumerate(lines, start=1)
    first = next(numbered, None)
    if first is None:
        raise ExportFormatError("the file is empty: make one with `kern export`")
    report = ImportReport(header=read_header(*first), tally=Tally())
    kind: RecordKind | None = None
    records: list[TransferRecord] = []
    embeddings: dict[str, Embedding] = {}

    def flush() -> None:
        nonlocal records, embeddings
        if kind is not None and records:
            page = RecordPage(kind=kind, records=records, embeddings=embeddings)
            db.import_records(page)
            report.tally.add_page(page)
            if on_page is not None:
                on_page(page)
        records, embeddings = [], {}

    ended = False
    for number, text in _content(numbered):
        line = _parse(number, text)
        if line.get("end") is True:
            flush()
            report.expected = {
                name: {"rows": line["counts"][name], "checksum": line["checksums"][name]}
                for name in RECORD_KINDS
                if name in line.get("counts", {})
            }
            ended = True
            break
        line_kind, record, embedding = _record(number, line)
        if line_kind != kind or len(records) >= limit:
            flush()
            kind = line_kind
        records.append(record)
        if embedding is not None:
            embeddings[getattr(record, ID_FIELDS[line_kind])] = embedding
    if not ended:
        flush()
        raise ExportFormatError(
            "the file ends before its end line: it was cut short, and what it held was "
            "imported; import the complete file again (nothing is doubled)"
        )
    return report


def _content(numbered: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    for number, text in numbered:
        if text.strip():
            yield number, text


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ExportFormatError",
    "ImportReport",
    "export_lines",
    "import_lines",
]
