"""Ranked text search on SQLite with FTS5.

Each searchable table gets an external-content FTS5 table (``kern_memories_fts`` over
``content`` and ``topics``, ``kern_learnings_fts`` over the JSON ``content``) that stores
only the index, not a second copy of the text. Triggers on the base table keep it in step
with every insert, update and delete, whoever writes (``forget_user`` included); upserts use
``ON CONFLICT DO UPDATE``, which fires them (``INSERT OR REPLACE`` would not). Results are
ranked with ``bm25`` and joined back to the base table by rowid, where the ``user_id`` and
other filters apply, so another user's rows are never returned.

User text never reaches FTS5's query syntax: it is cut into word tokens, each quoted as a
string, joined with ``OR`` (bm25 ranks the rows that match more and rarer words first).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Table,
    bindparam,
    column,
    func,
    literal_column,
    select,
    table,
)

from kern.db.sql.dialect import Scored
from kern.db.sql.migrations import Migration, Plan
from kern.db.sql.prepared import Link, Prepared
from kern.db.sql.schema import Tables
from kern.db.sql.search import query_terms

#: Porter stemming over Unicode words, accents folded: "prefers" finds "preferred", "cafe"
#: finds "café".
TOKENIZE = "porter unicode61 remove_diacritics 2"


def match_expression(text: str) -> str | None:
    """``text`` as a safe FTS5 query: quoted word tokens joined by OR, or None if no words."""
    terms = query_terms(text)
    if not terms:
        return None
    return " OR ".join(f'"{term}"' for term in terms)  # \w+ tokens hold no quote to escape


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def fts_ddl(base: str, columns: Sequence[str]) -> list[str]:
    """The FTS table over ``columns`` of ``base``, its three triggers, and a first fill."""
    fts = f"{base}_fts"
    cols = ", ".join(columns)
    new = ", ".join(f"new.{c}" for c in columns)
    old = ", ".join(f"old.{c}" for c in columns)
    add = f"INSERT INTO {_q(fts)}(rowid, {cols}) VALUES (new.rowid, {new});"
    remove = f"INSERT INTO {_q(fts)}({_q(fts)}, rowid, {cols}) VALUES ('delete', old.rowid, {old});"
    return [
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {_q(fts)} USING fts5({cols}, "
        f"content='{base}', content_rowid='rowid', tokenize='{TOKENIZE}')",
        f"CREATE TRIGGER IF NOT EXISTS {_q(fts + '_ai')} AFTER INSERT ON {_q(base)} "
        f"BEGIN {add} END",
        f"CREATE TRIGGER IF NOT EXISTS {_q(fts + '_ad')} AFTER DELETE ON {_q(base)} "
        f"BEGIN {remove} END",
        f"CREATE TRIGGER IF NOT EXISTS {_q(fts + '_au')} AFTER UPDATE OF {cols} ON {_q(base)} "
        f"BEGIN {remove} {add} END",
        # Index rows written before the FTS table existed (a no-op on a new database).
        f"INSERT INTO {_q(fts)}({_q(fts)}) VALUES ('rebuild')",
    ]


def _run(statements: list[str]) -> Callable[[Connection], None]:
    def apply(conn: Connection) -> None:
        for sql in statements:
            conn.exec_driver_sql(sql)

    return apply


def fts_plan(tables: Tables) -> Plan:
    """Migrations of the two FTS tables, versioned under their own names."""
    plan: Plan = {}
    for base, columns in (
        (tables.memories, ("content", "topics")),
        (tables.learnings, ("content",)),
    ):
        ddl = fts_ddl(base.name, columns)
        plan[f"{base.name}_fts"] = [Migration(1, f"FTS5 index of {base.name}", _run(ddl))]
    return plan


class FtsIndex:
    """Ranked queries over one base table through its FTS table."""

    def __init__(self, base: Table, prepare: Callable[[Select[Any]], Prepared]) -> None:
        self.base = base
        self._prepare = prepare
        name = f"{base.name}_fts"
        fts = table(name, column("rowid"))
        self._fts_ref = literal_column(_q(name))
        self._rank = func.bm25(self._fts_ref)
        rowid = literal_column(f"{_q(base.name)}.rowid")
        self._from = fts.join(base, rowid == fts.c.rowid)
        self._cache: dict[tuple[str, ...], Prepared] = {}

    def statement(self, filters: tuple[str, ...]) -> Prepared:
        """The ranked query with ``base.<name> = :<name>`` for each name in ``filters``."""
        prepared = self._cache.get(filters)
        if prepared is None:
            where: list[ColumnElement[bool]] = [self._fts_ref.op("MATCH")(bindparam("match"))]
            where += [self.base.c[name] == bindparam(name) for name in filters]
            stmt = (
                select(*self.base.c, (-self._rank).label("_score"))
                .select_from(self._from)
                .where(*where)
                .order_by(self._rank)
                .limit(bindparam("limit"))
            )
            prepared = self._cache[filters] = self._prepare(stmt)
        return prepared

    def search(self, link: Link, text: str, filters: dict[str, Any], limit: int) -> list[Scored]:
        match = match_expression(text)
        if match is None or limit <= 0:
            return []
        given = {k: getattr(v, "value", v) for k, v in filters.items() if v is not None}
        query = self.statement(tuple(sorted(given)))
        hits: list[Scored] = []
        for row in link.all(query, {**given, "match": match, "limit": limit}):
            score = float(row.pop("_score"))
            hits.append((row, score))
        return hits
