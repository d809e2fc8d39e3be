"""A Workflow: steps (agents, teams or Python functions) run in order over a shared state.

The workflow's run is appended first, as ``running``. Each step's result is stored the
moment it completes, as a child run (``parent_run_id`` = the workflow run, the step's index
in ``metrics["workflow_step"]``), and the session state is saved after every step. So a
process killed between steps leaves a record of exactly what finished: running the
workflow again with the same ``session_id`` and ``run_id`` skips those steps and continues
from the first unfinished one.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import EllipsisType
from typing import Any

from pydantic import BaseModel, Field, JsonValue

from kern import storage
from kern.agent import Agent, ParentRun
from kern.db.base import AsyncBaseDb, BaseDb
from kern.effects import Call, Turn
from kern.errors import ConfigurationError, SyncAsyncMismatchError
from kern.ids import check_id
from kern.learn.background import arun_turn, run_turn
from kern.records import Run, RunStatus, Session, SessionType, new_id
from kern.sessions import check_owner, checked_state, load_or_create, save_state

STEP_KEY = "workflow_step"


@dataclass
class StepInput:
    """What a function step receives."""

    #: The workflow's input.
    input: Any
    #: The previous step's output (the workflow's input for the first step).
    previous_output: Any
    #: Outputs of the steps done so far, by step name.
    outputs: dict[str, Any] = field(default_factory=dict)
    #: The session's state: changes are saved when the step completes.
    session_state: dict[str, Any] = field(default_factory=dict)


class StepResult(BaseModel):
    name: str
    output: Any = None
    run_id: str
    resumed: bool = False


class WorkflowRunOutput(BaseModel):
    """The result of ``Workflow.run``: the last step's output, and every step's."""

    run_id: str
    session_id: str
    content: Any = None
    steps: list[StepResult] = Field(default_factory=list)
    session_state: dict[str, Any] = Field(default_factory=dict)


Step = Agent | Callable[[StepInput], Any]


class Workflow:
    """``Workflow(db=db, steps=[agent, team, function, ...])``; ``run`` / ``arun``."""

    def __init__(
        self,
        *,
        db: BaseDb | AsyncBaseDb | None = None,
        steps: Sequence[Step | EllipsisType] = (),
        name: str | None = None,
        workflow_id: str | None = None,
        session_id: str | None = None,
        user_id: str | None = None,
        session_state: dict[str, Any] | None = None,
    ) -> None:
        for step in steps:
            if step is not Ellipsis and not (isinstance(step, Agent) or callable(step)):
                raise ConfigurationError(
                    f"workflow steps must be agents, teams or functions, not {type(step).__name__}"
                )
        self.db = db
        #: The steps; ``...`` is a placeholder (``steps=[...]``) that fails the run.
        self.steps: list[Step | EllipsisType] = list(steps)
        self.name = name
        self.workflow_id = workflow_id or name
        self.session_id = session_id or new_id()
        self.user_id = user_id
        self.session_state = checked_state(session_state or {})

    def run(
        self,
        input: Any = None,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        run_id: str | None = None,
    ) -> WorkflowRunOutput:
        """Run every step in order; with the ``run_id`` of an unfinished run, resume it."""
        if self.db is not None and self.db.is_async:
            raise SyncAsyncMismatchError(
                f"workflow.run() was called with an async database ({type(self.db).__name__}): "
                "use `await workflow.arun(...)`, or give the workflow the sync class."
            )
        return run_turn(self._turn(input, session_id, user_id, run_id), self.db)

    async def arun(
        self,
        input: Any = None,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        run_id: str | None = None,
    ) -> WorkflowRunOutput:
        turn = self._turn(input, session_id, user_id, run_id)
        return await arun_turn(turn, self.db)

    # -- the run, written once for sync and async ----------------------------------
    def _turn(
        self, input: Any, session_id: str | None, user_id: str | None, run_id: str | None
    ) -> Turn[WorkflowRunOutput]:
        steps = [step for step in self.steps if not isinstance(step, EllipsisType)]
        if not steps or len(steps) < len(self.steps):
            raise ConfigurationError(
                "this workflow has no steps yet (steps=[...] is a placeholder): pass agents, "
                "teams or functions, e.g. Workflow(db=db, steps=[research, write])"
            )
        session_id = session_id or self.session_id
        user_id = user_id or self.user_id
        check_id("session_id", session_id)
        check_id("user_id", user_id, optional=True)
        check_id("run_id", run_id, optional=True)
        persist = self.db is not None
        session: Session | None = None
        if persist:
            session = yield from load_or_create(
                Session(
                    session_id=session_id,
                    session_type=SessionType.WORKFLOW,
                    component_id=self.workflow_id,
                    user_id=user_id,
                    name=self.name,
                    state=copy.deepcopy(self.session_state),
                )
            )
            check_owner(session, user_id)
        state = copy.deepcopy(session.state if session else self.session_state)

        run, done = yield from self._start_or_resume(input, session_id, user_id, run_id)
        if run.status == RunStatus.COMPLETED:
            return self._output(steps, run, done, state, resumed=True)
        input = run.input
        backend = self.db.backend_name if self.db is not None else None
        here = ParentRun(run.run_id, session_id, user_id, state, persist=persist, backend=backend)
        previous: Any = input
        outputs: dict[str, Any] = {}
        results: list[StepResult] = []
        for index, step in enumerate(steps):
            name = _step_name(step, index)
            if index in done:
                previous = done[index].output
                results.append(
                    StepResult(name=name, output=previous, run_id=done[index].run_id, resumed=True)
                )
            else:
                step_run = yield from self._run_step(
                    step, index, name, input, previous, outputs, here
                )
                previous = step_run.output
                results.append(StepResult(name=name, output=previous, run_id=step_run.run_id))
                if session is not None:
                    session = yield from save_state(session, checked_state(state))
            outputs[name] = previous

        if persist:
            yield from storage.update_run(run.run_id, status=RunStatus.COMPLETED, output=previous)
        return WorkflowRunOutput(
            run_id=run.run_id,
            session_id=session_id,
            content=previous,
            steps=results,
            session_state=state,
        )

    def _start_or_resume(
        self, input: Any, session_id: str, user_id: str | None, run_id: str | None
    ) -> Turn[tuple[Run, dict[int, Run]]]:
        """The workflow run (appended now, or the stored one) and its completed steps."""
        stored = (yield from storage.get_run(run_id)) if run_id and self.db is not None else None
        if stored is None:
            run = Run(
                run_id=run_id or new_id(),
                session_id=session_id,
                component_id=self.workflow_id,
                user_id=user_id,
                status=RunStatus.RUNNING,
                input=input,
            )
            if self.db is not None:
                run = yield from storage.append_run(run)
            return run, {}
        if stored.session_id != session_id:
            raise ConfigurationError(
                f"run {run_id!r} belongs to session {stored.session_id!r}, not {session_id!r}: "
                "resume it with the session_id it was started with"
            )
        return stored, (yield from self._completed_steps(stored))

    def _completed_steps(self, run: Run) -> Turn[dict[int, Run]]:
        """Completed child runs of ``run``, by step index: read back from the newest run
        down to the workflow run itself (steps are always appended after it)."""
        done: dict[int, Run] = {}
        before: int | None = None
        while True:
            page = yield from storage.get_last_runs(run.session_id, 50, before_seq=before)
            for child in page:
                step = child.metrics.get(STEP_KEY)
                if (
                    child.parent_run_id == run.run_id
                    and child.status == RunStatus.COMPLETED
                    and isinstance(step, int)
                ):
                    done.setdefault(step, child)
            if not page or page[0].seq is None or page[0].seq <= (run.seq or 0):
                return done
            before = page[0].seq

    def _run_step(
        self,
        step: Step,
        index: int,
        name: str,
        input: Any,
        previous: Any,
        outputs: dict[str, Any],
        here: ParentRun,
    ) -> Turn[Run]:
        """Run one step and store its result as a child run; return that run."""
        tags: dict[str, JsonValue] = {STEP_KEY: index}
        if isinstance(step, Agent):
            output = yield from step._member_turn(_as_text(previous), here, tags)
            return Run(
                run_id=output.run_id,
                session_id=here.session_id,
                parent_run_id=here.run_id,
                output=output.content,
                metrics=output.metrics,
            )
        step_input = StepInput(input, previous, dict(outputs), here.state)
        result = yield from Call(step, {"step_input": step_input} if _wants_input(step) else {})
        run = Run(
            session_id=here.session_id,
            parent_run_id=here.run_id,
            component_id=name,
            user_id=here.user_id,
            status=RunStatus.COMPLETED,
            input=previous,
            output=result,
            metrics=tags,
        )
        if here.persist:
            run = yield from storage.append_run(run)
        return run

    def _output(
        self,
        steps: list[Step],
        run: Run,
        done: dict[int, Run],
        state: dict[str, Any],
        *,
        resumed: bool,
    ) -> WorkflowRunOutput:
        results = [
            StepResult(
                name=_step_name(step, i),
                output=done[i].output,
                run_id=done[i].run_id,
                resumed=resumed,
            )
            for i, step in enumerate(steps)
            if i in done
        ]
        return WorkflowRunOutput(
            run_id=run.run_id,
            session_id=run.session_id,
            content=run.output,
            steps=results,
            session_state=state,
        )


def _step_name(step: Step, index: int) -> str:
    if isinstance(step, Agent):
        return step.name or step.agent_id or f"step_{index + 1}"
    return getattr(step, "__name__", None) or f"step_{index + 1}"


def _wants_input(function: Callable[..., Any]) -> bool:
    return bool(inspect.signature(function).parameters)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    import json

    return json.dumps(value, default=str)
