"""A tool that lets the model look through the same user's earlier sessions.

``Agent(tools=[PastSessions()])`` gives the model ``search_past_sessions(query)``: the
user's sessions whose summary or name best match the query, ranked by the backend's own
text search (``search_sessions`` of the storage contract), at most ``limit``, each with its
id, name, summary and when it was last used. The tool is bound to each run's user when the
run starts, so it can only ever see that user's sessions: a run without a ``user_id`` gets
an answer saying so, never anyone's sessions. The current session and kern's own
bookkeeping rows (``kern.*`` components) are left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from kern import storage
from kern.effects import Turn
from kern.errors import ConfigurationError
from kern.tools import Tool

#: Characters of one summary shown to the model.
MAX_SUMMARY_CHARS = 1500


@dataclass(frozen=True)
class PastSessions:
    """``search_past_sessions``, as a tool given to an agent: ``tools=[PastSessions()]``.

    ``limit`` bounds the sessions one call returns (1 to 20)."""

    limit: int = 5

    def __post_init__(self) -> None:
        if not isinstance(self.limit, int) or not 1 <= self.limit <= 20:
            raise ConfigurationError(
                f"PastSessions(limit={self.limit!r}): pass a number from 1 to 20"
            )

    def bind(self, user_id: str | None, session_id: str) -> Tool:
        """The tool for one run: searches ``user_id``'s sessions other than ``session_id``."""
        limit = self.limit

        def search_past_sessions(query: str) -> str:
            """Search the user's earlier conversations (their summaries and titles) for
            what the query names; returns the best matches with their summaries."""
            raise AssertionError("search_past_sessions runs as a sub-turn")

        def subturn(query: str) -> Turn[str]:
            if user_id is None:
                return "Error: past sessions are kept per user, and this run has no user_id."
            found = yield from storage.search_sessions(user_id, query, limit=limit + 1)
            sessions = [
                s
                for s in found
                if s.user_id == user_id
                and s.session_id != session_id
                and not (s.component_id or "").startswith("kern.")
            ][:limit]
            if not sessions:
                return f"No earlier session of this user matches {query!r}."
            return json.dumps(
                [
                    {
                        "session_id": s.session_id,
                        "name": s.name,
                        "summary": (s.summary or "")[:MAX_SUMMARY_CHARS],
                        "updated_at": s.updated_at.isoformat(),
                    }
                    for s in sessions
                ]
            )

        return Tool.from_function(search_past_sessions, subturn=subturn)


__all__ = ["PastSessions"]
