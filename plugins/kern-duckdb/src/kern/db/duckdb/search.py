"""Ranked text search without DuckDB's ``fts`` extension: term tables kept in step on write.

``fts`` is installed by downloading it at run time, which kern cannot count on, and its
index is rebuilt by hand (``PRAGMA create_fts_index``) instead of following writes. So kern
keeps an inverted index of its own. Every memory or learning write replaces that
document's rows in a term table, inside the same transaction: one row per distinct term
(``kern.db.duckdb.terms``) with the document id, the columns searches filter on, the term's
count and the document's length. Deletes and ``forget_user`` remove them. A search

1. looks its terms up through the term table's ART index (``term IN (...)``; for memories
   the key is ``<term>:<user_id>``, so only that user's postings are read),
2. scores the candidates (every document holding a query term) with BM25 (k1 1.2,
   b 0.75), document frequencies and mean length taken over the candidates,
3. reads the best ``limit`` documents by primary key.

No document text is read, and no row of another user is ever a candidate. A term held by
more than 2,048 postings (DuckDB's ``index_scan_max_count``) makes DuckDB scan the term
table for that query rather than probe the index: still only the term table.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import BindParameter, ClauseElement, Connection, Table, bindparam, or_, select, text

from kern.db.duckdb.lookup import InLookup
from kern.db.duckdb.terms import document_terms, json_texts, search_terms
from kern.db.sql.dialect import Scored
from kern.db.sql.prepared import Link, Prepared
from kern.db.sql.schema import Tables
from kern.records import Learning, Memory

K1, B = 1.2, 0.75

Prepare = Callable[[ClauseElement], Prepared]


def bm25(postings: Iterable[tuple[str, str, int, int]]) -> dict[str, float]:
    """Scores of the documents in ``(doc_id, term, tf, doc_len)`` postings."""
    tfs: dict[str, dict[str, int]] = defaultdict(dict)
    lengths: dict[str, int] = {}
    for doc, term, tf, length in postings:
        tfs[doc][term] = tf
        lengths[doc] = length
    if not tfs:
        return {}
    n = len(tfs)
    df: dict[str, int] = defaultdict(int)
    for terms in tfs.values():
        for term in terms:
            df[term] += 1
    idf = {term: math.log(1 + (n - count + 0.5) / (count + 0.5)) for term, count in df.items()}
    mean = sum(lengths.values()) / n or 1.0
    scores = {}
    for doc, terms in tfs.items():
        norm = K1 * (1 - B + B * lengths[doc] / mean)
        scores[doc] = sum(idf[t] * tf * (K1 + 1) / (tf + norm) for t, tf in terms.items())
    return scores


def _best(scores: dict[str, float], lengths: dict[str, int], limit: int) -> list[str]:
    """The ``limit`` best ids: highest score, then the shorter document, then by id."""
    return sorted(scores, key=lambda doc: (-scores[doc], lengths[doc], doc))[:limit]


def _insert_postings(table: Table, columns: tuple[str, ...]) -> ClauseElement:
    """One INSERT of a document's postings, the per-term values given as lists."""
    per_term = {"term_key": "VARCHAR", "term": "VARCHAR", "tf": "INTEGER"}
    quote = '"{}"'.format
    names = ", ".join(quote(c) for c in columns)
    values = ", ".join(
        f"unnest(CAST(:{c} AS {per_term[c]}[]))" if c in per_term else f":{c}" for c in columns
    )
    return text(f"INSERT INTO {quote(table.name)} ({names}) SELECT {values}")


class MemoryTerms:
    """The term table of ``kern_memories``: postings keyed ``<term>:<user_id>``."""

    COLUMNS = ("term_key", "memory_id", "user_id", "agent_id", "tf", "doc_len")

    def __init__(self, prepare: Prepare, memories: Table, terms: Table) -> None:
        self.table = terms
        self._drop = prepare(terms.delete().where(terms.c.memory_id == bindparam("id")))
        self._forget = prepare(terms.delete().where(terms.c.user_id == bindparam("user_id")))
        self._insert = prepare(_insert_postings(terms, self.COLUMNS))
        self._postings = InLookup(
            prepare, terms, "term_key", ("memory_id", "term_key", "tf", "doc_len")
        )
        self._documents = InLookup(prepare, memories, "memory_id")

    @staticmethod
    def postings(memory: Memory | dict[str, Any]) -> dict[str, Any]:
        """A memory's postings as the insert's parameters (lists per term)."""
        row = memory if isinstance(memory, dict) else memory.model_dump()
        counts, length = document_terms([row["content"], *row["topics"]])
        user = row["user_id"]
        return {
            "term_key": [f"{term}:{user}" for term in counts],
            "memory_id": row["memory_id"],
            "user_id": user,
            "agent_id": row["agent_id"],
            "tf": list(counts.values()),
            "doc_len": length,
        }

    def index(self, link: Link, memory: Memory) -> None:
        link.execute(self._drop, {"id": memory.memory_id})
        link.execute(self._insert, self.postings(memory))

    def drop(self, link: Link, memory_id: str) -> None:
        link.execute(self._drop, {"id": memory_id})

    def forget(self, link: Link, user_id: str) -> None:
        link.execute(self._forget, {"user_id": user_id})

    def search(
        self, link: Link, *, user_id: str, query: str, agent_id: str | None, limit: int
    ) -> list[Scored]:
        terms = search_terms(query)
        if not terms or limit <= 0:
            return []
        filters = {} if agent_id is None else {"agent_id": agent_id}
        keys = [f"{term}:{user_id}" for term in terms]
        rows = self._postings.rows(link, keys, filters)
        postings = [
            (r["memory_id"], r["term_key"].split(":", 1)[0], r["tf"], r["doc_len"]) for r in rows
        ]
        return _ranked(self._documents, link, postings, "memory_id", limit)

    def reindex(self, conn: Connection, memories: Table) -> None:
        """Index every stored memory (a migration: the rows written before this table)."""
        # Fetched first: a DuckDB connection runs one statement at a time.
        for row in conn.execute(select(memories)).mappings().all():
            _insert_rows(conn, self.table, self.postings(dict(row)))


class LearningTerms:
    """The term table of ``kern_learnings``, with the columns searches filter on."""

    COLUMNS = ("term", "learning_id", "kind", "namespace", "user_id", "status", "tf", "doc_len")
    FILTERS = ("kind", "namespace", "user_id", "status")

    def __init__(self, prepare: Prepare, tables: Tables, terms: Table) -> None:
        self.table = terms
        lt, s = tables.learnings, tables.sessions
        uid: BindParameter[str] = bindparam("user_id")
        self._drop = prepare(terms.delete().where(terms.c.learning_id == bindparam("id")))
        users_learnings = select(lt.c.learning_id).where(
            or_(
                lt.c.user_id == uid,
                lt.c.session_id.in_(select(s.c.session_id).where(s.c.user_id == uid)),
            )
        )
        self._forget = prepare(terms.delete().where(terms.c.learning_id.in_(users_learnings)))
        self._insert = prepare(_insert_postings(terms, self.COLUMNS))
        self._postings = InLookup(prepare, terms, "term", ("learning_id", "term", "tf", "doc_len"))
        self._documents = InLookup(prepare, lt, "learning_id")

    @staticmethod
    def postings(learning: Learning | dict[str, Any]) -> dict[str, Any]:
        row = learning if isinstance(learning, dict) else learning.model_dump(mode="json")
        counts, length = document_terms(json_texts(row["content"]))
        return {
            "term": list(counts),
            "learning_id": row["learning_id"],
            "kind": row["kind"],
            "namespace": row["namespace"],
            "user_id": row["user_id"],
            "status": str(row["status"]),
            "tf": list(counts.values()),
            "doc_len": length,
        }

    def index(self, link: Link, learning: Learning) -> None:
        link.execute(self._drop, {"id": learning.learning_id})
        link.execute(self._insert, self.postings(learning))

    def drop(self, link: Link, learning_id: str) -> None:
        link.execute(self._drop, {"id": learning_id})

    def forget(self, link: Link, user_id: str) -> None:
        """Before the learnings themselves: those of the user and of the user's sessions."""
        link.execute(self._forget, {"user_id": user_id})

    def search(
        self, link: Link, *, query: str, filters: dict[str, Any], limit: int
    ) -> list[Scored]:
        terms = search_terms(query)
        if not terms or limit <= 0:
            return []
        given = {k: getattr(v, "value", v) for k, v in filters.items() if v is not None}
        rows = self._postings.rows(link, terms, given)
        postings = [(r["learning_id"], r["term"], r["tf"], r["doc_len"]) for r in rows]
        return _ranked(self._documents, link, postings, "learning_id", limit)

    def reindex(self, conn: Connection, learnings: Table) -> None:
        for row in conn.execute(select(learnings)).mappings().all():
            _insert_rows(conn, self.table, self.postings(dict(row)))


def _ranked(
    documents: InLookup,
    link: Link,
    postings: list[tuple[str, str, int, int]],
    id_column: str,
    limit: int,
) -> list[Scored]:
    scores = bm25(postings)
    lengths = {doc: length for doc, _, _, length in postings}
    best = _best(scores, lengths, limit)
    by_id = {row[id_column]: row for row in documents.rows(link, best)} if best else {}
    # A document deleted between the two reads (autocommit) is simply left out.
    return [(by_id[doc], scores[doc]) for doc in best if doc in by_id]


def posting_rows(postings: dict[str, Any]) -> list[dict[str, Any]]:
    """A document's postings (``postings()``: lists per term) as one row per term."""
    per_term = ("term_key", "term", "tf")
    lists = {k: v for k, v in postings.items() if k in per_term}
    fixed = {k: v for k, v in postings.items() if k not in per_term}
    return [{**fixed, **{k: v[i] for k, v in lists.items()}} for i in range(len(postings["tf"]))]


def _insert_rows(conn: Connection, table: Table, postings: dict[str, Any]) -> None:
    rows = posting_rows(postings)
    if rows:
        conn.execute(table.insert(), rows)
