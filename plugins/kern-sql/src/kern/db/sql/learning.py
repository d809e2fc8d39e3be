"""The SQL backends' own learning stores, registered by each SQL plugin for its backend
(``register_learning_stores`` in ``kern.db.<backend>._plugin``).

A turn's recall of user memories is a ranked search plus the user's newest memories. The
generic ``UserMemoryStore`` makes that two contract calls: two pool checkouts (each with
its pre-ping on Postgres, its lease on DuckDB) and two read snapshots. Here it is one call,
``SqlDb.recall_memories``: one connection, both statements.
"""

from __future__ import annotations

from kern.effects import DbCall, Turn
from kern.learn.stores import UserMemoryStore, merge_newest


class SqlUserMemoryStore(UserMemoryStore):
    """``UserMemoryStore`` reading recall's memories in one call on a SQL backend."""

    def read_memories(self, user_id: str, text: str, agent_id: str | None) -> Turn:
        ranked, newest = yield DbCall(
            "recall_memories",
            (user_id, text),
            {"agent_id": agent_id, "limit": self.limit, "recent": self.recent},
        )
        return merge_newest([hit.memory for hit in ranked], newest)
