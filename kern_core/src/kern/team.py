"""A Team: a leader model that delegates to member agents through tools.

The team is an agent whose tools include one ``delegate_to_<member>`` per member. A
delegation runs the member's turn *inside* the leader's turn (the same generator protocol,
so sync and async alike), and the member's run is stored once, as a run of the team's
session with ``parent_run_id`` set to the leader's run. Members share the team's database,
user and session state; the leader's history holds only its own (top-level) runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from types import EllipsisType
from typing import Any

from kern.agent import Agent, ParentRun
from kern.effects import Turn
from kern.errors import ConfigurationError
from kern.models.base import Model
from kern.records import SessionType
from kern.tools import Tool

LEADER_INSTRUCTIONS = (
    "You lead a team. Hand each part of the user's request to the member best suited for "
    "it with the delegate_to_* tools, then answer the user with what they found."
)


class Team(Agent):
    """``Team(db=db, members=[agent, ...], model=...)``: run it like an agent.

    ``members`` may hold the placeholder ``...`` (as in ``members=[...]``) while a team is
    being sketched; running such a team raises an error that says to pass agents.
    """

    session_type = SessionType.TEAM

    def __init__(
        self,
        members: Sequence[Agent | EllipsisType] = (),
        model: Model | str | None = None,
        *,
        team_id: str | None = None,
        instructions: str | Sequence[str] | None = None,
        **agent_options: Any,
    ) -> None:
        if isinstance(instructions, str):
            instructions = [instructions]
        super().__init__(
            model,
            agent_id=team_id or agent_options.pop("agent_id", None),
            instructions=[LEADER_INSTRUCTIONS, *(instructions or ())],
            **agent_options,
        )
        for member in members:
            if member is not Ellipsis and not isinstance(member, Agent):
                raise ConfigurationError(
                    f"team members must be Agent (or Team) objects, not {type(member).__name__}"
                )
        #: The members; ``...`` is a placeholder (``members=[...]``) that fails the run.
        self.members: list[Agent | EllipsisType] = list(members)

    @property
    def team_id(self) -> str | None:
        return self.agent_id

    def _run_tools(self, here: ParentRun) -> list[Tool]:
        members = [member for member in self.members if not isinstance(member, EllipsisType)]
        if not members or len(members) < len(self.members):
            raise ConfigurationError(
                "this team has no members yet (members=[...] is a placeholder): pass the "
                "agents, e.g. Team(db=db, members=[researcher, writer])"
            )
        names = _tool_names(members)
        return [
            _delegation_tool(member, name, here)
            for member, name in zip(members, names, strict=True)
        ]


def _tool_names(members: Sequence[Agent]) -> list[str]:
    names: list[str] = []
    for index, member in enumerate(members, start=1):
        slug = re.sub(r"[^a-zA-Z0-9_]+", "_", member.name or "").strip("_").lower()
        name = f"delegate_to_{slug or f'member_{index}'}"
        names.append(name if name not in names else f"{name}_{index}")
    return names


def _delegation_tool(member: Agent, tool_name: str, here: ParentRun) -> Tool:
    """A tool whose call runs ``member``'s turn as a child run of ``here``."""

    def delegate(task: str) -> str:
        raise AssertionError("delegation runs as a sub-turn, never as a plain call")

    delegate.__name__ = tool_name
    about = member.name or "a team member"
    if member.instructions:
        about += f" ({' '.join(member.instructions)[:200]})"
    delegate.__doc__ = f"Give a task to {about} and get their answer. `task` says what to do."

    def subturn(task: str) -> Turn[str]:
        output = yield from member._member_turn(task, here)
        return output.content or ""

    return Tool.from_function(delegate, subturn=subturn)
