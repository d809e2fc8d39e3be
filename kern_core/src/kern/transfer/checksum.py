"""Counts and checksums of the logical content of a database, equal across backends.

Each record is reduced to canonical text (its JSON with sorted keys, timestamps in UTC, and
its vector's model and float32 bytes), hashed, and the hashes are *added* modulo 2**256: the
sum does not depend on the order rows come in, and each backend exports in its own order.
Two databases holding the same records give the same count and checksum per kind, whatever
stores them; a row that differs in any field, or a missing or extra row, changes them.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kern.db.base import BaseDb
from kern.db.transfer import (
    DEFAULT_PAGE,
    ID_FIELDS,
    RECORD_KINDS,
    RecordKind,
    RecordPage,
    TransferRecord,
)
from kern.records import Embedding

MODULUS = 2**256


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def canonical(record: TransferRecord, embedding: Embedding | None = None) -> str:
    """The text two equal records share on every backend."""
    text = json.dumps(
        _plain(record.model_dump(mode="python")),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    if embedding is not None:
        vector = base64.b64encode(embedding.as_float32()).decode("ascii")
        text += f"\x1f{embedding.model}\x1f{vector}"
    return text


def record_hash(record: TransferRecord, embedding: Embedding | None = None) -> int:
    digest = hashlib.sha256(canonical(record, embedding).encode("utf-8")).digest()
    return int.from_bytes(digest, "big")


@dataclass
class Tally:
    """Rows and the order-free checksum of each kind, as ``kern copy`` prints them."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RECORD_KINDS, 0))
    sums: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RECORD_KINDS, 0))

    def add_page(self, page: RecordPage) -> None:
        key = ID_FIELDS[page.kind]
        total = self.sums[page.kind]
        for record in page.records:
            total += record_hash(record, page.embeddings.get(getattr(record, key)))
        self.sums[page.kind] = total % MODULUS
        self.counts[page.kind] += len(page.records)

    def checksum(self, kind: str) -> str:
        """The checksum as text: 16 hex digits are plenty to tell two tables apart."""
        return f"{self.sums[kind]:064x}"[:16]

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {
            kind: {"rows": self.counts[kind], "checksum": self.checksum(kind)}
            for kind in RECORD_KINDS
        }

    def differences(self, other: Tally) -> list[str]:
        """The kinds whose count or checksum differ from ``other``'s."""
        return [
            kind
            for kind in RECORD_KINDS
            if (self.counts[kind], self.sums[kind]) != (other.counts[kind], other.sums[kind])
        ]


def pages(
    db: BaseDb,
    kind: RecordKind,
    *,
    user_id: str | None = None,
    after: str | None = None,
    limit: int = DEFAULT_PAGE,
) -> Iterator[RecordPage]:
    """Every page of an export of ``kind``, from cursor ``after``; one page in memory at a time."""
    while True:
        page = db.export_records(kind, after=after, limit=limit, user_id=user_id)
        if page.records:
            yield page
        if page.cursor is None:
            return
        after = page.cursor


def tally_database(
    db: BaseDb,
    *,
    user_id: str | None = None,
    kinds: Iterable[RecordKind] = RECORD_KINDS,
    limit: int = DEFAULT_PAGE,
) -> Tally:
    """Count and checksum every record of ``db`` (or of one user), reading page by page."""
    tally = Tally()
    for kind in kinds:
        for page in pages(db, kind, user_id=user_id, limit=limit):
            tally.add_page(page)
    return tally


__all__ = ["Tally", "canonical", "pages", "record_hash", "tally_database"]
