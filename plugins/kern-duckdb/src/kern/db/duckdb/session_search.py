"""``search_sessions`` on DuckDB: the user's sessions that hold a query term, ranked by BM25.

Sessions get no term table of their own (the memories' and learnings' are kept in step by
every write of those records; a session is rewritten on every turn that changes its state,
and the term rows would be rewritten with it). Instead one statement reads, through the
``(user_id, updated_at)`` index, the newest ``CANDIDATES`` sessions of the user whose name
or summary, lowercased and without accents, contains a query term's stem; those are ranked
here with the terms (``kern.db.duckdb.terms``) and BM25 of memory search, and the ones that
hold no whole term (a stem inside another word) are left out. Another user's sessions are
never read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ClauseElement, ColumnElement, Table, bindparam, func, or_, select

from kern.db.duckdb.search import bm25
from kern.db.duckdb.terms import document_terms, search_terms
from kern.db.sql.dialect import Scored
from kern.db.sql.prepared import Link, Prepared

#: The newest matching sessions of the user that are read and ranked.
CANDIDATES = 500


def _pattern(term: str) -> str:
    """What the stored text must contain for ``term``: its stem, without a final ``y``
    (``city`` is the stem of ``cities``, whose text holds ``cit``)."""
    stem = term[:-1] if term.endswith("y") and len(term) > 3 else term
    return stem.replace("/", "//").replace("%", "/%").replace("_", "/_")  # LIKE, escape "/"


class SessionSearch:
    """The ``Searcher`` of sessions (``SqlDialect.session_search``)."""

    def __init__(self, sessions: Table, prepare: Callable[[ClauseElement], Prepared]) -> None:
        self.table = sessions
        self._prepare = prepare
        self._cache: dict[int, Prepared] = {}

    def statement(self, count: int) -> Prepared:
        """The candidates' read for ``count`` terms (one prepared statement per count)."""
        prepared = self._cache.get(count)
        if prepared is None:
            t = self.table
            text: ColumnElement[Any] = func.strip_accents(
                func.lower(func.coalesce(t.c.name, "") + " " + func.coalesce(t.c.summary, ""))
            )
            contains = [text.contains(bindparam(f"t{i}"), escape="/") for i in range(count)]
            stmt = (
                select(t)
                .where(t.c.user_id == bindparam("user_id"), or_(*contains))
                .order_by(t.c.updated_at.desc())
                .limit(CANDIDATES)
            )
            prepared = self._cache[count] = self._prepare(stmt)
        return prepared

    def search(self, link: Link, text: str, filters: dict[str, Any], limit: int) -> list[Scored]:
        terms = search_terms(text)
        user_id = filters.get("user_id")
        if not terms or limit <= 0 or user_id is None:
            return []
        params = {f"t{i}": _pattern(term) for i, term in enumerate(terms)}
        rows = link.all(self.statement(len(terms)), {"user_id": user_id, **params})
        wanted = set(terms)
        by_id: dict[str, dict[str, Any]] = {}
        postings: list[tuple[str, str, int, int]] = []
        for row in rows:
            counts, length = document_terms([row["name"] or "", row["summary"] or ""])
            found = wanted & counts.keys()
            if found:
                by_id[row["session_id"]] = row
                postings += [(row["session_id"], term, counts[term], length) for term in found]
        scores = bm25(postings)
        order = sorted(by_id, key=lambda sid: (-scores[sid], -by_id[sid]["updated_at"].timestamp()))
        return [(by_id[sid], scores[sid]) for sid in order[:limit]]


__all__ = ["CANDIDATES", "SessionSearch"]
