"""What a run hands back to the caller: the output, and the events of a streamed run."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from kern.records import Message, RunStatus


class RunOutput(BaseModel):
    """The result of ``Agent.run``: the answer and where it was stored."""

    run_id: str
    session_id: str
    user_id: str | None = None
    seq: int | None = None
    content: str | None = None
    status: RunStatus = RunStatus.COMPLETED
    messages: list[Message] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    session_state: dict[str, Any] = Field(default_factory=dict)


class RunEvent(BaseModel):
    """One event of a streamed run: pieces of content as they come, then ``completed``."""

    event: Literal["content", "tool_call", "completed"]
    content: str | None = None
    tool_name: str | None = None
    output: RunOutput | None = None
