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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    Connection,
    Dialect,
    Select,
    Table,
    Text,
    bindparam,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import TSVECTOR

from kern.db.sql.dialect import Scored
from kern.db.sql.migrations import Migration, Plan
from kern.db.sql.prepared import Link, Prepared
from kern.db.sql.search import query_terms

#: The text search configuration: English stemming ("prefers" finds "preferred").
CONFIG = "english"
#: The generated column that holds each row's search document.
COLUMN = "search_vector"

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
LEARNING_DOCUMENT = f'jsonb_to_tsvector({_CFG}, content, \'["string", "numeric"]\')'


def _ddl(document: str, qualified: str, index: str) -> list[str]:
    return [
        f"ALTER TABLE {qualified} ADD COLUMN IF NOT EXISTS {COLUMN} tsvector "
        f"GENERATED ALWAYS AS ({document}) STORED",
        f"CREATE INDEX IF NOT EXISTS {index} ON {qualified} USING gin ({COLUMN})",
    ]


def _run(statements: list[str]) -> Callable[[Connection], None]:
    def apply(conn: Connection) -> None:
        for sql in statements:
            conn.exec_driver_sql(sql)

    return apply


def search_plan(memories: Table, learnings: Table, dialect: Dialect) -> Plan:
    """Migrations of the two search columns and their GIN indexes, under their own names."""
    quote = dialect.identifier_preparer
    plan: Plan = {}
    for table, document in ((memories, MEMORY_DOCUMENT), (learnings, LEARNING_DOCUMENT)):
        qualified = quote.format_table(table)
        index = quote.quote(f"ix_{table.name}_search")
        ddl = _ddl(document, qualified, index)
        plan[f"{table.name}_search"] = [
            Migration(1, f"tsvector column and GIN index of {table.name}", _run(ddl))
        ]
    return plan


class TextSearch:
    """Ranked queries over one table's ``search_vector``, one prepared statement per filter set."""

    def __init__(
        self, table: Table, dialect: Dialect, prepare: Callable[[Select[Any]], Prepared]
    ) -> None:
        self.table = table
        self._prepare = prepare
        name = dialect.identifier_preparer.quote(table.name)
        self._vector = literal_column(f"{name}.{COLUMN}", TSVECTOR)
        self._query = func.websearch_to_tsquery(
            literal_column(_CFG), bindparam("query", type_=Text)
        )
        self._cache: dict[tuple[str, ...], Prepared] = {}

    def statement(self, filters: tuple[str, ...]) -> Prepared:
        """The ranked query with ``table.<name> = :<name>`` for each name in ``filters``."""
        prepared = self._cache.get(filters)
        if prepared is None:
            rank = func.ts_rank(self._vector, self._query)
            stmt = (
                select(*self.table.c, rank.label("_score"))
                .where(self._vector.op("@@")(self._query))
                .where(*(self.table.c[name] == bindparam(name) for name in filters))
                .order_by(rank.desc(), self.table.c.updated_at.desc())
                .limit(bindparam("limit"))
            )
            prepared = self._cache[filters] = self._prepare(stmt)
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
