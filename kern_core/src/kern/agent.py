"""The Agent: a model, tools and instructions, with a database that remembers.

Per turn the agent reads the session row and the last ``num_history_runs`` runs (an indexed
read, whatever the session's length), calls the model (and tools), and appends the turn as
one new run. Session state is written only when it changed, compare-and-set on its version.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict, Unpack, overload

from pydantic import ValidationError

from kern import storage
from kern.budget import count_tokens, fit_history
from kern.db.base import AsyncBaseDb, BaseDb
from kern.db.fork import STATE_KEY, state_snapshot
from kern.effects import Call, Done, ModelCall, Turn
from kern.errors import (
    ConfigurationError,
    KernError,
    SessionNotFoundError,
    StorageUnavailableError,
    SyncAsyncMismatchError,
    ToolError,
)
from kern.forks import fork_turn
from kern.ids import check_id, check_input
from kern.learn.background import arun_turn, astream_turn, run_turn, stream_turn
from kern.learn.scope import LearningScope, Recall
from kern.models import default_model, get_model
from kern.models.base import Model, ModelResponse
from kern.past_sessions import PastSessions
from kern.printing import aprint_stream, print_run, print_stream
from kern.records import Message, Run, RunStatus, Session, SessionType, new_id
from kern.run import RunEvent, RunOutput
from kern.sessions import SHARED_KEY, check_owner, checked_state, commit, read_owned
from kern.summaries import SessionSummaries, after_turn, summaries_option, summary_message
from kern.tools import Tool, ToolRetry, argument_error_text, as_tool, result_text

if TYPE_CHECKING:
    from kern.learn.machine import LearningMachine

#: How many model calls one turn may make before the agent stops following tool calls.
MAX_MODEL_CALLS = 10

log = logging.getLogger(__name__)


class RunOptions(TypedDict, total=False):
    """The keyword arguments of ``Agent.run`` that ``print_response`` passes on."""

    session_id: str | None
    user_id: str | None
    session_state: dict[str, Any] | None
    run_id: str | None


class Agent:
    """An AI agent whose sessions, history and state survive restarts when given a ``db``.

    ``add_history_to_context`` puts the last ``num_history_runs`` runs of the session into
    the model's context. ``session_state`` holds defaults for a new session's state; tools
    that take a ``session_state`` parameter receive the session's state and may change it.
    ``session_summaries`` keeps a rolling summary of the session ahead of those runs,
    ``max_history_tokens`` trims them to a token budget, and ``PastSessions()`` in
    ``tools`` lets the model search the user's earlier sessions (docs/long-sessions.md).
    """

    #: What this component's sessions are stored as.
    session_type: SessionType = SessionType.AGENT

    def __init__(
        self,
        model: Model | str | None = None,
        *,
        db: BaseDb | AsyncBaseDb | None = None,
        name: str | None = None,
        agent_id: str | None = None,
        instructions: str | Sequence[str] | None = None,
        tools: Sequence[Callable[..., Any] | Tool | PastSessions] = (),
        session_id: str | None = None,
        user_id: str | None = None,
        session_state: dict[str, Any] | None = None,
        add_history_to_context: bool = False,
        num_history_runs: int = 3,
        add_session_state_to_context: bool = False,
        markdown: bool = False,
        learning: bool | LearningMachine | None = None,
        shared_session: bool = False,
        session_summaries: bool | SessionSummaries | None = None,
        max_history_tokens: int | None = None,
    ) -> None:
        if db is not None and not isinstance(db, BaseDb | AsyncBaseDb):
            raise ConfigurationError(
                f"db must be a kern database such as SqliteDb(db_file=...), not "
                f"{type(db).__name__}; kern.db.connect(url) builds one from a URL."
            )
        if num_history_runs < 0:
            raise ConfigurationError("num_history_runs must be 0 or more")
        self._model = model
        self.db = db
        self.name = name
        self.agent_id = agent_id or name
        self.instructions = [instructions] if isinstance(instructions, str) else instructions
        self.tools = [as_tool(tool) for tool in tools if not isinstance(tool, PastSessions)]
        #: Tools bound to each run's user (``PastSessions``).
        self.past_sessions = [tool for tool in tools if isinstance(tool, PastSessions)]
        #: The session used when a call names none: the one given here, else one made up
        #: for this agent's ``user_id``. Other users get sessions of their own (a session
        #: belongs to its user), see ``default_session_id``.
        self.session_id = session_id or new_id()
        self._session_given = session_id is not None
        self._user_sessions: dict[str, str] = {}
        self.user_id = user_id
        self.session_state = checked_state(session_state or {})
        self.add_history_to_context = add_history_to_context
        self.num_history_runs = num_history_runs
        self.add_session_state_to_context = add_session_state_to_context
        self.markdown = markdown
        #: Sessions this agent creates may be used by any user, not only their creator's.
        self.shared_session = shared_session
        #: The learning machine (``learning=True`` or a ``LearningMachine``), or None.
        self.learning = _learning_machine(learning)
        #: Rolling session summaries (kern.summaries), or None.
        self.session_summaries = summaries_option(session_summaries)
        if max_history_tokens is not None and max_history_tokens < 0:
            raise ConfigurationError("max_history_tokens must be 0 or more (None: no budget)")
        #: The history's token budget (kern.budget), or None.
        self.max_history_tokens = max_history_tokens

    @property
    def model(self) -> Model:
        """The model, resolved on first use so that a missing key fails at the call, not here."""
        if not isinstance(self._model, Model):
            self._model = default_model() if self._model is None else get_model(self._model)
        return self._model

    # -- running -------------------------------------------------------------------
    @overload
    def run(
        self,
        input: str,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        session_state: dict[str, Any] | None = None,
        stream: Literal[False] = False,
        run_id: str | None = None,
    ) -> RunOutput: ...

    @overload
    def run(
        self,
        input: str,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        session_state: dict[str, Any] | None = None,
        stream: Literal[True],
        run_id: str | None = None,
    ) -> Iterator[RunEvent]: ...

    def run(
        self,
        input: str,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        session_state: dict[str, Any] | None = None,
        stream: bool = False,
        run_id: str | None = None,
    ) -> RunOutput | Iterator[RunEvent]:
        """Answer ``input`` in the session; with ``stream=True``, an iterator of events.

        The turn is stored in one atomic write after the answer: its run, the session (if
        new) and the state it left. ``run_id`` names the run; a turn that failed with
        ``StorageUnavailableError`` may have been stored or not, so retry it with
        ``run_id=error.run_id``: if it was stored, its stored output is returned and
        nothing is asked or stored again; if not, it runs now.
        """
        self._require_sync_db("run", "arun")
        turn = self._turn(input, session_id, user_id, session_state, run_id)
        return _events(stream_turn(turn, self.db)) if stream else run_turn(turn, self.db)

    @overload
    async def arun(
        self,
        input: str,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        session_state: dict[str, Any] | None = None,
        stream: Literal[False] = False,
        run_id: str | None = None,
    ) -> RunOutput: ...

    @overload
    async def arun(
        self,
        input: str,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        session_state: dict[str, Any] | None = None,
        stream: Literal[True],
        run_id: str | None = None,
    ) -> AsyncIterator[RunEvent]: ...

    async def arun(
        self,
        input: str,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        session_state: dict[str, Any] | None = None,
        stream: bool = False,
        run_id: str | None = None,
    ) -> RunOutput | AsyncIterator[RunEvent]:
        """``run`` for async code. A sync db is used from a worker thread, never the loop."""
        turn = self._turn(input, session_id, user_id, session_state, run_id)
        if stream:
            return _aevents(astream_turn(turn, self.db))
        return await arun_turn(turn, self.db)

    def print_response(
        self, input: str, *, stream: bool = False, **kwargs: Unpack[RunOptions]
    ) -> RunOutput:
        """Run and print the exchange to the terminal (the model's text is never markup)."""
        if stream:
            return print_stream(input, self.run(input, stream=True, **kwargs), self.markdown)
        output = self.run(input, stream=False, **kwargs)
        print_run(input, output, self.markdown)
        return output

    async def aprint_response(
        self, input: str, *, stream: bool = False, **kwargs: Unpack[RunOptions]
    ) -> RunOutput:
        if stream:
            events = await self.arun(input, stream=True, **kwargs)
            return await aprint_stream(input, events, self.markdown)
        output = await self.arun(input, stream=False, **kwargs)
        print_run(input, output, self.markdown)
        return output

    def get_learning_machine(self) -> LearningMachine:
        """The agent's learning machine, bound to its db and model (for the curator)."""
        if self.learning is None:
            raise ConfigurationError(
                "this agent does not learn: create it with Agent(learning=True) or "
                "Agent(learning=LearningMachine(...))"
            )
        return self.learning.bind(db=self.db, model=self.model)

    # -- reading back --------------------------------------------------------------
    def get_session(self, session_id: str | None = None) -> Session | None:
        """The stored session; refused if the agent's ``user_id`` is not its owner's."""
        self._require_sync_db("get_session", "aget_session")
        return run_turn(self._read_session(session_id), self._require_db())

    async def aget_session(self, session_id: str | None = None) -> Session | None:
        return await arun_turn(self._read_session(session_id), self._require_db())

    def get_session_state(self, session_id: str | None = None) -> dict[str, Any]:
        session = self.get_session(session_id)
        return dict(session.state) if session else dict(self.session_state)

    def fork_session(
        self,
        session_id: str,
        *,
        at_seq: int | None = None,
        at_run_id: str | None = None,
        new_session_id: str | None = None,
    ) -> str:
        """A new session holding ``session_id``'s turns up to ``at_seq`` (or the turn
        ``at_run_id``) and the state that turn left; its id (a fresh one unless given).
        Continue it with ``agent.run(..., session_id=<that id>)``; the source is unchanged."""
        self._require_sync_db("fork_session", "afork_session")
        fork = fork_turn(
            session_id,
            self.user_id,
            at_seq=at_seq,
            at_run_id=at_run_id,
            new_session_id=new_session_id,
        )
        return run_turn(fork, self._require_db())

    async def afork_session(
        self,
        session_id: str,
        *,
        at_seq: int | None = None,
        at_run_id: str | None = None,
        new_session_id: str | None = None,
    ) -> str:
        fork = fork_turn(
            session_id,
            self.user_id,
            at_seq=at_seq,
            at_run_id=at_run_id,
            new_session_id=new_session_id,
        )
        return await arun_turn(fork, self._require_db())

    def get_chat_history(
        self, session_id: str | None = None, *, last_n_runs: int | None = None
    ) -> list[Message]:
        """The session's messages, oldest first: every run's, or the last ``last_n_runs``'."""
        self._require_sync_db("get_chat_history", "aget_chat_history")
        return run_turn(self._read_history(session_id, last_n_runs), self._require_db())

    async def aget_chat_history(
        self, session_id: str | None = None, *, last_n_runs: int | None = None
    ) -> list[Message]:
        reader = self._read_history(session_id, last_n_runs)
        return await arun_turn(reader, self._require_db())

    def get_session_summary(self, session_id: str | None = None) -> str | None:
        """The session's rolling summary (``session_summaries``), or None if it has none."""
        session = self.get_session(session_id)
        return session.summary if session else None

    async def aget_session_summary(self, session_id: str | None = None) -> str | None:
        session = await self.aget_session(session_id)
        return session.summary if session else None

    def default_session_id(self, user_id: str | None = None) -> str:
        """The session a turn uses when it names none: ``session_id`` given to the agent, or
        else one per user, made up on first use (the agent's own ``user_id`` gets
        ``self.session_id``), so several users of one agent never share a conversation."""
        if self._session_given or user_id is None or user_id == self.user_id:
            return self.session_id
        return self._user_sessions.setdefault(user_id, new_id())

    def _read_session(self, session_id: str | None) -> Turn[Session | None]:
        session = yield from storage.get_session(session_id or self.session_id)
        return self._owned(session)

    def _owned(self, session: Session | None) -> Session | None:
        """Reads through an agent that names a user are its sessions only (or shared ones)."""
        if session is not None and self.user_id is not None:
            check_owner(session, self.user_id)
        return session

    def _read_history(self, session_id: str | None, last_n_runs: int | None) -> Turn[list[Message]]:
        sid = session_id or self.session_id
        if self.user_id is not None:
            self._owned((yield from storage.get_session(sid)))
        if last_n_runs is not None:
            runs = yield from storage.get_last_runs(sid, last_n_runs, top_level_only=True)
            return _history(runs)
        pages: list[list[Run]] = []
        before: int | None = None
        while page := (
            yield from storage.get_last_runs(sid, 500, before_seq=before, top_level_only=True)
        ):
            pages.append(page)
            before = page[0].seq
        if not pages and (yield from storage.get_session(sid)) is None:
            raise SessionNotFoundError(
                f"no session {sid!r} is stored in {self.db!r}. Check the session_id; "
                "db.list_sessions(user_id=...) lists the stored ones."
            )
        return _history([run for page in reversed(pages) for run in page])

    # -- the turn, written once for sync and async ---------------------------------
    def _turn(
        self,
        input: str,
        session_id: str | None,
        user_id: str | None,
        state_override: dict[str, Any] | None,
        run_id: str | None = None,
    ) -> Turn[RunOutput]:
        """A top-level turn: the session is read (refused if another user's), the model
        answers, then the run and the state it left are committed together."""
        started = time.perf_counter()
        user_id = user_id or self.user_id
        session_id = session_id or self.default_session_id(user_id)
        check_id("session_id", session_id)
        check_id("user_id", user_id, optional=True)
        check_id("run_id", run_id, optional=True)
        check_input(input)
        if state_override:
            state_override = checked_state(state_override)
        persist = self.db is not None

        # Nothing is written before the model answers: the session (created if new), the
        # run and the state it leaves are stored at the end, in one atomic write.
        session: Session | None = None
        stored = False
        history: list[Message] = []
        if persist:
            if run_id is not None:
                done = yield from storage.get_run(run_id)
                if done is not None:  # a retry of a turn that was stored: answer from it
                    if done.session_id != session_id:
                        raise ConfigurationError(
                            f"run {run_id!r} is stored in another session, not {session_id!r}: "
                            "retry a turn with the session_id it was run with, or pass a new "
                            "run_id"
                        )
                    return (yield from self._stored_output(done, user_id))
            # The session and its history in one round trip (storage.read_turn).
            wanted = self.num_history_runs if self.add_history_to_context else 0
            session, runs = yield from storage.read_turn(
                session_id, wanted, top_level_only=True, status=RunStatus.COMPLETED
            )
            if session is not None:
                check_owner(session, user_id)
            stored = session is not None
            history = _history(runs) if stored else []
            session = session or self._new_session(session_id, user_id)
        state = copy.deepcopy(session.state if session else self.session_state)
        if state_override:
            state.update(state_override)
        history, trimmed = self._fit_context(history, session if stored else None)

        backend = self.db.backend_name if self.db is not None else None
        here = ParentRun(
            run_id or new_id(), session_id, user_id, state, persist=persist, backend=backend
        )
        learning = self.learning if persist else None
        scope = LearningScope(user_id, session_id, self.agent_id, here.run_id, backend)
        recall = (yield from learning.recall(scope, input)) if learning else Recall()
        run = yield from self._respond(
            input, history, here, parent_run_id=None, quiet=False, recall=recall
        )
        state = checked_state(state)
        run.metrics["duration_s"] = round(time.perf_counter() - started, 6)
        if (snapshot := state_snapshot(state)) is not None:
            run.metrics[STATE_KEY] = snapshot  # the state a fork at this turn gets
        if persist:
            assert session is not None
            try:
                run, _ = yield from commit(session, stored, state, run)
            except StorageUnavailableError as exc:
                exc.run_id = run.run_id  # the caller retries with it: stored at most once
                raise
            if self.session_summaries is not None:
                read = session if stored else None
                yield from after_turn(self.session_summaries, self.model, read, run, trimmed)
        if learning:
            yield from _learn(learning, scope, run, self.model)
        return _output(run, state)

    def _fit_context(
        self, history: list[Message], session: Session | None
    ) -> tuple[list[Message], bool]:
        """The history the model gets: the session's summary (with ``session_summaries``)
        ahead of the last runs, those trimmed to ``max_history_tokens`` (kern.budget).
        Also whether the budget left messages out."""
        summary = summary_message(session) if self.session_summaries is not None else []
        budget = self.max_history_tokens
        if budget is not None and summary:
            budget = max(0, budget - count_tokens(summary))
        kept, trimmed = fit_history(history, budget)
        return [*summary, *kept], trimmed

    def _stored_output(self, run: Run, user_id: str | None) -> Turn[RunOutput]:
        """The output of a turn that is already stored (a retry with its ``run_id``)."""
        session = yield from read_owned(run.session_id, user_id)
        state = session.state if session is not None else dict(self.session_state)
        return _output(run, state)

    def _member_turn(
        self, input: str, parent: ParentRun, tags: dict[str, Any] | None = None
    ) -> Turn[RunOutput]:
        """A turn inside another component's run (a team member, a workflow step): stored as
        a run of the parent's session with ``parent_run_id``, sharing the parent's state.
        ``tags`` are added to the run's metrics (a workflow notes the step's index)."""
        started = time.perf_counter()
        here = ParentRun(
            new_id(),
            parent.session_id,
            parent.user_id,
            parent.state,
            persist=parent.persist,
            backend=parent.backend,
        )
        # A member learns like an agent, in the parent's database and for the parent's user.
        learning = self.learning if parent.persist else None
        scope = LearningScope(
            parent.user_id, parent.session_id, self.agent_id, here.run_id, parent.backend
        )
        recall = (yield from learning.recall(scope, input)) if learning else Recall()
        run = yield from self._respond(
            input, [], here, parent_run_id=parent.run_id, quiet=True, recall=recall
        )
        run.metrics.update(tags or {}, duration_s=round(time.perf_counter() - started, 6))
        if parent.persist:
            run = yield from storage.append_run(run)
        if learning:
            yield from _learn(learning, scope, run, self.model)
        return _output(run, parent.state)

    def _respond(
        self,
        input: str,
        history: list[Message],
        here: ParentRun,
        *,
        parent_run_id: str | None,
        quiet: bool,
        recall: Recall | None = None,
    ) -> Turn[Run]:
        """The model and tool loop of one run; returns the run, not yet stored."""
        recall = recall or Recall()
        user_message = Message(role="user", content=input)
        run_messages = [user_message]
        context = [*self._system_messages(here.state, recall.context), *history, user_message]
        tools = [*self.tools, *self._run_tools(here), *recall.tools]
        tools += [tool.bind(here.user_id, here.session_id) for tool in self.past_sessions]
        tool_specs = [tool.spec for tool in tools]
        tools_by_name = {tool.spec.name: tool for tool in tools}
        usage = {"input_tokens": 0, "output_tokens": 0, "model_calls": 0}

        response = ModelResponse()
        for _ in range(MAX_MODEL_CALLS):
            request = ModelCall(self.model, [*context, *run_messages[1:]], tool_specs, quiet)
            response = yield from request
            usage["input_tokens"] += response.usage.input_tokens
            usage["output_tokens"] += response.usage.output_tokens
            usage["model_calls"] += 1
            run_messages.append(response.as_message())
            if not response.tool_calls:
                break
            for call in response.tool_calls:
                text = yield from self._call_tool(
                    tools_by_name, call.name, call.arguments, here.state
                )
                run_messages.append(Message(role="tool", tool_call_id=call.id, content=text))

        return Run(
            run_id=here.run_id,
            session_id=here.session_id,
            parent_run_id=parent_run_id,
            component_id=self.agent_id,
            user_id=here.user_id,
            status=RunStatus.COMPLETED,
            input=input,
            messages=run_messages,
            output=response.content,
            metrics={**usage},
        )

    def _new_session(self, session_id: str, user_id: str | None) -> Session:
        return Session(
            session_id=session_id,
            session_type=self.session_type,
            component_id=self.agent_id,
            user_id=user_id,
            name=self.name,
            state=copy.deepcopy(self.session_state),
            metadata={SHARED_KEY: True} if self.shared_session else {},
        )

    def _run_tools(self, here: ParentRun) -> list[Tool]:
        """Tools bound to this run (a team's delegation tools); none for a plain agent."""
        return []

    def _call_tool(
        self, tools: dict[str, Tool], name: str, arguments: str, state: dict[str, Any]
    ) -> Turn[str]:
        """Run one tool call. Told to the model: an unknown tool, invalid arguments and a
        ``ToolRetry``. Any other exception is logged and fails the run (``ToolError``)."""
        tool = tools.get(name)
        if tool is None:
            return f"Error: there is no tool named {name!r}."
        try:
            kwargs = tool.bind(arguments, state)
        except (ValueError, ValidationError) as exc:
            return argument_error_text(tool, exc)
        try:
            if tool.subturn is not None:
                result = yield from tool.subturn(**kwargs)
            else:
                result = yield from Call(tool.function, kwargs, tool.spec.name)
        except ToolRetry as retry:
            return f"Error: {retry.message}"
        except KernError:
            raise  # kern's own (a member's storage or model failing): already explained
        except Exception as exc:
            log.exception("tool %r raised; the run fails and nothing of it is stored", name)
            raise ToolError(
                f"tool {name!r} raised {type(exc).__name__}: {exc}. The run failed and nothing "
                "of it was stored. To let the model correct its call instead, raise "
                "kern.tools.ToolRetry('what to do differently') in the tool.",
                tool_name=name,
            ) from exc
        return result_text(result)

    def _system_messages(self, state: dict[str, Any], recalled: str = "") -> list[Message]:
        parts = list(self.instructions or ())
        if recalled:
            parts.append(recalled)
        if self.markdown:
            parts.append("Format your answers in Markdown.")
        if self.add_session_state_to_context and state:
            parts.append(f"The current session state is: {state}")
        return [Message(role="system", content="\n\n".join(parts))] if parts else []

    # -- checks --------------------------------------------------------------------
    def _require_db(self) -> BaseDb | AsyncBaseDb:
        if self.db is None:
            raise ConfigurationError(
                "this agent has no db, so nothing was stored: create it with "
                "Agent(db=SqliteDb(db_file='tmp/agent.db'), ...)"
            )
        return self.db

    def _require_sync_db(self, method: str, async_method: str) -> None:
        if self.db is not None and self.db.is_async:
            raise SyncAsyncMismatchError(
                f"agent.{method}() was called on an agent with an async database "
                f"({type(self.db).__name__}). Use `await agent.{async_method}(...)`, or give "
                "the agent the sync class (e.g. SqliteDb instead of AsyncSqliteDb)."
            )

    def __repr__(self) -> str:
        return f"Agent(name={self.name!r}, model={self._model!r}, db={self.db!r})"


@dataclass
class ParentRun:
    """The run a turn belongs to: where nested runs (members, steps) are stored."""

    run_id: str
    session_id: str
    user_id: str | None
    state: dict[str, Any]
    #: Whether the run's component writes to a database (set by teams and workflows).
    persist: bool = False
    #: That database's backend name, so nested learning picks the backend's own stores.
    backend: str | None = None


def _learning_machine(learning: object) -> LearningMachine | None:
    """``True`` means the default machine (user profile and user memory, always mode)."""
    if learning is None or learning is False:
        return None
    from kern.learn import LearningMachine

    if learning is True:
        return LearningMachine()
    if not isinstance(learning, LearningMachine):
        raise ConfigurationError(
            f"learning must be True or a LearningMachine, not {type(learning).__name__}"
        )
    return learning


def _learn(learning: LearningMachine, scope: LearningScope, run: Run, model: Model) -> Turn[None]:
    """After the run is stored: learn from it now, or (``background=True``) mark it pending
    and leave it to a job the driver runs once the answer is out."""
    if learning.background:
        yield from learning.process_later(scope, run, model)
    else:
        yield from learning.process(scope, run, model)


def _output(run: Run, state: dict[str, Any]) -> RunOutput:
    return RunOutput(
        run_id=run.run_id,
        session_id=run.session_id,
        user_id=run.user_id,
        seq=run.seq,
        content=run.output
        if isinstance(run.output, str) or run.output is None
        else str(run.output),
        messages=run.messages,
        metrics=run.metrics,
        session_state=state,
    )


def _history(runs: Sequence[Run]) -> list[Message]:
    return [message for run in runs for message in run.messages]


def _events(events: Generator[RunEvent, None, RunOutput]) -> Iterator[RunEvent]:
    output = yield from events
    yield RunEvent(event="completed", output=output)


async def _aevents(items: AsyncIterator[Any]) -> AsyncIterator[RunEvent]:
    async for item in items:
        yield RunEvent(event="completed", output=item.value) if isinstance(item, Done) else item


__all__ = ["Agent", "RunEvent", "RunOutput"]
