"""What the Agent hands a learning machine each turn, and what it gets back."""

from __future__ import annotations

from dataclasses import dataclass, field

from kern.tools import Tool


@dataclass(frozen=True)
class LearningScope:
    """Whose turn this is: stores scope what they recall and save by these ids."""

    user_id: str | None
    session_id: str
    agent_id: str | None
    #: The run being answered: every learning records the run it came from.
    run_id: str
    #: The database backend's name (``db.backend_name``): a backend may register its own
    #: implementation of a store kind, preferred when that backend is in use.
    backend: str | None = None


@dataclass
class Recall:
    """What recall adds to a turn: text for the system prompt and tools for the model."""

    context: str = ""
    tools: list[Tool] = field(default_factory=list)
