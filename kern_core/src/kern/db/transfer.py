"""Moving records out of one database and into another: the contract's bulk paths.

``export_records`` reads one kind of record in pages, in an order the backend chooses and
keeps, with an opaque ``cursor`` to continue after the last row returned: a copy killed
halfway resumes from the last cursor it saved, and memory stays flat whatever the size.
``import_records`` writes one page back as it was read: ids, ``seq``, ``version`` and
timestamps kept, vectors with their rows, through the backend's bulk path (one statement,
pipeline or bulk write per page, never a round trip per row). Importing the same page twice
changes nothing, so a rerun of an interrupted copy or import ends identical to a clean one.

``kern.transfer`` builds ``kern export`` / ``kern import`` / ``kern copy`` on these two
methods; a third-party backend that implements them gets the commands for free, and the
``transfer`` topic of the conformance suite checks them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from kern.records import Embedding, Learning, Memory, Run, Session

#: What ``export_records`` / ``import_records`` move: the logical tables holding user data
#: (``schema_versions`` stays with each database: its migrations are its own).
RecordKind: TypeAlias = Literal["sessions", "runs", "memories", "learnings"]

#: Every kind, in the order an import writes them (sessions before the runs that name them).
RECORD_KINDS: tuple[RecordKind, ...] = ("sessions", "runs", "memories", "learnings")

#: The record class of each kind.
RECORD_TYPES: dict[RecordKind, type[Session | Run | Memory | Learning]] = {
    "sessions": Session,
    "runs": Run,
    "memories": Memory,
    "learnings": Learning,
}

#: The id field of each kind's records.
ID_FIELDS: dict[RecordKind, str] = {
    "sessions": "session_id",
    "runs": "run_id",
    "memories": "memory_id",
    "learnings": "learning_id",
}

#: Rows per page unless the caller says otherwise.
DEFAULT_PAGE = 1000
#: The largest page a backend must accept (a bound on the memory one page takes).
MAX_PAGE = 10_000

TransferRecord: TypeAlias = Session | Run | Memory | Learning


@dataclass(frozen=True)
class RecordPage:
    """One page of records of one kind, with the vectors of those that have one.

    ``embeddings`` maps a memory's or learning's id to its stored vector (empty for sessions
    and runs). ``cursor`` continues an export after this page's last row; ``None`` when the
    export has nothing more. Every run carries its ``seq``.
    """

    kind: RecordKind
    records: Sequence[TransferRecord]
    embeddings: dict[str, Embedding] = field(default_factory=dict)
    cursor: str | None = None

    def __len__(self) -> int:
        return len(self.records)


#: The index key a backend exports each kind in the order of, as most backends have it:
#: runs by ``(session_id, seq)``, the others by their id. ``key_cursor`` / ``read_key_cursor``
#: make and read cursors holding such a key.
INDEX_KEYS: dict[RecordKind, tuple[type, ...]] = {
    "sessions": (str,),
    "runs": (str, int),
    "memories": (str,),
    "learnings": (str,),
}


def key_cursor(kind: RecordKind, key: Sequence[str | int]) -> str:
    """The cursor after the row whose index key is ``key``: JSON headed by its kind, so a
    cursor of another kind's export is refused, not misread."""
    return json.dumps([kind, *key], separators=(",", ":"))


def read_key_cursor(kind: RecordKind, cursor: str) -> tuple[Any, ...]:
    """The key in a ``key_cursor`` of a ``kind`` export; ``ValueError`` for anything else."""
    try:
        value = json.loads(cursor)
    except ValueError:
        value = None
    types = INDEX_KEYS[kind]
    if not (
        isinstance(value, list)
        and len(value) == 1 + len(types)
        and value[0] == kind
        and all(
            isinstance(part, wanted) and not isinstance(part, bool)
            for part, wanted in zip(value[1:], types, strict=True)
        )
    ):
        raise ValueError(
            f"export_records(): after={cursor!r} is not the cursor of a {kind} export from "
            "this backend: pass the cursor of the page before, or None to start at the "
            "beginning"
        )
    return tuple(value[1:])


def check_record_kind(argument: str, value: Any) -> None:
    if value not in RECORD_KINDS:
        raise ValueError(f"{argument} must be one of {', '.join(RECORD_KINDS)}, not {value!r}")


def check_cursor(argument: str, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(
            f"{argument} must be a cursor returned by export_records (a non-empty string) "
            f"or None to start at the beginning, not {value!r}"
        )


def check_page_limit(argument: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE:
        raise ValueError(f"{argument} must be an int from 1 to {MAX_PAGE}, not {value!r}")


def check_batch(argument: str, value: Any) -> None:
    """A page to import: records of its kind only, every run with a seq, vectors of its rows.

    Ids and text inside the records are checked by the caller through ``check_record`` (the
    door does it record by record, see ``kern.db.door``)."""
    if not isinstance(value, RecordPage):
        raise TypeError(f"{argument} must be a kern.db.transfer.RecordPage, not {value!r}")
    check_record_kind(f"{argument}.kind", value.kind)
    expected = RECORD_TYPES[value.kind]
    ids = set()
    for position, record in enumerate(value.records):
        if not isinstance(record, expected):
            raise TypeError(
                f"{argument}.records[{position}] is a {type(record).__name__}; a page of "
                f"{value.kind} holds {expected.__name__} records only"
            )
        if isinstance(record, Run) and (record.seq is None or record.seq < 1):
            raise ValueError(
                f"{argument}.records[{position}] (run {record.run_id!r}) has seq "
                f"{record.seq!r}: an imported run keeps the seq it had, a positive int"
            )
        ids.add(getattr(record, ID_FIELDS[value.kind]))
    stray = set(value.embeddings) - ids
    if stray:
        raise ValueError(
            f"{argument}.embeddings names rows that are not in the page: {sorted(stray)[:5]}"
        )
    if value.embeddings and value.kind not in ("memories", "learnings"):
        raise ValueError(f"{argument}: {value.kind} carry no vectors; embeddings must be empty")
    for key, embedding in value.embeddings.items():
        if not isinstance(embedding, Embedding):
            raise TypeError(f"{argument}.embeddings[{key!r}] must be an Embedding")


__all__ = [
    "DEFAULT_PAGE",
    "ID_FIELDS",
    "INDEX_KEYS",
    "MAX_PAGE",
    "RECORD_KINDS",
    "RECORD_TYPES",
    "RecordKind",
    "RecordPage",
    "TransferRecord",
    "key_cursor",
    "read_key_cursor",
]
