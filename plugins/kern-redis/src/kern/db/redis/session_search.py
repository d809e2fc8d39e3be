"""``search_sessions`` on Redis: the user's newest sessions ranked with the memories' BM25.

Sessions have no term index of their own (their writes are the one hot path of every turn,
a state write each, and an index per word of a summary would be rewritten with them). The
user's session index (``list_sessions(user_id=...)``, a sorted set in the user's slot) is
walked for the newest ``SCAN`` sessions, and those holding a word of the query are ranked
with the same terms (folded, lightly stemmed: ``kern.db.redis.text``) and BM25 as memory
search. Bounded, per user by construction: another user's sessions are never read.
"""

from __future__ import annotations

from kern.db.redis.indexes import Ctx
from kern.db.redis.plans import Plan
from kern.db.redis.sessions import list_sessions
from kern.db.redis.text import bm25, document_terms, idf, query_terms
from kern.db.session_search import SCAN
from kern.records import Session


def search_sessions(ctx: Ctx, user_id: str, query: str, *, limit: int) -> Plan[list[Session]]:
    terms = query_terms(query)
    if limit <= 0 or not terms:
        return []
    newest = yield from list_sessions(
        ctx, user_id=user_id, component_id=None, session_type=None, limit=SCAN, offset=0
    )
    wanted = set(terms)
    candidates = [
        (session, document)
        for session in newest
        if session.user_id == user_id
        and wanted & set(document := document_terms([session.name or "", session.summary or ""]))
    ]
    if not candidates:
        return []
    weights = {
        term: idf(len(candidates), sum(term in document for _, document in candidates))
        for term in wanted
    }
    average = sum(len(document) for _, document in candidates) / len(candidates)
    scored = [
        (bm25(terms, weights, document, average), session.updated_at, session)
        for session, document in candidates
    ]
    scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [session for _, _, session in scored[:limit]]


__all__ = ["search_sessions"]
