"""DuckDB's optional features as ``storage_report`` lists them (``kern doctor``).

kern needs neither of DuckDB's own search extensions: text search runs on its term tables
(``kern.db.duckdb.search``: ``fts`` is downloaded at run time and rebuilt by hand) and
vector search is exact, in SQL (``kern.db.duckdb.vectors``); the ``vss`` HNSW index is not
used yet (``kern.db.duckdb.vss`` says why). The report says so, with each extension's
state as ``duckdb_extensions()`` lists it (a read: nothing is installed or loaded).
"""

from __future__ import annotations

from sqlalchemy import Connection

import duckdb
from kern.db.duckdb.vss import DISTRIBUTION, VectorIndex, VssWheel
from kern.db.report import Capability


def extension_states(conn: Connection) -> dict[str, str]:
    """``"fts"`` / ``"vss"`` -> "loaded", "installed, not loaded" or "not installed"."""
    rows = conn.exec_driver_sql(
        "SELECT extension_name, installed, loaded FROM duckdb_extensions() "
        "WHERE extension_name IN ('fts', 'vss')"
    )
    states = {"fts": "not installed", "vss": "not installed"}
    for name, installed, loaded in rows:
        states[str(name)] = (
            "loaded" if loaded else "installed, not loaded" if installed else "not installed"
        )
    return states


def capabilities(
    conn: Connection, vector_index: VectorIndex, wheel: VssWheel | None
) -> list[Capability]:
    """Text search, exact vector search, and the vss index (``vector_index``: the Db's)."""
    states = extension_states(conn)
    version = duckdb.__version__
    matching = wheel is not None and version in wheel.files
    return [
        Capability(
            "full-text search",
            True,
            "kern's own term tables, kept in step on every write (DuckDB's fts extension, "
            f"{states['fts']} here, is not needed)",
        ),
        Capability(
            "vector search",
            True,
            "exact, scored in SQL by list_cosine_similarity over each search's candidates",
        ),
        Capability(
            "vss HNSW index",
            False,
            f"{vector_index.reason} (extension vss: {states['vss']})",
            None
            if matching
            else f"pip install {DISTRIBUTION} built for DuckDB {version} (kern never "
            "downloads extensions); kern does not build vss indexes yet either way",
        ),
    ]


__all__ = ["capabilities", "extension_states"]
