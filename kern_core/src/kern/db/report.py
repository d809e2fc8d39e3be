"""What ``kern doctor`` reads from a database: ``db.storage_report()``.

A report is read-only: it never creates, migrates or repairs anything, so it shows the
database as it is (a table dropped by hand shows as missing, not silently recreated).
``kern doctor --repair`` runs ``create_tables`` afterwards, which puts back what it can.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Capability:
    """An optional feature of the backend: whether this database has it, and how to get it."""

    name: str
    available: bool
    detail: str
    #: What to do to get it (None when it is available or nothing can be done).
    fix: str | None = None


@dataclass(frozen=True)
class StorageReport:
    """The state of one database's kern schema, as ``kern doctor`` prints it."""

    backend: str
    #: Where the data lives, without a password (``storage_target()``).
    target: str
    #: The backend server's or library's version, if known ("PostgreSQL 15.8").
    server_version: str | None = None
    #: Schema component -> version applied (empty for a database kern never wrote to).
    schema_versions: dict[str, int] = field(default_factory=dict)
    #: Schema component -> the version this kern expects.
    expected_versions: dict[str, int] = field(default_factory=dict)
    #: Tables, indexes, collections, keys or settings kern needs that are not there.
    missing: list[str] = field(default_factory=list)
    capabilities: list[Capability] = field(default_factory=list)
    #: Rows (or documents, or records) per logical table, where cheap to count.
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def pending_migrations(self) -> dict[str, tuple[int, int]]:
        """Component -> (applied, expected) for every component behind this kern."""
        return {
            name: (self.schema_versions.get(name, 0), expected)
            for name, expected in self.expected_versions.items()
            if self.schema_versions.get(name, 0) < expected
        }

    @property
    def newer_than_kern(self) -> dict[str, tuple[int, int]]:
        """Component -> (applied, expected) where the database is ahead of this kern."""
        return {
            name: (applied, self.expected_versions[name])
            for name, applied in self.schema_versions.items()
            if name in self.expected_versions and applied > self.expected_versions[name]
        }

    @property
    def healthy(self) -> bool:
        """Nothing missing, nothing pending, nothing newer than this kern understands."""
        return not (self.missing or self.pending_migrations or self.newer_than_kern)


__all__ = ["Capability", "StorageReport"]
