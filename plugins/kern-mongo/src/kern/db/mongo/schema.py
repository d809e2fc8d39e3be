"""The collections kern keeps in MongoDB, their indexes, and the schema version of each.

Every read path of the contract has an index (docs/architecture.md, "Stored records"): the
history read walks ``{session_id, seq}`` backwards, listings walk ``{<filter>,
updated_at_us}``, searches start from the multikey ``terms`` index, and a search by vector
reads its candidates through ``{user_id, embedding_model}`` (memories) or ``{embedding_model,
kind, namespace, user_id}`` (learnings). Index names are explicit so that they read well in
``db.collection.getIndexes()``.

Migrations run forward: ``MIGRATIONS[name]`` lists, per version, the indexes that version
adds. ``kern_schema_versions`` records the version each collection is at. The record is not
trusted for the indexes themselves: on first use kern lists each collection's indexes and
creates any required one that is missing (dropped by hand, lost in a restore), since a
missing unique ``{session_id, seq}`` index would let concurrent writers share a seq.

Retention (``kern.db.mongo.retention``) reads idle sessions through ``updated`` and old
runs through ``created`` (runs' version 3), and keeps each session's last runs through
``{session_id, seq}``.

Version 2 of memories and learnings adds the vector indexes. Their documents need no
rewrite: one written before vectors has no ``embedding_model``, so it is simply one "without
embedding" that ``LearningMachine.reembed`` gives a vector.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, DESCENDING


@dataclass(frozen=True)
class IndexSpec:
    name: str
    keys: tuple[tuple[str, int], ...]
    unique: bool = False
    #: Only documents holding the field are indexed (MongoDB; nx-27017 indexes them all).
    sparse: bool = False

    @property
    def fields(self) -> tuple[str, ...]:
        """The indexed fields in order: what identifies the index whatever its name or
        directions (nx-27017 names indexes its own way and does not keep directions)."""
        return tuple(key for key, _ in self.keys)

    def options(self) -> dict[str, object]:
        options: dict[str, object] = {"name": self.name}
        if self.unique:
            options["unique"] = True
        if self.sparse:
            options["sparse"] = True
        return options


@dataclass(frozen=True)
class Version:
    """What one schema version of a collection adds."""

    number: int
    indexes: tuple[IndexSpec, ...] = field(default_factory=tuple)


def _ix(name: str, *keys: str, unique: bool = False, sparse: bool = False) -> IndexSpec:
    """An index on ``keys``; a key written ``-field`` is descending."""
    parsed = tuple(
        (key[1:], DESCENDING) if key.startswith("-") else (key, ASCENDING) for key in keys
    )
    return IndexSpec(name, parsed, unique, sparse)


#: Logical collection names (``kern.db.base.TABLES``); stored with the prefix in front.
SESSIONS, RUNS, MEMORIES, LEARNINGS, SCHEMA_VERSIONS = (
    "sessions",
    "runs",
    "memories",
    "learnings",
    "schema_versions",
)

MIGRATIONS: dict[str, tuple[Version, ...]] = {
    SCHEMA_VERSIONS: (Version(1),),
    SESSIONS: (
        Version(
            1,
            (
                # list_sessions(user_id=...) and forget_user
                _ix("user_updated", "user_id", "-updated_at_us"),
                # list_sessions(component_id=...)
                _ix("component_updated", "component_id", "-updated_at_us"),
                # list_sessions() without filters: newest first
                _ix("updated", "-updated_at_us"),
            ),
        ),
        Version(
            2,
            (
                # search_sessions: the user's sessions sharing a word with the question
                # (create_tables gives the sessions stored before it their terms)
                _ix("user_terms", "user_id", "terms"),
            ),
        ),
    ),
    RUNS: (
        Version(
            1,
            (
                # History: the last N runs by seq. Unique: two writers never share a seq.
                _ix("session_seq", "session_id", "seq", unique=True),
                # forget_user: runs holding the user's data outside the user's sessions
                _ix("user", "user_id"),
            ),
        ),
        Version(
            2,
            (
                # forget_user: a commit_turn interrupted before its session was written
                # holds the user's session in its pending marker (ops.commit_turn)
                _ix("pending_user", "pending.user_id", sparse=True),
            ),
        ),
        Version(
            3,
            (
                # retention (runs_before): the runs created before a time, oldest first; with
                # session_id and seq a unique order to continue a batch from (nx-27017
                # indexes no _id beside another field)
                _ix("created", "created_at_us", "session_id", "seq"),
            ),
        ),
    ),
    MEMORIES: (
        Version(
            1,
            (
                _ix("user_updated", "user_id", "-updated_at_us"),
                _ix("user_agent_updated", "user_id", "agent_id", "-updated_at_us"),
                # search: the user's memories sharing a word with the question
                _ix("user_terms", "user_id", "terms"),
            ),
        ),
        Version(
            2,
            (
                # search by vector: the user's vectors made by the query's embedder
                _ix("user_model", "user_id", "embedding_model"),
            ),
        ),
    ),
    LEARNINGS: (
        Version(
            1,
            (
                _ix("kind_namespace_updated", "kind", "namespace", "-updated_at_us"),
                _ix("status_kind_updated", "status", "kind", "-updated_at_us"),
                _ix("user_kind_updated", "user_id", "kind", "-updated_at_us"),
                _ix("session_updated", "session_id", "-updated_at_us"),
                _ix("entity_kind_updated", "entity_id", "kind", "-updated_at_us"),
                # search: learnings sharing a word with the question, then by status
                _ix("terms_status", "terms", "status"),
            ),
        ),
        Version(
            2,
            (
                # search by vector: the vectors of the query's embedder (every search names
                # it, so every search uses this index), then a store's kind, namespace and,
                # in the user namespace, the user
                _ix("model_kind_namespace_user", "embedding_model", "kind", "namespace", "user_id"),
            ),
        ),
    ),
}


def target_versions() -> dict[str, int]:
    """The version each collection is at once every migration has run."""
    return {name: versions[-1].number for name, versions in MIGRATIONS.items()}


def required_indexes(name: str) -> list[IndexSpec]:
    """Every index collection ``name`` has at its target version."""
    return [index for version in MIGRATIONS[name] for index in version.indexes]


def index_gaps(name: str, existing: Mapping[str, Any]) -> tuple[list[IndexSpec], list[IndexSpec]]:
    """The required indexes of collection ``name`` that ``existing`` (its
    ``index_information()``) lacks, and the unique ones it has without being unique.

    Matched by fields, whatever their names and directions (``IndexSpec.fields``)."""
    have = {tuple(key for key, _ in info["key"]): info for info in existing.values()}
    absent: list[IndexSpec] = []
    not_unique: list[IndexSpec] = []
    for index in required_indexes(name):
        found = have.get(index.fields)
        if found is None:
            absent.append(index)
        elif index.unique and not found.get("unique"):
            not_unique.append(index)
    return absent, not_unique


def pending(name: str, current: int) -> list[Version]:
    """The versions of collection ``name`` newer than ``current``, oldest first."""
    return [version for version in MIGRATIONS[name] if version.number > current]


__all__ = [
    "LEARNINGS",
    "MEMORIES",
    "MIGRATIONS",
    "RUNS",
    "SCHEMA_VERSIONS",
    "SESSIONS",
    "IndexSpec",
    "Version",
    "index_gaps",
    "pending",
    "required_indexes",
    "target_versions",
]
