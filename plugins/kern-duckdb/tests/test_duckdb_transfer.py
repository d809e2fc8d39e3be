"""DuckDB's import path (``kern.db.duckdb.transfer``): pages written in bulk, with what
DuckDB keeps beside the shared tables.

The conformance topic ``transfer`` holds the contract; these check DuckDB's own: a page is
a few statements of column lists whatever its size (DuckDB's ``executemany`` would run one
per row), each session's seq counter follows the imported runs, and the search term tables
and ``embedding_array`` follow imported memories and learnings as they follow upserts.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from kern.db.duckdb import DuckDb
from kern.db.duckdb.search import LearningTerms, MemoryTerms, posting_rows
from kern.db.transfer import MAX_PAGE, RecordPage
from kern.records import Embedding, Learning, Memory, Run, Session

T0 = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[DuckDb]:
    database = DuckDb(db_file=tmp_path / "kern.duckdb")
    yield database
    database.close()


def test_50000_runs_are_imported_in_bulk(db: DuckDb) -> None:
    sessions = [Session(user_id=f"u{i % 7}", created_at=T0, updated_at=T0) for i in range(5000)]
    runs = [
        Run(session_id=s.session_id, seq=seq, input=f"turn {seq}", created_at=T0)
        for s in sessions
        for seq in range(1, 11)
    ]
    db.import_records(RecordPage(kind="sessions", records=sessions))
    seen: list[tuple[str, bool]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool):
        seen.append((statement.split(None, 1)[0].upper(), many))

    pages = [runs[i : i + MAX_PAGE] for i in range(0, len(runs), MAX_PAGE)]
    event.listen(db.engine, "before_cursor_execute", record)
    try:
        start = time.perf_counter()
        for page in pages:
            assert db.import_records(RecordPage(kind="runs", records=page)) == len(page)
        seconds = time.perf_counter() - start
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    print(f"DuckDB: {len(runs):,} runs in {seconds:.2f} s ({len(runs) / seconds:,.0f} rows/s)")

    # Per page: the check of ids and seqs, the runs, the counters. Never one per row.
    assert not any(many for _, many in seen), "executemany runs one statement per row"
    assert Counter(word for word, _ in seen) == {"SELECT": len(pages), "INSERT": 2 * len(pages)}
    assert db.storage_report().counts["runs"] == len(runs)
    last = sessions[-1].session_id
    assert [r.seq for r in db.get_last_runs(last, 3)] == [8, 9, 10]  # read by seq_key
    assert db.append_run(Run(session_id=last)).seq == 11  # the counter followed


def test_a_counter_never_goes_back(db: DuckDb) -> None:
    session = Session(user_id="u")
    db.upsert_session(session, expected_version=None)
    for _ in range(5):
        db.append_run(Run(session_id=session.session_id))
    early = Run(session_id=session.session_id, seq=9)
    db.import_records(RecordPage(kind="runs", records=[early]))
    assert db.append_run(Run(session_id=session.session_id)).seq == 10
    late = Run(session_id=session.session_id, seq=7)  # below the counter: it stays at 10
    db.import_records(RecordPage(kind="runs", records=[late]))
    assert db.append_run(Run(session_id=session.session_id)).seq == 11


def postings(db: DuckDb) -> tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]]:
    """The rows of both term tables, and the rows the stored documents should give."""
    duck = db.dialect.duck
    with db.engine.connect() as conn:
        held = Counter(tuple(r) for r in conn.execute(duck.memory_terms.select()))
        held += Counter(tuple(r) for r in conn.execute(duck.learning_terms.select()))
        memories = conn.execute(db.tables.memories.select()).mappings().all()
        learnings = conn.execute(db.tables.learnings.select()).mappings().all()
    expected: Counter[tuple[Any, ...]] = Counter()
    for row in memories:
        for posting in posting_rows(MemoryTerms.postings(dict(row))):
            expected[tuple(posting[c] for c in MemoryTerms.COLUMNS)] += 1
    for row in learnings:
        for posting in posting_rows(LearningTerms.postings(dict(row))):
            expected[tuple(posting[c] for c in LearningTerms.COLUMNS)] += 1
    return held, expected


def test_term_tables_and_vectors_follow_imports(db: DuckDb) -> None:
    vector = Embedding(model="m", vector=[0.5, -1.0, 2.0])
    memory = Memory(user_id="u", content="alpine huts in winter", topics=["travel"])
    learning = Learning(kind="k", user_id="u", content={"fact": "prefers night trains"})
    db.import_records(
        RecordPage(kind="memories", records=[memory], embeddings={memory.memory_id: vector})
    )
    db.import_records(
        RecordPage(kind="learnings", records=[learning], embeddings={learning.learning_id: vector})
    )
    held, expected = postings(db)
    assert held == expected and held
    assert [h.memory for h in db.search_memories("u", "huts")] == [memory]
    assert [h.learning for h in db.search_learnings("trains")] == [learning]
    assert [h.memory for h in db.search_memories_by_vector("u", vector)] == [memory]

    # Imported again, changed and without vectors: the old words and vectors are gone.
    moved = memory.model_copy(update={"content": "city flat by the river", "user_id": "w"})
    changed = learning.model_copy(update={"content": {"fact": "prefers ferries"}})
    db.import_records(RecordPage(kind="memories", records=[moved]))
    db.import_records(RecordPage(kind="learnings", records=[changed]))
    db.import_records(RecordPage(kind="learnings", records=[changed]))
    held, expected = postings(db)
    assert held == expected
    assert db.search_memories("u", "huts") == [] and db.search_memories("w", "huts") == []
    assert [h.memory for h in db.search_memories("w", "river")] == [moved]
    assert db.search_learnings("trains") == []
    assert [h.learning for h in db.search_learnings("ferries")] == [changed]
    assert db.search_memories_by_vector("w", vector) == []  # embedding_array cleared too
    assert db.search_learnings_by_vector(vector) == []
