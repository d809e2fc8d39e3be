"""``import_records`` on DuckDB: the shared transfer (``kern.db.sql.transfer``), written in
bulk with what DuckDB keeps beside the shared tables.

Exports are the shared ones (the ``embedding`` BLOB is kept beside ``embedding_array``).
Each page of an import is a few statements of column lists (``kern.db.duckdb.bulk``), in
the import's one transaction:

- the upsert of the page's rows, runs with their ``seq_key`` and vectors with their
  ``embedding_array``;
- runs: each session's counter raised to the highest seq imported
  (``greatest(last_seq, excluded.last_seq)``), so the next ``append_run`` continues after it;
- memories and learnings: the page's rows' old postings deleted and the new ones inserted
  (``kern.db.duckdb.search``), so a search finds an imported row as a written one.

Runs are checked before anything is written by the shared statement of arrays
(``SqlTransfer.stored_runs``): two hash semi-joins, about 10 ms per 1,000 runs against
200,000 stored, where lists of placeholders read through the indexes
(``kern.db.duckdb.lookup``) took 8 to 20 ms for each of the two keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Dialect, Table, text

from kern.db.duckdb.bulk import ColumnInsert
from kern.db.duckdb.dialect import DuckDialect
from kern.db.duckdb.schema import seq_key
from kern.db.duckdb.search import LearningTerms, MemoryTerms, posting_rows
from kern.db.duckdb.vectors import vector_values
from kern.db.sql.prepared import Link, Prepared
from kern.db.sql.schema import Tables
from kern.db.sql.transfer import SqlTransfer
from kern.db.transfer import ID_FIELDS, RecordKind, TransferRecord
from kern.records import Embedding, Run


def _drop_postings(terms: Table, id_column: str, sql_dialect: Dialect) -> Prepared:
    """``DELETE`` the postings of the documents listed in ``:ids``."""
    quote = sql_dialect.identifier_preparer
    return Prepared(
        text(
            f"DELETE FROM {quote.format_table(terms)} WHERE {quote.quote(id_column)} IN "
            "(SELECT unnest(CAST(:ids AS VARCHAR[])))"
        ),
        sql_dialect,
    )


class DuckTransfer(SqlTransfer):
    """``SqlTransfer`` writing through DuckDB's column-list statements."""

    dialect: DuckDialect

    def __init__(self, tables: Tables, dialect: DuckDialect, sql_dialect: Dialect) -> None:
        super().__init__(tables, dialect, sql_dialect)
        duck = dialect.duck
        targets: dict[RecordKind, Table] = {
            "sessions": tables.sessions,
            "runs": duck.runs,
            "memories": duck.vectors.memories,
            "learnings": duck.vectors.learnings,
        }
        self._upserts = {
            kind: ColumnInsert(table, sql_dialect, conflict=ID_FIELDS[kind])
            for kind, table in targets.items()
        }
        counters = duck.counters
        self._counters = ColumnInsert(
            counters,
            sql_dialect,
            conflict="session_id",
            update={"last_seq": "greatest(last_seq, excluded.last_seq)"},
        )
        self._postings = {
            "memories": (
                _drop_postings(duck.memory_terms, "memory_id", sql_dialect),
                ColumnInsert(duck.memory_terms, sql_dialect),
            ),
            "learnings": (
                _drop_postings(duck.learning_terms, "learning_id", sql_dialect),
                ColumnInsert(duck.learning_terms, sql_dialect),
            ),
        }

    def row(
        self, kind: RecordKind, record: TransferRecord, embeddings: Mapping[str, Embedding]
    ) -> dict[str, Any]:
        row = super().row(kind, record, embeddings)
        if isinstance(record, Run):
            assert record.seq is not None  # checked at the door
            row["seq_key"] = seq_key(record.session_id, record.seq)
        return row

    def vector_values(self, embedding: Embedding | None) -> dict[str, Any]:
        return vector_values(embedding)

    def write(self, link: Link, kind: RecordKind, rows: list[dict[str, Any]]) -> None:
        self._upserts[kind].run(link, rows)
        if kind == "runs":
            last: dict[str, int] = {}
            for row in rows:
                last[row["session_id"]] = max(last.get(row["session_id"], 0), row["seq"])
            self._counters.run(
                link, [{"session_id": sid, "last_seq": seq} for sid, seq in last.items()]
            )
        elif kind in ("memories", "learnings"):
            drop, insert = self._postings[kind]
            link.execute(drop, {"ids": [row[ID_FIELDS[kind]] for row in rows]})
            postings = MemoryTerms.postings if kind == "memories" else LearningTerms.postings
            insert.run(link, [posting for row in rows for posting in posting_rows(postings(row))])


__all__ = ["DuckTransfer"]
