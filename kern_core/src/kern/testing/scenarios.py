"""End-to-end scenarios a storage plugin runs against its own database.

Each takes a *recipe* — ``("module:Class", kwargs)``, the same one the conformance suite
uses — and a running ``ScriptedServer``, and does its work in real child processes, so
that what is checked is what another process reads back from the database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from kern.plugins import resolve
from kern.records import RunStatus, SessionType
from kern.testing.scripted_server import Reply, ScriptedServer, ToolCallReply

Recipe = tuple[str, dict[str, Any]]

_TEAM_AND_WORKFLOW = """
import json, sys
from kern.agent import Agent
from kern.models.openai import OpenAIChat
from kern.plugins import resolve
from kern.team import Team
from kern.workflow import Workflow

target, kwargs, base_url = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
db = resolve(target)(**kwargs)
model = OpenAIChat(id="scripted", base_url=base_url, api_key="test")
researcher = Agent(model=model, name="Researcher", agent_id="researcher")
team = Team(members=[researcher], model=model, db=db, team_id="desk")
team_run = team.run("What is X?", session_id="scenario-team", user_id="ada")

def outline(step_input):
    step_input.session_state["outlined"] = True
    return f"outline of {step_input.input}"

flow = Workflow(db=db, steps=[outline, researcher], workflow_id="flow")
flow_run = flow.run("kern", session_id="scenario-flow", user_id="ada")
db.close()
print(json.dumps({"team": team_run.run_id, "flow": flow_run.run_id}))
"""


def run_child(code: str, recipe: Recipe, server: ScriptedServer, *args: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter with ``sys.argv[1:]`` = target, kwargs as JSON,
    the server's base URL, then ``args``; return the JSON object its last line prints."""
    target, kwargs = recipe
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "KERN_"))}
    result = subprocess.run(
        [sys.executable, "-c", code, target, json.dumps(kwargs), server.base_url, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, f"the child process failed:\n{result.stderr}"
    payload: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return payload


def team_and_workflow_across_processes(recipe: Recipe, server: ScriptedServer) -> None:
    """A team turn and a workflow run in one process are readable, with their member and
    step runs, from another process (the test process)."""
    server.script(
        Reply.tool_calls(ToolCallReply(name="delegate_to_researcher", arguments={"task": "X?"})),
        Reply.text("X is 42."),
        Reply.text("The team found that X is 42."),
    )
    ids = run_child(_TEAM_AND_WORKFLOW, recipe, server)

    target, kwargs = recipe
    db = resolve(target)(**kwargs)
    try:
        team = db.get_session("scenario-team")
        assert team is not None and team.session_type == SessionType.TEAM
        runs = db.get_last_runs("scenario-team", 10)
        assert [(r.component_id, r.parent_run_id) for r in runs] == [
            ("researcher", ids["team"]),
            ("desk", None),
        ]
        assert runs[0].output == "X is 42."
        assert runs[1].output == "The team found that X is 42."
        assert {r.user_id for r in runs} == {"ada"}

        flow = db.get_session("scenario-flow")
        assert flow is not None and flow.session_type == SessionType.WORKFLOW
        assert flow.state == {"outlined": True}
        runs = db.get_last_runs("scenario-flow", 10)
        assert runs[0].run_id == ids["flow"] and runs[0].status == RunStatus.COMPLETED
        assert [r.parent_run_id for r in runs[1:]] == [ids["flow"], ids["flow"]]
        assert [r.metrics["workflow_step"] for r in runs[1:]] == [0, 1]
        assert runs[1].output == "outline of kern"
        assert runs[0].output == runs[2].output
    finally:
        db.close()
