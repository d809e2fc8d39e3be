"""Ranked full-text search on Postgres: a generated ``tsvector`` column, a GIN index, ts_rank.

Each searchable table gets a stored generated column ``search_vector`` (memories: the
``content`` text, weighted A, and the ``topics`` strings, weighted B; learnings: every string
and number inside the JSON ``content``, nested ones included, keys left out) and a GIN index
on it. Postgres keeps the column in step with every insert, update and delete, whoever
writes, so nothing in kern maintains it.

A query is ``search_vector @@ q`` with the other filters (``user_id``...) in the same WHERE,
ordered by ``ts_rank`` and cut by ``LIMIT``. User text never reaches tsquery syntax as
syntax: it is cut into word tokens (``kern.db.sql.search.query_terms``) which are joined with
``or`` and handed to ``websearch_to_tsquery``, which never raises on any input. OR, not AND:
"Which mountains do I go hiking in?" must find "I love hiking in the Alps"; ts_rank puts
rows that match more of the words first.

Memory search, the one every recall runs, is always for one user. Two things keep it to
that user's rows (schema version 2 of ``kern_memories_search``):

- The user key. Each memory's vector also holds one lexeme naming its user,
  ``'kern user <hex of hashtextextended(user_id, 0)>'`` (with spaces, so no word of any
  text ever becomes it; a 64-bit hash, as md5 is refused by servers in FIPS mode),
  and the search matches ``key & (words)``: the GIN index intersects the user's postings
  with the words' and hands over only that user's matches, instead of every user's rows
  that hold a common word. The matching runs first, in a subquery the planner keeps, so
  that it never adds a bitmap of the user's whole ``user_id`` index range to it (it
  would, without statistics, and that costs as much as the user has memories). The
  ``user_id`` filter still applies to what comes out, so correctness never rests on the
  key; ranking uses the words alone, so scores are what they were.
- ``fastupdate = off`` on the GIN indexes. With fast update, new entries wait in a
  pending list that every search reads in full until VACUUM (or 4 MB of them) merges it;
  when autovacuum is off or behind, that list, not the index, is the cost of a search.
  Agents write a memory far less often than they search, so each insert updates the
  index itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Select,
    String,
    Table,
    Text,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import TSQUERY, TSVECTOR

from kern.db.sql.dialect import Scored
from kern.db.sql.migrations import Migration, Plan
from kern.db.sql.prepared import Link, Prepared
from kern.db.sql.search import query_terms
from kern.db.sql.verify import Expectations, Expected

#: The text search configuration: English stemming ("prefers" finds "preferred").
CONFIG = "english"
#: The generated column that holds each row's search document.
COLUMN = "search_vector"
#: The user key lexeme is this, then a hash of the user_id (see the module docstring).
USER_KEY_PREFIX = "kern user "

_CFG = f"'{CONFIG}'::regconfig"


def tsquery_text(text: str) -> str | None:
    """``text`` as ``websearch_to_tsquery`` input: its word tokens joined by ``or``.

    The tokens are ``\\w+`` runs, so they hold no quote or ``-`` that websearch syntax would
    read; the word "or" itself is dropped (it is the operator, and a stop word anyway).
    None when there is no word to search for.
    """
    terms = [term for term in query_terms(text) if term != "or"]
    return " or ".join(terms) if terms else None


#: The search documents, as generation expressions over the row's own columns.
MEMORY_DOCUMENT = (
    f"setweight(to_tsvector({_CFG}, content), 'A') || "
    f"setweight(jsonb_to_tsvector({_CFG}, topics, '[\"string\"]'), 'B')"
)
#: Version 2: the same words, and the user key (one lexeme without position).
KEYED_MEMORY_DOCUMENT = (
    f"{MEMORY_DOCUMENT} || array_to_tsvector(ARRAY['{USER_KEY_PREFIX}' || "
    "to_hex(hashtextextended(user_id, 0))])"
)
LEARNING_DOCUMENT = f'jsonb_to_tsvector({_CFG}, content, \'["string", "numeric"]\')'
#: Sessions (``search_sessions``): the name, weighted A, the rolling summary, weighted B, and
#: the user key of the memories' document (a session search is always for one user).
SESSION_DOCUMENT = (
    f"setweight(to_tsvector({_CFG}, coalesce(name, '')), 'A') || "
    f"setweight(to_tsvector({_CFG}, coalesce(summary, '')), 'B') || "
    f"array_to_tsvector(ARRAY['{USER_KEY_PREFIX}' || "
    "to_hex(hashtextextended(coalesce(user_id, ''), 0))])"
)


def _ddl(document: str, qualified: str, index: str) -> list[str]:
    """Version 1: the search column and its GIN index (with fast update, the default)."""
    return [
        f"ALTER TABLE {qualified} ADD COLUMN IF NOT EXISTS {COLUMN} tsvector "
        f"GENERATED ALWAYS AS ({document}) STORED",
        f"CREATE INDEX IF NOT EXISTS {index} ON {qualified} USING gin ({COLUMN})",
    ]


def _keyed_ddl(qualified: str, index: str) -> list[str]:
    """Memories, version 2: the column again, with the user key, and an index without
    fast update. A generation expression cannot be altered (before Postgres 17), so the
    column is dropped (its index with it) and added back: one rewrite of the table."""
    return [
        f"ALTER TABLE {qualified} DROP COLUMN IF EXISTS {COLUMN}",
        f"ALTER TABLE {qualified} ADD COLUMN {COLUMN} tsvector "
        f"GENERATED ALWAYS AS ({KEYED_MEMORY_DOCUMENT}) STORED",
        f"CREATE INDEX {index} ON {qualified} USING gin ({COLUMN}) WITH (fastupdate = off)",
    ]


def _no_fast_update_ddl(index: str) -> list[str]:
    """Learnings, version 2: stop using the pending list, and merge what it holds.
    ``index`` is the schema-qualified, quoted name."""
    return [
        f"ALTER INDEX {index} SET (fastupdate = off)",
        f"SELECT gin_clean_pending_list('{index}'::regclass)",
    ]


def _run(statements: list[str]) -> Callable[[Connection], None]:
    def apply(conn: Connection) -> None:
        for sql in statements:
            conn.exec_driver_sql(sql)

    return apply


def _names(table: Table, dialect: Dialect) -> tuple[str, str, str]:
    """The table's qualified name, its search index's name, and that name qualified."""
    quote = dialect.identifier_preparer
    index = quote.quote(f"ix_{table.name}_search")
    schema = f"{quote.quote_schema(table.schema)}." if table.schema else ""
    return quote.format_table(table), index, schema + index


def search_plan(memories: Table, learnings: Table, dialect: Dialect) -> Plan:
    """Migrations of the two search columns and their GIN indexes, under their own names."""
    table, index, _ = _names(memories, dialect)
    memory_steps = [
        Migration(
            1,
            f"tsvector column and GIN index of {memories.name}",
            _run(_ddl(MEMORY_DOCUMENT, table, index)),
        ),
        Migration(
            2,
            f"user key in the tsvector of {memories.name}, GIN without fast update",
            _run(_keyed_ddl(table, index)),
        ),
    ]
    table, index, qualified_index = _names(learnings, dialect)
    learning_steps = [
        Migration(
            1,
            f"tsvector column and GIN index of {learnings.name}",
            _run(_ddl(LEARNING_DOCUMENT, table, index)),
        ),
        Migration(
            2,
            f"GIN index of {learnings.name} without fast update",
            _run(_no_fast_update_ddl(qualified_index)),
        ),
    ]
    return {f"{memories.name}_search": memory_steps, f"{learnings.name}_search": learning_steps}


def session_search_plan(sessions: Table, dialect: Dialect) -> Plan:
    """The sessions' search column and GIN index (a database made before them gets them:
    Postgres computes the column for every stored session)."""
    table, index, _ = _names(sessions, dialect)
    ddl = [
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {COLUMN} tsvector "
        f"GENERATED ALWAYS AS ({SESSION_DOCUMENT}) STORED",
        f"CREATE INDEX IF NOT EXISTS {index} ON {table} USING gin ({COLUMN}) "
        "WITH (fastupdate = off)",
    ]
    step = Migration(1, f"tsvector column and GIN index of {sessions.name}", _run(ddl))
    return {f"{sessions.name}_search": [step]}


def session_search_expectations(sessions: Table, dialect: Dialect) -> Expectations:
    """The sessions' search column and index as the start-up check sees them."""
    (migration,) = session_search_plan(sessions, dialect)[f"{sessions.name}_search"]
    objects = (f"{sessions.name}.{COLUMN}", f"ix_{sessions.name}_search")

    def restore(conn: Connection, missing: frozenset[str]) -> None:
        migration.apply(conn)

    return {f"{sessions.name}_search": Expected(objects, restore)}


def search_expectations(memories: Table, learnings: Table, dialect: Dialect) -> Expectations:
    """The search columns and their GIN indexes as the start-up check sees them: a column
    dropped by hand is added back (Postgres computes it for every row), an index created
    again, both as the latest migration leaves them."""

    def expected(table: Table, document: str) -> Expected:
        qualified, index, _ = _names(table, dialect)
        ddl = [
            f"ALTER TABLE {qualified} ADD COLUMN IF NOT EXISTS {COLUMN} tsvector "
            f"GENERATED ALWAYS AS ({document}) STORED",
            f"CREATE INDEX IF NOT EXISTS {index} ON {qualified} USING gin ({COLUMN}) "
            "WITH (fastupdate = off)",
        ]
        objects = (f"{table.name}.{COLUMN}", f"ix_{table.name}_search")

        def restore(conn: Connection, missing: frozenset[str]) -> None:
            _run(ddl)(conn)

        return Expected(objects, restore)

    return {
        f"{memories.name}_search": expected(memories, KEYED_MEMORY_DOCUMENT),
        f"{learnings.name}_search": expected(learnings, LEARNING_DOCUMENT),
    }


class TextSearch:
    """Ranked queries over one table's ``search_vector``, one prepared statement per filter set.

    ``keyed``: the vector holds the user key (memories), so a search with a ``user_id``
    filter matches inside the user's own postings first (see the module docstring).
    """

    def __init__(
        self,
        table: Table,
        dialect: Dialect,
        prepare: Callable[[Select[Any]], Prepared],
        *,
        keyed: bool = False,
    ) -> None:
        self.table = table
        self._prepare = prepare
        self._keyed = keyed
        name = dialect.identifier_preparer.quote(table.name)
        self._vector = literal_column(f"{name}.{COLUMN}", TSVECTOR)
        self._query = func.websearch_to_tsquery(
            literal_column(_CFG), bindparam("query", type_=Text)
        )
        self._cache: dict[tuple[str, ...], Prepared] = {}

    def _user_key(self) -> ColumnElement[Any]:
        """The tsquery of the user key of ``:user_id``: the lexeme of KEYED_MEMORY_DOCUMENT,
        computed the same way, quoted and cast."""
        user_hash = func.hashtextextended(bindparam("user_id", type_=String), literal_column("0"))
        lexeme = literal(f"'{USER_KEY_PREFIX}", String) + func.to_hex(user_hash)
        return cast(lexeme + literal("'", String), TSQUERY)

    def _filtered(self, filters: Sequence[str]) -> Select[Any]:
        """Every filter in one WHERE with the match: the planner picks the indexes."""
        rank = func.ts_rank(self._vector, self._query)
        return (
            select(*self.table.c, rank.label("_score"))
            .where(self._vector.op("@@")(self._query))
            .where(*(self.table.c[name] == bindparam(name) for name in filters))
            .order_by(rank.desc(), self.table.c.updated_at.desc())
        )

    def _keyed_first(self, filters: Sequence[str]) -> Select[Any]:
        """Match ``key & words`` first, then filter and rank what matched.

        ``OFFSET 0`` makes the match a subquery the planner keeps as it is: it neither
        merges it into the outer query nor pushes the ``user_id`` filter down into it, so
        the GIN index alone finds the rows (a ``MATERIALIZED`` CTE would do the same, but
        the statement would no longer start with SELECT).
        """
        rank = func.ts_rank(self._vector, self._query)
        matched = self._vector.op("@@")(self._user_key().op("&&")(self._query))
        hits = (
            select(*self.table.c, rank.label("_score"))
            .where(matched)
            .offset(literal_column("0"))
            .subquery("hits")
        )
        columns = [hits.c[c.name] for c in self.table.c]
        return (
            select(*columns, hits.c._score)
            .where(*(hits.c[name] == bindparam(name) for name in filters))
            .order_by(hits.c._score.desc(), hits.c.updated_at.desc())
        )

    def statement(self, filters: tuple[str, ...]) -> Prepared:
        """The ranked query with ``table.<name> = :<name>`` for each name in ``filters``."""
        prepared = self._cache.get(filters)
        if prepared is None:
            keyed = self._keyed and "user_id" in filters
            stmt = self._keyed_first(filters) if keyed else self._filtered(filters)
            prepared = self._cache[filters] = self._prepare(stmt.limit(bindparam("limit")))
        return prepared

    def search(self, link: Link, text: str, filters: dict[str, Any], limit: int) -> list[Scored]:
        query = tsquery_text(text)
        if query is None or limit <= 0:
            return []
        given = {k: getattr(v, "value", v) for k, v in filters.items() if v is not None}
        statement = self.statement(tuple(sorted(given)))
        hits: list[Scored] = []
        for row in link.all(statement, {**given, "query": query, "limit": limit}):
            score = float(row.pop("_score"))
            hits.append((row, score))
        return hits
