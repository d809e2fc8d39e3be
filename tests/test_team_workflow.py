"""Teams and workflows on the same database as agents, and workflow resume after a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from kern.agent import Agent
from kern.db.sqlite import AsyncSqliteDb, SqliteDb
from kern.errors import ConfigurationError
from kern.records import RunStatus, SessionType
from kern.team import Team
from kern.testing.scripted_server import Reply, ToolCallReply
from kern.workflow import StepInput, Workflow


def make_team(model, db) -> Team:
    researcher = Agent(model=model, name="Researcher", agent_id="researcher")
    writer = Agent(model=model, name="Writer", agent_id="writer")
    return Team(members=[researcher, writer], model=model, db=db, name="Desk", team_id="desk")


def test_team_delegates_and_stores_member_runs_under_the_leader(scripted, model, db_file):
    scripted.script(
        Reply.tool_calls(
            ToolCallReply(name="delegate_to_researcher", arguments={"task": "find X"})
        ),
        Reply.text("X is 42."),  # the researcher's answer
        Reply.text("The team found that X is 42."),  # the leader's answer
    )
    output = make_team(model, SqliteDb(db_file=db_file)).run("What is X?", session_id="t1")
    assert output.content == "The team found that X is 42."
    leader_tools = {t["function"]["name"] for t in scripted.chat_requests()[0]["tools"]}
    assert leader_tools == {"delegate_to_researcher", "delegate_to_writer"}
    assert scripted.chat_requests()[1]["messages"][-1]["content"] == "find X"

    # A new process (a new db object on the same file) reads it all back.
    db = SqliteDb(db_file=db_file)
    assert db.get_session("t1").session_type == SessionType.TEAM
    runs = db.get_last_runs("t1", 10)
    assert [(r.component_id, r.parent_run_id) for r in runs] == [
        ("researcher", output.run_id),
        ("desk", None),
    ]
    assert runs[0].output == "X is 42."
    tool_result = [m for m in runs[1].messages if m.role == "tool"]
    assert tool_result[0].content == "X is 42."


def test_team_history_holds_only_the_leaders_turns(scripted, model, db_file):
    team = make_team(model, SqliteDb(db_file=db_file))
    team.add_history_to_context = True
    scripted.script(
        Reply.tool_calls(ToolCallReply(name="delegate_to_writer", arguments={"task": "draft"})),
        Reply.text("a draft"),
        Reply.text("Here is the draft."),
    )
    team.run("Write something.", session_id="t")
    team.run("Thanks!", session_id="t")
    said = [m["content"] for m in scripted.chat_requests()[-1]["messages"] if m["role"] == "user"]
    assert said == ["Write something.", "Thanks!"]  # not the member's "draft" task


async def test_team_runs_async_on_an_async_db(scripted, model, db_file):
    scripted.script(
        Reply.tool_calls(ToolCallReply(name="delegate_to_writer", arguments={"task": "hi"})),
        Reply.text("hello from the writer"),
        Reply.text("done"),
    )
    db = AsyncSqliteDb(db_file=db_file)
    output = await make_team(model, db).arun("go", session_id="t")
    runs = await db.get_last_runs("t", 10)
    assert [r.parent_run_id for r in runs] == [output.run_id, None]


def test_team_placeholder_members_run_as_written_but_fail_clearly_when_used(model, db_file):
    team = Team(db=SqliteDb(db_file=db_file), members=[...], model=model)
    with pytest.raises(ConfigurationError, match="placeholder"):
        team.run("hello")
    with pytest.raises(ConfigurationError, match="Agent"):
        Team(members=["not an agent"])


def test_workflow_runs_steps_in_order_with_a_shared_persisted_state(scripted, model, db_file):
    def outline(step_input: StepInput) -> str:
        step_input.session_state["outlined"] = True
        return f"outline of {step_input.input}"

    def publish(step_input: StepInput) -> dict:
        return {"published": step_input.previous_output, "seen": sorted(step_input.outputs)}

    writer = Agent(model=model, name="Writer", agent_id="writer")
    scripted.script(Reply.text("a polished article"))
    flow = Workflow(db=SqliteDb(db_file=db_file), steps=[outline, writer, publish], name="blog")
    output = flow.run("kern", session_id="w1")

    assert scripted.chat_requests()[0]["messages"][-1]["content"] == "outline of kern"
    assert output.content == {"published": "a polished article", "seen": ["Writer", "outline"]}
    assert [s.name for s in output.steps] == ["outline", "Writer", "publish"]

    db = SqliteDb(db_file=db_file)
    session = db.get_session("w1")
    assert session.session_type == SessionType.WORKFLOW and session.state == {"outlined": True}
    workflow_run = db.get_run(output.run_id)
    assert workflow_run.status == RunStatus.COMPLETED and workflow_run.output == output.content
    children = db.get_last_runs("w1", 10)[1:]
    assert [r.parent_run_id for r in children] == [output.run_id] * 3
    assert [r.metrics["workflow_step"] for r in children] == [0, 1, 2]


def test_workflow_placeholder_steps_fail_clearly_when_run(db_file):
    flow = Workflow(db=SqliteDb(db_file=db_file), steps=[...])
    with pytest.raises(ConfigurationError, match="placeholder"):
        flow.run("x")


CRASHING_WORKFLOW = textwrap.dedent(
    """
    import os, signal, sys
    from kern.db.sqlite import SqliteDb
    from kern.workflow import Workflow

    db_file, log_file = sys.argv[1], sys.argv[2]

    def step(n):
        def run(step_input):
            if n == 3 and os.environ.get("CRASH_BEFORE_STEP_3"):
                os.kill(os.getpid(), signal.SIGKILL)  # the process dies between steps
            with open(log_file, "a") as log:
                log.write(f"step {n}\\n")
            step_input.session_state[f"step{n}"] = "done"
            return f"{step_input.previous_output} > {n}"
        run.__name__ = f"step{n}"
        return run

    flow = Workflow(db=SqliteDb(db_file=db_file), steps=[step(1), step(2), step(3), step(4)])
    output = flow.run("start", session_id="nightly", run_id="run-1")
    print(output.content)
    """
)


def test_a_workflow_killed_after_step_2_resumes_at_step_3(tmp_path, db_file):
    script = tmp_path / "flow.py"
    script.write_text(CRASHING_WORKFLOW)
    log = tmp_path / "steps.log"
    args = [sys.executable, str(script), str(db_file), str(log)]

    crashed = subprocess.run(args, env={**os.environ, "CRASH_BEFORE_STEP_3": "1"})
    assert crashed.returncode == -signal.SIGKILL
    assert log.read_text().splitlines() == ["step 1", "step 2"]
    assert SqliteDb(db_file=db_file).get_run("run-1").status == RunStatus.RUNNING

    resumed = subprocess.run(args, capture_output=True, text=True, check=True)
    assert resumed.stdout.strip() == "start > 1 > 2 > 3 > 4"
    assert log.read_text().splitlines() == ["step 1", "step 2", "step 3", "step 4"]
    db = SqliteDb(db_file=db_file)
    assert db.get_run("run-1").status == RunStatus.COMPLETED
    state = db.get_session("nightly").state
    assert state == {f"step{n}": "done" for n in (1, 2, 3, 4)}
    steps = [r for r in db.get_last_runs("nightly", 10) if r.parent_run_id == "run-1"]
    assert [r.metrics["workflow_step"] for r in steps] == [0, 1, 2, 3]

    # Running a finished run again does nothing new.
    again = subprocess.run(args, capture_output=True, text=True, check=True)
    assert again.stdout.strip() == "start > 1 > 2 > 3 > 4"
    assert len(log.read_text().splitlines()) == 4


def test_a_learning_member_learns_inside_the_team_for_the_teams_user(scripted, model, db_file):
    db = SqliteDb(db_file=db_file)
    assistant = Agent(model=model, name="Assistant", agent_id="assistant", learning=True)
    team = Team(members=[assistant], model=model, db=db, team_id="desk")
    scripted.script(
        Reply.tool_calls(ToolCallReply(name="delegate_to_assistant", arguments={"task": "note"})),
        Reply.text("Noted: Ada prefers tea."),  # the member's answer
        Reply.tool_calls(  # the member's extraction call, after its run is stored
            ToolCallReply("save_user_memories", {"memories": [{"content": "Ada prefers tea"}]})
        ),
        Reply.text("Your assistant noted it."),  # the leader's answer
    )
    output = team.run("Remember that I prefer tea.", session_id="t", user_id="ada")

    stored = db.list_memories("ada")
    assert [m.content for m in stored] == ["Ada prefers tea"]
    member_run = db.get_last_runs("t", 10)[0]
    assert member_run.parent_run_id == output.run_id
    assert stored[0].source_run_id == member_run.run_id
    assert db.list_memories("someone-else") == []
