"""``storage_report`` as a Mongo plan: kern's collections as they are, read without a write.

First one ``listCollections``; then only the collections it shows are asked anything (their
indexes, their count), because nx-27017 creates a collection when asked its indexes or its
count. So a collection or index dropped by hand shows as missing, exactly as
``create_tables`` would find it (``schema.index_gaps``, matched by fields), and nothing is
created or migrated. ``kern_schema_versions`` holds the version of each collection. Counts
are ``estimatedDocumentCount`` (collection metadata, not a scan; runs of unfinished commits
included). The capabilities are the paths the backend takes: search through the ``terms``
indexes and vector search by an exact scan (both need only kern's own indexes), commit_turn
in a transaction or by the pending-commit protocol, and the client-level ``bulkWrite``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo.errors import OperationFailure

from kern.db.mongo.calls import CLIENT_BULK_WRITE_WIRE_VERSION, Call, OnDatabase, Op
from kern.db.mongo.schema import (
    LEARNINGS,
    MEMORIES,
    SCHEMA_VERSIONS,
    index_gaps,
    required_indexes,
    target_versions,
)
from kern.db.report import Capability, StorageReport
from kern.db.transfer import RECORD_KINDS

#: What the fix of a missing collection or index is.
REPAIR = "run kern doctor --repair (or open the database with kern): it creates what is missing"
#: The indexes each capability reads through: (collection, index name).
TEXT_INDEXES = ((MEMORIES, "user_terms"), (LEARNINGS, "terms_status"))
VECTOR_INDEXES = ((MEMORIES, "user_model"), (LEARNINGS, "model_kind_namespace_user"))


@dataclass(frozen=True)
class Site:
    """Whose report it is: the backend's name, ``storage_target()``, the collection prefix."""

    backend: str
    target: str
    prefix: str


def storage_report(site: Site) -> Op[StorageReport]:
    present = set((yield OnDatabase("list_collection_names")))
    versions: dict[str, int] = {}
    if site.prefix + SCHEMA_VERSIONS in present:
        docs = yield Call(SCHEMA_VERSIONS, "find", ({},), {"projection": {"version": 1}})
        versions = {str(doc["_id"]): int(doc.get("version", 0)) for doc in docs}
    missing: list[str] = []
    lacking: set[tuple[str, str]] = set()
    expected = target_versions()
    for name in expected:
        collection = site.prefix + name
        if collection not in present:
            missing.append(f"collection {collection}")
            lacking.update((name, index.name) for index in required_indexes(name))
            continue
        if not required_indexes(name):
            continue
        absent, not_unique = index_gaps(name, (yield Call(name, "index_information")))
        for index in absent:
            missing.append(f"index {collection}.{index.name} on ({', '.join(index.fields)})")
        for index in not_unique:
            missing.append(
                f"unique index {collection}.{index.name} on ({', '.join(index.fields)}): "
                "an index on those fields exists but is not unique (drop it, then repair)"
            )
        lacking.update((name, index.name) for index in (*absent, *not_unique))
    counts: dict[str, int] = {}
    for kind in RECORD_KINDS:
        if site.prefix + kind in present:
            counts[kind] = int((yield Call(kind, "estimated_document_count")))
    hello = yield OnDatabase("command", ("hello",))
    return StorageReport(
        backend=site.backend,
        target=site.target,
        server_version=(yield from _server_version()),
        schema_versions=versions,
        expected_versions=expected,
        missing=missing,
        capabilities=capabilities(hello, lacking),
        counts=counts,
    )


def _server_version() -> Op[str | None]:
    """The server's version from ``buildInfo`` (None if this user may not run it)."""
    try:
        info = yield OnDatabase("command", ("buildInfo",))
    except OperationFailure:
        return None
    version = info.get("version")
    if not version:
        return None
    process = info.get("process")  # nx-27017 names itself here; mongod says nothing
    if process in (None, "mongod"):
        return f"MongoDB {version}"
    return f"{process} (speaks MongoDB {version})"


def capabilities(hello: dict[str, Any], lacking: set[tuple[str, str]]) -> list[Capability]:
    """The paths kern takes on this server (``hello``), with kern's indexes ``lacking``."""
    text = not lacking.intersection(TEXT_INDEXES)
    vectors = not lacking.intersection(VECTOR_INDEXES)
    transactions = "setName" in hello or hello.get("msg") == "isdbgrid"
    bulk = int(hello.get("maxWireVersion", 0)) >= CLIENT_BULK_WRITE_WIRE_VERSION
    return [
        Capability(
            "text search",
            text,
            "kern's own word index (a multikey 'terms' field, BM25 over the candidates), "
            "not $text: it works on every MongoDB-compatible server"
            + ("" if text else "; its index is missing, so searches scan the collection"),
            None if text else REPAIR,
        ),
        Capability(
            "vector search",
            vectors,
            "an exact cosine scan of the candidates read through the {user_id, "
            "embedding_model} index (memories) and {embedding_model, kind, namespace, "
            "user_id} (learnings); Atlas $vectorSearch is not needed"
            + ("" if vectors else "; an index of it is missing, so searches scan"),
            None if vectors else REPAIR,
        ),
        Capability(
            "multi-document transactions",
            transactions,
            "a replica set or sharded cluster: commit_turn writes the run and the session "
            "in one transaction"
            if transactions
            else "a standalone server: commit_turn stays all-or-nothing by kern's "
            "pending-commit protocol, one more round trip per turn",
            None
            if transactions
            else "optional: run the server as a replica set (one node is enough: mongod "
            "--replSet rs0, then rs.initiate()) for one transaction per turn",
        ),
        Capability(
            "client bulkWrite",
            bulk,
            "the server runs the client-level bulkWrite command (MongoDB 8.0+, nx-27017): a "
            "turn's last two updates, and set_embeddings, go in one round trip"
            if bulk
            else "before MongoDB 8.0: a turn's last two updates and set_embeddings send one "
            "update per document",
            None if bulk else "upgrade the server to MongoDB 8.0 or newer",
        ),
    ]


__all__ = ["Site", "capabilities", "storage_report"]
