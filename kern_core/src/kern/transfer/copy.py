"""``kern copy``: every record of one database into another, resumable and verified.

Pages go from the source's ``export_records`` straight into the destination's
``import_records`` (each backend's bulk path), one page in memory at a time. After each page
is stored, the source cursor is saved in a checkpoint file, written atomically: a copy
killed at any point resumes from the last saved cursor. The page in flight when it was
killed is imported again, which changes nothing (imports replace by id and keep ``seq``),
so a resumed copy has no duplicate and no gap. The same holds for a copy rerun from the
start. At the end both databases are counted and checksummed (``kern.transfer.checksum``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kern.db.base import BaseDb
from kern.db.transfer import DEFAULT_PAGE, RECORD_KINDS, RecordKind, RecordPage
from kern.errors import KernError
from kern.transfer.checkpoint_file import read_checkpoint, write_checkpoint
from kern.transfer.checksum import Tally, pages, tally_database


class CheckpointError(KernError, ValueError):
    """A checkpoint file that belongs to another copy, or cannot be read."""


@dataclass
class Checkpoint:
    """Where an interrupted copy stands: the source cursor of each kind, the kinds done."""

    path: Path
    source: str
    destination: str
    user_id: str | None = None
    cursors: dict[str, str] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)
    copied: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RECORD_KINDS, 0))

    @classmethod
    def load(cls, path: Path, source: str, destination: str, user_id: str | None) -> Checkpoint:
        """The saved checkpoint at ``path`` if there is one, else a fresh one."""
        fresh = cls(path, source, destination, user_id)
        saved = read_checkpoint(path, CheckpointError)
        if saved is None:
            return fresh
        theirs = (saved.get("source"), saved.get("destination"), saved.get("user_id"))
        if theirs != (source, destination, user_id):
            raise CheckpointError(
                f"the checkpoint {path} belongs to a copy from {theirs[0]} to {theirs[1]}"
                f" (user {theirs[2]}), not this one: pass another --checkpoint, or --restart"
            )
        fresh.cursors = dict(saved.get("cursors", {}))
        fresh.done = list(saved.get("done", []))
        fresh.copied.update(saved.get("copied", {}))
        return fresh

    @property
    def resumed(self) -> bool:
        return bool(self.cursors or self.done)

    def save(self) -> None:
        """Write atomically: a kill leaves the old checkpoint or the new, never half of one."""
        body = {
            "source": self.source,
            "destination": self.destination,
            "user_id": self.user_id,
            "cursors": self.cursors,
            "done": self.done,
            "copied": self.copied,
        }
        write_checkpoint(self.path, body)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class CopyReport:
    """What a copy did, and whether the two databases ended equal."""

    copied: dict[str, int]
    seconds: float
    resumed: bool
    source: Tally | None = None
    destination: Tally | None = None

    @property
    def verified(self) -> bool | None:
        """True when counts and checksums agree, None when not checked."""
        if self.source is None or self.destination is None:
            return None
        return not self.source.differences(self.destination)


def copy_database(
    source: BaseDb,
    destination: BaseDb,
    *,
    checkpoint: Checkpoint | None = None,
    user_id: str | None = None,
    limit: int = DEFAULT_PAGE,
    verify: bool = True,
    on_page: Callable[[RecordKind, RecordPage], None] | None = None,
) -> CopyReport:
    """Copy every record (or one user's) from ``source`` to ``destination``.

    With a ``checkpoint``, progress is saved after each page and a saved one is resumed;
    it is removed when the copy completes. ``verify`` counts and checksums both sides.
    """
    started = time.perf_counter()
    copied: dict[str, int] = dict.fromkeys(RECORD_KINDS, 0)
    resumed = checkpoint is not None and checkpoint.resumed
    if checkpoint is not None:
        copied.update(checkpoint.copied)
    for kind in RECORD_KINDS:
        if checkpoint is not None and kind in checkpoint.done:
            continue
        after = checkpoint.cursors.get(kind) if checkpoint is not None else None
        for page in pages(source, kind, user_id=user_id, after=after, limit=limit):
            destination.import_records(page)
            copied[kind] += len(page.records)
            if checkpoint is not None and page.cursor is not None:
                checkpoint.cursors[kind] = page.cursor
                checkpoint.copied = copied
                checkpoint.save()
            if on_page is not None:
                on_page(kind, page)
        if checkpoint is not None:
            checkpoint.done.append(kind)
            checkpoint.cursors.pop(kind, None)
            checkpoint.copied = copied
            checkpoint.save()
    report = CopyReport(copied, time.perf_counter() - started, resumed)
    if verify:
        report.source = tally_database(source, user_id=user_id, limit=limit)
        report.destination = tally_database(destination, user_id=user_id, limit=limit)
    if checkpoint is not None:
        checkpoint.clear()
    return report


__all__ = ["Checkpoint", "CheckpointError", "CopyReport", "copy_database"]
