"""Key rotation: every stored record re-encrypted with the keyring's first key, in pages.

The database is read as stored (the layer set to ``RAW``) through ``export_records`` and
written back through ``import_records``, the bulk paths ``kern copy`` uses, which keep ids,
``seq``, ``version`` and timestamps (sessions are written compare-and-set instead, see
``_write_back``). A record is written back only when it holds a token of
another key, or text the keyring's settings want encrypted that is still in clear (so a
rotation also encrypts data written before encryption was turned on). After each page the
export cursor is saved in a checkpoint file (atomically): a killed rotation rerun resumes
where it stopped; a page done twice is sealed with the same key, which changes nothing a
reader sees. ``verify`` reads everything once more and counts what still needs another key.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kern.crypto.keys import Keyring
from kern.crypto.layer import ATTRIBUTE, RAW, encryption_of
from kern.crypto.records import Encryption, open_record, seal_record
from kern.db.base import BaseDb
from kern.db.transfer import DEFAULT_PAGE, ID_FIELDS, RECORD_KINDS, RecordKind, RecordPage
from kern.errors import KernError, VersionConflictError
from kern.records import Learning, Memory, Run, RunStatus, utcnow
from kern.transfer.checkpoint_file import read_checkpoint, write_checkpoint
from kern.transfer.checksum import pages

#: A run still ``running`` this long after it started is rotated (its writer is gone).
BUSY_RUNS = timedelta(hours=1)

_TOKEN_KID = re.compile(r"kern:enc:v1:([A-Za-z0-9_.-]{1,64}):")


class RotationCheckpointError(KernError, ValueError):
    """A rotation checkpoint that belongs to another database or key, or cannot be read."""


@dataclass
class RotationCheckpoint:
    """Where an interrupted rotation stands: the export cursor of each kind, the kinds done."""

    path: Path
    target: str
    kid: str
    cursors: dict[str, str] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)
    rewritten: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RECORD_KINDS, 0))

    @classmethod
    def load(cls, path: Path, target: str, kid: str) -> RotationCheckpoint:
        fresh = cls(path, target, kid)
        saved = read_checkpoint(path, RotationCheckpointError)
        if saved is None:
            return fresh
        if (saved.get("target"), saved.get("kid")) != (target, kid):
            raise RotationCheckpointError(
                f"the checkpoint {path} belongs to a rotation of {saved.get('target')} to key "
                f"{saved.get('kid')!r}, not of {target} to {kid!r}: pass another --checkpoint, "
                "or --restart"
            )
        fresh.cursors = dict(saved.get("cursors", {}))
        fresh.done = list(saved.get("done", []))
        fresh.rewritten.update(saved.get("rewritten", {}))
        return fresh

    @property
    def resumed(self) -> bool:
        return bool(self.cursors or self.done)

    def save(self) -> None:
        """Written atomically: a kill leaves the old checkpoint or the new one."""
        body = {
            "target": self.target,
            "kid": self.kid,
            "cursors": self.cursors,
            "done": self.done,
            "rewritten": self.rewritten,
        }
        write_checkpoint(self.path, body)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class RotationReport:
    """Records read, rewritten and skipped (written meanwhile by a turn) per kind;
    ``stale`` (when verified): records that still need a key other than the new one, per
    kind (all zero after a complete rotation)."""

    kid: str
    read: dict[str, int]
    rewritten: dict[str, int]
    skipped: dict[str, int]
    resumed: bool
    stale: dict[str, int] | None = None

    @property
    def verified(self) -> bool | None:
        return None if self.stale is None else not any(self.stale.values())


def token_kids(record: Any) -> set[str]:
    """The key ids of every token stored in ``record``."""
    return set(_TOKEN_KID.findall(record.model_dump_json()))


def rotate_record(encryption: Encryption, record: Any) -> Any | None:
    """``record`` sealed with the primary key only, or None when it is already so."""
    ring = encryption.keyring
    kids = token_kids(record)
    # Memory and learning content sealed before stays sealed, whatever ``memories`` says.
    memories = encryption.memories or (bool(kids) and isinstance(record, Memory | Learning))
    settings = Encryption(ring, memories)
    if kids <= {ring.primary.kid}:
        sealed = seal_record(settings, record)  # seals what is still in clear, if anything
        return None if sealed == record else sealed
    return seal_record(settings, open_record(ring, record))


def _busy(record: Any, now: datetime) -> bool:
    """A run that may still be finished by its writer: ``update_run`` racing the write-back
    would be undone by it. Left for the next rotation (``BUSY_RUNS`` after it started, a run
    still ``running`` counts as abandoned and is rotated)."""
    return (
        isinstance(record, Run)
        and record.status is RunStatus.RUNNING
        and now - record.created_at < BUSY_RUNS
    )


def _write_back(db: BaseDb, encryption: Encryption, page: RecordPage) -> tuple[int, int]:
    """Rewrite what ``page`` holds under another key; returns (rewritten, skipped).

    Sessions are written compare-and-set on the version read (``upsert_session``): a session
    a turn rewrote meanwhile is skipped, not rolled back (its writer sealed it with its own
    keyring; the verification counts it if that was an old key). The rest go through the
    bulk ``import_records``, runs still being written excepted."""
    now = utcnow()
    changed: list[Any] = []
    skipped = 0
    for record in page.records:
        rotated = rotate_record(encryption, record)
        if rotated is None:
            continue
        if _busy(record, now):
            skipped += 1
        else:
            changed.append(rotated)
    if page.kind == "sessions":
        written = 0
        for session in changed:
            try:
                db.upsert_session(session, expected_version=session.version)
                written += 1
            except VersionConflictError:
                skipped += 1
        return written, skipped
    if changed:
        ids = {getattr(record, ID_FIELDS[page.kind]) for record in changed}
        vectors = {row_id: vec for row_id, vec in page.embeddings.items() if row_id in ids}
        db.import_records(RecordPage(page.kind, changed, vectors))
    return len(changed), skipped


class _RawAccess:
    """``db`` read and written as stored for the duration of a ``with``."""

    def __init__(self, db: BaseDb) -> None:
        self.db = db
        self.saved = [(t, t.__dict__.get(ATTRIBUTE, _MISSING)) for t in _targets(db)]

    def __enter__(self) -> BaseDb:
        for target, _ in self.saved:
            setattr(target, ATTRIBUTE, RAW)
        return self.db

    def __exit__(self, *exc: object) -> None:
        for target, value in self.saved:
            if value is _MISSING:
                target.__dict__.pop(ATTRIBUTE, None)
            else:
                setattr(target, ATTRIBUTE, value)


_MISSING = object()


def _targets(db: Any) -> list[Any]:
    inner = getattr(db, "sync_db", None)
    return [db] if inner is None or inner is db else [db, inner]


def rotate_keys(
    db: BaseDb,
    keyring: Keyring | None = None,
    *,
    memories: bool | None = None,
    checkpoint: RotationCheckpoint | None = None,
    limit: int = DEFAULT_PAGE,
    verify: bool = True,
    on_page: Callable[[RecordKind, int], None] | None = None,
) -> RotationReport:
    """Re-encrypt every record of ``db`` with ``keyring``'s first key (default: the Db's own
    keyring, set in code or from ``KERN_ENCRYPTION_KEY``), which must hold every old key.

    ``memories`` (default: the Db's setting) also encrypts memory and learning content that
    is still in clear. With a ``checkpoint``, progress is saved after each page and a saved
    one resumed; it is removed when the rotation completes.
    """
    current = encryption_of(db)
    if keyring is None:
        if not isinstance(current, Encryption):
            raise KernError(
                "kern rotate-key needs the keys: set KERN_ENCRYPTION_KEY to the new key "
                "first, then every old one (new:...,old:...)."
            )
        keyring = current.keyring
    if memories is None:
        memories = isinstance(current, Encryption) and current.memories
    encryption = Encryption(keyring, memories)
    read: dict[str, int] = dict.fromkeys(RECORD_KINDS, 0)
    rewritten: dict[str, int] = dict.fromkeys(RECORD_KINDS, 0)
    skipped: dict[str, int] = dict.fromkeys(RECORD_KINDS, 0)
    resumed = checkpoint is not None and checkpoint.resumed
    if checkpoint is not None:
        rewritten.update(checkpoint.rewritten)
    with _RawAccess(db):
        for kind in RECORD_KINDS:
            if checkpoint is not None and kind in checkpoint.done:
                continue
            after = checkpoint.cursors.get(kind) if checkpoint is not None else None
            for page in pages(db, kind, after=after, limit=limit):
                read[kind] += len(page.records)
                written, passed = _write_back(db, encryption, page)
                rewritten[kind] += written
                skipped[kind] += passed
                if checkpoint is not None and page.cursor is not None:
                    checkpoint.cursors[kind] = page.cursor
                    checkpoint.rewritten = rewritten
                    checkpoint.save()
                if on_page is not None:
                    on_page(kind, len(page.records))
            if checkpoint is not None:
                checkpoint.done.append(kind)
                checkpoint.cursors.pop(kind, None)
                checkpoint.rewritten = rewritten
                checkpoint.save()
        report = RotationReport(keyring.primary.kid, read, rewritten, skipped, resumed)
        if verify:
            report.stale = stale_records(db, keyring.primary.kid, limit=limit)
    if checkpoint is not None:
        checkpoint.clear()
    return report


def stale_records(db: BaseDb, kid: str, *, limit: int = DEFAULT_PAGE) -> dict[str, int]:
    """Per kind, how many stored records hold a token of a key other than ``kid``."""
    stale: dict[str, int] = dict.fromkeys(RECORD_KINDS, 0)
    with _RawAccess(db):
        for kind in RECORD_KINDS:
            for page in pages(db, kind, limit=limit):
                stale[kind] += sum(bool(token_kids(r) - {kid}) for r in page.records)
    return stale


__all__ = [
    "RotationCheckpoint",
    "RotationCheckpointError",
    "RotationReport",
    "rotate_keys",
    "rotate_record",
    "stale_records",
]
