"""Which vector search a DuckDb uses, and why: said once per Db (``DuckDb.vector_index``).

DuckDB's HNSW index lives in the ``vss`` extension. kern never runs ``INSTALL`` (that
downloads); the only copy it would use is the file shipped in the ``duckdb-extension-vss``
wheel (``duckdb_extension_vss/extensions/v<DuckDB version>/vss.duckdb_extension``), loaded by
path. An extension is built for one DuckDB version: DuckDB refuses to load another's, and
forcing it (``allow_extensions_metadata_mismatch``) crashed the process in our trial
(DuckDB 2.0.0 with the 1.5.5 wheel, the newest on PyPI). So the wheel counts only when the
directory name of its file is the running DuckDB's version; the package is located with
``importlib.util.find_spec``, never imported or loaded to find out.

Even a matching wheel does not give kern an HNSW path yet, for reasons written down here
so that the next step starts from them:

- vss indexes a fixed-size ``FLOAT[n]`` column; kern keeps vectors of any dimension in one
  ``FLOAT[]`` column (``kern.db.duckdb.vectors``), so an index needs a side table per
  dimension kept in step with every write, delete and ``forget_user``.
- vss applies a query's ``WHERE`` to the index's top k, not during the graph walk: a
  search for one user's memories would get other users' neighbours, filter them away and
  return too few rows. Per-user search has to over-fetch and fall back to the exact scan.
- In a database file, ``CREATE INDEX ... USING HNSW`` needs
  ``SET hnsw_enable_experimental_persistence = true``. vss's documentation says the index is
  not recovered from the write-ahead log: after a crash the index can be lost or corrupt,
  and deleted rows stay in it until ``PRAGMA hnsw_compact_index`` (a deleted vector would
  outlive ``forget_user``). kern would enable it only for ``:memory:`` databases or on an
  explicit opt-in.

Until then every DuckDb searches with the exact statement of ``kern.db.duckdb.vectors``.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

log = logging.getLogger("kern.db.duckdb")
# A library logs; the application decides what is shown.
log.addHandler(logging.NullHandler())

EXACT = "exact (in SQL)"
HNSW = "vss hnsw"
PACKAGE = "duckdb_extension_vss"
DISTRIBUTION = "duckdb-extension-vss"
FILE = "vss.duckdb_extension"


@dataclass(frozen=True)
class VssWheel:
    """An installed ``duckdb-extension-vss``: its version and its extension files by the
    DuckDB version each was built for (``"1.5.5"`` -> path)."""

    version: str
    files: dict[str, Path]


@dataclass(frozen=True)
class VectorIndex:
    """The vector search a Db uses (``EXACT`` or ``HNSW``), why, and the file to load."""

    name: str
    reason: str
    extension: Path | None = None


@functools.cache
def find_vss_wheel() -> VssWheel | None:
    """The installed vss wheel, found without importing it; None if it is not installed.
    Looked for once per process (``find_vss_wheel.cache_clear()`` to look again)."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        version = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        version = "unknown"
    files: dict[str, Path] = {}
    for location in spec.submodule_search_locations:
        for found in sorted(Path(location).glob(f"extensions/v*/{FILE}")):
            files.setdefault(found.parent.name.removeprefix("v"), found)
    return VssWheel(version, files)


def choose_vector_index(duckdb_version: str, wheel: VssWheel | None) -> VectorIndex:
    """The vector search for a Db on DuckDB ``duckdb_version`` with ``wheel`` installed."""
    if wheel is None:
        return VectorIndex(
            EXACT,
            f"{DISTRIBUTION} is not installed (kern never downloads DuckDB extensions)",
        )
    extension = wheel.files.get(duckdb_version)
    if extension is None:
        built_for = ", ".join(sorted(wheel.files)) or "no DuckDB version"
        return VectorIndex(
            EXACT,
            f"{DISTRIBUTION} {wheel.version} holds vss for DuckDB {built_for}, not for the "
            f"running DuckDB {duckdb_version}: an extension loads only into the DuckDB "
            "version it was built for",
        )
    return VectorIndex(
        EXACT,
        f"{DISTRIBUTION} {wheel.version} matches DuckDB {duckdb_version}, but kern does not "
        "build vss HNSW indexes yet (per-dimension FLOAT[n] columns, filters applied after "
        "the index, experimental persistence in files: see kern.db.duckdb.vss)",
    )


def announce(index: VectorIndex, target: str) -> None:
    """The one log line of a Db: which vector search it uses and why."""
    log.info("kern DuckDB %s: vector search %s, because %s", target, index.name, index.reason)


__all__ = [
    "EXACT",
    "HNSW",
    "VectorIndex",
    "VssWheel",
    "announce",
    "choose_vector_index",
    "find_vss_wheel",
]
