"""How kern's tables sit in DuckDB, and the migrations that build them.

The five tables are the shared layer's (``kern.db.sql.schema``), column for column; what
differs is their indexes. DuckDB's planner reads through an ART index only for a lookup on
ONE column (``col = ?`` or ``col IN (?, ...)``) that matches few rows (fewer than
``index_scan_max_count``, 2,048 by default); it never walks an index in order and never
reads through a multi-column one. So each read path gets a single-column index that answers
it (the shared layer's multi-column ones would only slow writes down), and:

- ``kern_runs`` has one more column, ``seq_key`` = ``<session_id>/<seq>`` (unique): the last
  N runs of a session are a lookup of N keys, however long the session is;
- ``kern_run_counters`` holds each session's last ``seq``: an append reads and bumps one row
  instead of taking ``max(seq)`` over all of the session's runs;
- ``kern_memory_terms`` and ``kern_learning_terms`` are the inverted index of text search
  (``kern.db.duckdb.search``), filled on write;
- memories and learnings have one more column, ``embedding_array`` (``FLOAT[]``, migration
  ``<table>.embedding_array``), the vector as DuckDB's SQL can score it, beside the shared
  ``embedding`` BLOB (``kern.db.duckdb.vectors``). The vector columns get no index: a vector
  search's candidates are looked up through ``user_id`` (memories) or the most selective
  filter (learnings), as listings are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, func, inspect, select
from sqlalchemy.schema import CreateTable

from kern.db.duckdb.vectors import ARRAY_COLUMN, DuckVectorTables, build_vector_tables, to_arrays
from kern.db.sql.migrations import Migration, Plan, vector_migration
from kern.db.sql.schema import Tables
from kern.db.sql.vectors import KEYS
from kern.db.sql.verify import Expectations, Expected

#: Single-column indexes per logical table, one for each way the contract reads or deletes,
#: most selective first: a listing with several filters looks rows up by the first given.
READ_INDEXES: dict[str, tuple[str, ...]] = {
    # list_sessions(user_id=...) / (component_id=...); forget_user.
    "sessions": ("user_id", "component_id"),
    # forget_user; delete_session. History reads go through seq_key.
    "runs": ("user_id", "session_id"),
    # list_memories / forget_user. Search goes through kern_memory_terms.
    "memories": ("user_id",),
    # query_learnings by any of its filters but status (four values: never selective).
    "learnings": ("entity_id", "session_id", "user_id", "kind", "namespace"),
}


def seq_key(session_id: str, seq: int) -> str:
    """The run's key in ``kern_runs.seq_key``. Unambiguous: a seq holds no ``/``."""
    return f"{session_id}/{seq}"


@dataclass(frozen=True)
class DuckTables:
    """The DuckDB-only tables, the physical ``kern_runs`` (with ``seq_key``) and memories
    and learnings as stored (with ``embedding_array``)."""

    runs: Table
    counters: Table
    memory_terms: Table
    learning_terms: Table
    vectors: DuckVectorTables

    def array_migrations(self) -> dict[str, tuple[Table, str]]:
        """Migration name -> (stored table, key) of each ``embedding_array`` column."""
        memories, learnings = self.vectors.memories, self.vectors.learnings
        return {
            f"{memories.name}.{ARRAY_COLUMN}": (memories, KEYS["memories"]),
            f"{learnings.name}.{ARRAY_COLUMN}": (learnings, KEYS["learnings"]),
        }


def build_duck_tables(tables: Tables) -> DuckTables:
    p = tables.prefix
    md = MetaData(schema=tables.metadata.schema)
    runs = tables.runs.to_metadata(md)
    runs.append_column(Column("seq_key", String, nullable=False))
    counters = Table(
        f"{p}run_counters",
        md,
        Column("session_id", String, primary_key=True),
        Column("last_seq", Integer, nullable=False),
    )
    memory_terms = Table(
        f"{p}memory_terms",
        md,
        # "<term>:<user_id>": a search is a lookup of the user's own postings.
        Column("term_key", String, nullable=False),
        Column("memory_id", String, nullable=False),
        Column("user_id", String, nullable=False),
        Column("agent_id", String),
        Column("tf", Integer, nullable=False),
        Column("doc_len", Integer, nullable=False),
    )
    learning_terms = Table(
        f"{p}learning_terms",
        md,
        Column("term", String, nullable=False),
        Column("learning_id", String, nullable=False),
        Column("kind", String, nullable=False),
        Column("namespace", String, nullable=False),
        Column("user_id", String),
        Column("status", String, nullable=False),
        Column("tf", Integer, nullable=False),
        Column("doc_len", Integer, nullable=False),
    )
    vectors = build_vector_tables(tables)
    return DuckTables(runs, counters, memory_terms, learning_terms, vectors)


# -- migrations ----------------------------------------------------------------------------
Apply = Callable[[Connection], None]


def _create(table: Table, indexes: Sequence[str], unique: Sequence[str] = ()) -> Apply:
    def apply(conn: Connection) -> None:
        conn.execute(CreateTable(table, if_not_exists=True))
        quote = conn.dialect.identifier_preparer.quote
        where = conn.dialect.identifier_preparer.format_table(table)
        for column in (*unique, *indexes):
            kind = "UNIQUE INDEX" if column in unique else "INDEX"
            name = quote(f"ix_{table.name}_{column}")
            conn.exec_driver_sql(f"CREATE {kind} IF NOT EXISTS {name} ON {where} ({quote(column)})")

    return apply


def _then(*steps: Apply) -> Apply:
    def apply(conn: Connection) -> None:
        for step in steps:
            step(conn)

    return apply


def _fill_counters(tables: Tables, duck: DuckTables) -> Apply:
    """Counters for runs stored before the counter table existed (none on a new file)."""

    def apply(conn: Connection) -> None:
        r, c = tables.runs, duck.counters
        conn.execute(
            c.insert().from_select(
                ["session_id", "last_seq"],
                select(r.c.session_id, func.max(r.c.seq)).group_by(r.c.session_id),
            )
        )

    return apply


def duck_plan(tables: Tables, duck: DuckTables, reindex: dict[str, Apply] | None = None) -> Plan:
    """Every table's migrations, named as the shared layer names them, then DuckDB's own.

    ``reindex`` maps a term table's name to a step that indexes the rows already stored
    (a database written before that table existed).
    """
    reindex = reindex or {}
    plan: Plan = {}
    for logical, table in tables.by_logical_name().items():
        physical = duck.runs if logical == "runs" else table
        unique = ("seq_key",) if logical == "runs" else ()
        create = _create(physical, READ_INDEXES.get(logical, ()), unique)
        plan[table.name] = [Migration(1, f"create {table.name}", create)]
    for stored in (tables.vectors.memories, tables.vectors.learnings):
        plan[stored.name] = [*plan[stored.name], vector_migration(stored, None)]
    for name, (stored, key) in duck.array_migrations().items():
        plan[name] = [Migration(1, f"vectors of {stored.name} as FLOAT[]", to_arrays(stored, key))]
    plan[duck.counters.name] = [
        Migration(
            1,
            "per-session seq counters",
            _then(_create(duck.counters, ()), _fill_counters(tables, duck)),
        )
    ]
    for table, index in (
        (duck.memory_terms, ("term_key", "memory_id", "user_id")),
        (duck.learning_terms, ("term", "learning_id")),
    ):
        steps = [_create(table, index)]
        if table.name in reindex:
            steps.append(reindex[table.name])
        plan[table.name] = [Migration(1, f"search terms of {table.name}", _then(*steps))]
    return plan


def _index_names(table: Table, indexes: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"ix_{table.name}_{column}" for column in indexes)


def duck_expectations(
    tables: Tables, duck: DuckTables, reindex: dict[str, Apply] | None = None
) -> Expectations:
    """What ``duck_plan`` leaves, as the start-up check sees it (``kern.db.sql.verify``).

    Every step of the plan is idempotent (``IF NOT EXISTS``), so a missing table or index is
    restored by running its step again. What depends on a recreated table follows it: a
    recreated counter table is filled from the runs, a recreated term table indexes the
    stored rows again, and the term rows of a recreated (empty) memories or learnings table
    go, so that no search finds words of rows that are gone.
    """
    reindex = reindex or {}
    terms_of = {tables.memories.name: duck.memory_terms, tables.learnings.name: duck.learning_terms}
    expected: Expectations = {}

    def restore_for(
        table: Table, create: Apply, after_create: Sequence[Apply] = ()
    ) -> Callable[[Connection, frozenset[str]], None]:
        def restore(conn: Connection, missing: frozenset[str]) -> None:
            create(conn)
            if table.name in missing:
                for step in after_create:
                    step(conn)

        return restore

    # A lost table comes back as stored now: memories and learnings with their vectors.
    physical_tables = {"runs": duck.runs, "memories": duck.vectors.memories}
    physical_tables["learnings"] = duck.vectors.learnings
    for logical, table in tables.as_stored().items():
        physical = physical_tables.get(logical, table)
        unique = ("seq_key",) if logical == "runs" else ()
        indexes = READ_INDEXES.get(logical, ())
        after: list[Apply] = []
        if table.name in terms_of:
            after.append(_clear(terms_of[table.name]))
        expected[table.name] = Expected(
            (physical.name, *_index_names(physical, (*unique, *indexes))),
            restore_for(physical, _create(physical, indexes, unique), after),
        )
    for name, (stored, key) in duck.array_migrations().items():
        expected[name] = Expected((name,), _only_missing(to_arrays(stored, key)))
    expected[duck.counters.name] = Expected(
        (duck.counters.name,),
        restore_for(duck.counters, _create(duck.counters, ()), [_fill_counters(tables, duck)]),
    )
    for table, index in (
        (duck.memory_terms, ("term_key", "memory_id", "user_id")),
        (duck.learning_terms, ("term", "learning_id")),
    ):
        after = [reindex[table.name]] if table.name in reindex else []
        expected[table.name] = Expected(
            (table.name, *_index_names(table, index)),
            restore_for(table, _create(table, index), after),
        )
    return expected


def _clear(table: Table) -> Apply:
    """Empty ``table`` if it exists (if not, its own restore creates it)."""

    def apply(conn: Connection) -> None:
        if inspect(conn).has_table(table.name, schema=table.schema):
            conn.execute(table.delete())

    return apply


def _only_missing(step: Apply) -> Callable[[Connection, frozenset[str]], None]:
    """A restore that runs ``step`` (idempotent) whatever is missing."""

    def restore(conn: Connection, missing: frozenset[str]) -> None:
        step(conn)

    return restore
