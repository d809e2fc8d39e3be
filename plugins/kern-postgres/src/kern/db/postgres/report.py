"""Postgres's optional features as ``storage_report`` lists them (``kern doctor``).

Text search needs nothing beyond Postgres itself (``kern.db.postgres.search``). pgvector
decides between the HNSW path and the exact scan (``kern.db.postgres.vectors``): the report
says what the database allows now, read without creating the extension, and the fix.
"""

from __future__ import annotations

from kern.db.postgres.search import CONFIG
from kern.db.postgres.vectors import Extension, inspect_path
from kern.db.report import Capability

TEXT_SEARCH = Capability(
    "full-text search",
    True,
    f"tsvector columns ({CONFIG} stemming) with GIN indexes, kept by Postgres on every write",
)


def vector_capability(extension: Extension, server_major: int | None) -> Capability:
    """pgvector: usable, or why not and what to do about it."""
    path = inspect_path(extension)
    if extension.usable:
        return Capability(
            "pgvector",
            True,
            f"pgvector {extension.version} (schema {extension.schema}): an HNSW index per "
            "dimension, cosine distance, iterative index scans",
        )
    if extension.version is not None:
        fix = "ALTER EXTENSION vector UPDATE (kern needs pgvector 0.8.0 or newer)"
    elif extension.available:
        fix = (
            "CREATE EXTENSION vector in this database as a superuser (or let kern create it "
            "on first use with a role that may)"
        )
    else:
        package = f"postgresql-{server_major}-pgvector" if server_major else "pgvector"
        fix = (
            f"install pgvector 0.8 or newer on the server (e.g. apt-get install {package}), "
            "then CREATE EXTENSION vector in this database"
        )
    return Capability("pgvector", False, path.reason or "", fix)


__all__ = ["TEXT_SEARCH", "vector_capability"]
