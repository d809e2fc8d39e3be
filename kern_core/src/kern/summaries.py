"""Rolling session summaries: what a long session said before its last runs, kept short.

With ``Agent(session_summaries=SessionSummaries(every_runs=5))`` the model rewrites the
session's summary (``Session.summary``, a column every backend stores) from the previous
summary and the runs since, every ``every_runs`` top-level runs, and sooner when the history
outgrew ``max_history_tokens`` and was trimmed. Each turn's context then holds the summary
(a system message) ahead of the last ``num_history_runs`` runs: a fact said in turn 2 of a
40-turn session still reaches the model through the summary.

How it stays correct without anything new in the storage contract:

- *Progress.* The session's metadata holds ``{"kern.summary": {"through_seq": N}}``: the
  summary covers the runs up to ``seq`` N. A turn decides from the session it read and the
  ``seq`` its run got whether a refresh is due, so an idle turn costs nothing.
- *Compare-and-set.* The new summary is written with ``upsert_session(expected_version=the
  version read)``; on a conflict the session is read again and the write retried, unless
  another writer has summarized as far already. A turn's own state write
  (``kern.sessions.commit``) is retried the same way when only the summary moved.
- *Crash safety.* Nothing is marked before the summary is written: a process that dies
  between the answer and the summary leaves ``through_seq`` behind, so the next turn sees
  the refresh is due and makes it, from every run since.
- *Off the answer's path.* ``background=True`` hands the refresh to the driver as a
  ``Detach`` effect (as background learning does, ``kern.learn.background``): a thread of the
  process's pool for ``run``, a task of the loop for ``arun``. ``wait()`` /
  ``await await_pending()`` wait for it.

The refresh is a turn generator (``kern.effects``), so sync and async run the same code.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from kern import storage
from kern.effects import ModelCall, Turn
from kern.errors import ConfigurationError, VersionConflictError
from kern.learn.background import Jobs, detach
from kern.models import get_model
from kern.models.base import Model
from kern.records import Message, Run, RunStatus, Session

log = logging.getLogger("kern.summaries")

#: The session metadata key holding the summary's progress.
SUMMARY_KEY = "kern.summary"
#: The first words of the summary prompt (the scripted test model answers it by them).
SUMMARY_MARKER = "[kern session summary]"
#: Most runs one refresh reads (the newest, when a session fell further behind).
MAX_RUNS = 50
#: Characters of one message a refresh shows the model.
MAX_MESSAGE_CHARS = 2000
#: Writes a refresh tries before it leaves the summary to the next turn.
WRITE_ATTEMPTS = 3

SYSTEM_PROMPT = (
    SUMMARY_MARKER + " You keep the running summary of a conversation between a user and "
    "an assistant. Write the new summary from the previous summary and the new turns: the "
    "facts the user stated (about themselves, their goals, their decisions), what was "
    "agreed or done, and open questions. Keep every fact of the previous summary that is "
    "still true. Plain sentences, at most {max_words} words. Answer with the summary only."
)


@dataclass
class SessionSummaries:
    """How an agent keeps its sessions' rolling summaries (``Agent(session_summaries=...)``).

    ``every_runs``: refresh after this many top-level runs since the last summary.
    ``background``: refresh after the answer is out, off the turn's path.
    ``model``: the model that writes summaries (default: the agent's).
    ``max_words``: the length the model is asked to keep the summary under.
    """

    every_runs: int = 5
    background: bool = False
    model: Model | str | None = None
    max_words: int = 250
    jobs: Jobs = field(default_factory=Jobs, repr=False, compare=False)
    _busy: set[str] = field(default_factory=set, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.every_runs, int) or self.every_runs < 1:
            raise ConfigurationError(
                f"SessionSummaries(every_runs={self.every_runs!r}): pass a whole number of "
                "runs, 1 or more (e.g. every_runs=5)"
            )
        if not isinstance(self.max_words, int) or self.max_words < 20:
            raise ConfigurationError(
                f"SessionSummaries(max_words={self.max_words!r}): pass 20 or more"
            )

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for background refreshes run on threads (``agent.run``); True if none is left."""
        return self.jobs.wait(timeout)

    async def await_pending(self, timeout: float | None = None) -> bool:
        """Wait for background refreshes of this loop and of threads; True if none is left."""
        return await self.jobs.await_pending(timeout)

    def _hold(self, session_id: str) -> bool:
        with self._lock:
            if session_id in self._busy:
                return False
            self._busy.add(session_id)
            return True

    def _release(self, session_id: str) -> None:
        with self._lock:
            self._busy.discard(session_id)


def summaries_option(value: object) -> SessionSummaries | None:
    """``Agent(session_summaries=...)``: True (the defaults), a ``SessionSummaries``, or off."""
    if value is None or value is False:
        return None
    if value is True:
        return SessionSummaries()
    if not isinstance(value, SessionSummaries):
        raise ConfigurationError(
            f"session_summaries must be True or SessionSummaries(...), not {type(value).__name__}"
        )
    return value


def through_seq(session: Session | None) -> int:
    """The last ``seq`` the session's summary covers (0: no summary yet)."""
    if session is None:
        return 0
    progress = session.metadata.get(SUMMARY_KEY)
    seq = progress.get("through_seq") if isinstance(progress, dict) else None
    return seq if isinstance(seq, int) else 0


def summary_message(session: Session | None) -> list[Message]:
    """The summary as the system message put ahead of the last runs (none if no summary)."""
    if session is None or not session.summary:
        return []
    return [
        Message(
            role="system",
            content="Summary of this conversation before the messages that follow:\n"
            + session.summary,
        )
    ]


def after_turn(
    summaries: SessionSummaries, model: Model, read: Session | None, run: Run, trimmed: bool
) -> Turn[None]:
    """In the turn, after its run is stored: refresh the summary if due (now or detached).

    ``read`` is the session as the turn read it (None for a new one), ``trimmed`` whether
    the budget left history out. Due: ``every_runs`` runs may have passed since the summary
    (the run's ``seq`` tells, with no read), or history was trimmed."""
    done = through_seq(read)
    if run.seq is None or (not trimmed and run.seq - done < summaries.every_runs):
        return
    if not summaries._hold(run.session_id):
        return  # a refresh of this session is already under way in this process
    writer = get_model(summaries.model) if summaries.model is not None else model
    job = _guarded(summaries, run.session_id, refresh(summaries, writer, run.session_id, trimmed))
    if summaries.background:
        yield from detach(job, summaries.jobs)
    else:
        yield from job


def _guarded(summaries: SessionSummaries, session_id: str, job: Turn[object]) -> Turn[None]:
    """A refresh whose failure is logged, never raised: the turn is stored, and the next
    turn finds the refresh still due."""
    try:
        yield from job
    except Exception:
        log.warning(
            "the summary of session %s was not refreshed; the next turn retries",
            session_id,
            exc_info=True,
        )
    finally:
        summaries._release(session_id)


def refresh(
    summaries: SessionSummaries, model: Model, session_id: str, force: bool = False
) -> Turn[Session | None]:
    """Rewrite the session's summary from the runs since it, if ``every_runs`` of them
    are stored (or any, with ``force``); the session as stored after."""
    session = yield from storage.get_session(session_id)
    if session is None:
        return None
    runs = yield from runs_since(session_id, through_seq(session))
    if not runs or (not force and len(runs) < summaries.every_runs):
        return session
    prompt = summary_prompt(session.summary, runs, summaries.max_words)
    response = yield from ModelCall(model, prompt, [], quiet=True)
    text = (response.content or "").strip()
    if not text:
        log.warning("the model wrote an empty summary for session %s; kept the old", session_id)
        return session
    last = runs[-1].seq or 0
    for _ in range(WRITE_ATTEMPTS):
        progress = {**session.metadata, SUMMARY_KEY: {"through_seq": last}}
        updated = session.model_copy(update={"summary": text, "metadata": progress})
        try:
            return (yield from storage.upsert_session(updated, expected_version=session.version))
        except VersionConflictError:
            current = yield from storage.get_session(session_id)
            if current is None or through_seq(current) >= last:
                return current  # deleted, or summarized as far by another writer
            session = current
    log.info("the summary of session %s kept conflicting; the next turn retries", session_id)
    return session


def runs_since(session_id: str, seq: int, limit: int = MAX_RUNS) -> Turn[list[Run]]:
    """The session's completed top-level runs after ``seq``, oldest first (the newest
    ``limit`` of them), read a page at a time through the ``(session_id, seq)`` index."""
    found: list[Run] = []
    before: int | None = None
    while len(found) < limit:
        page = yield from storage.get_last_runs(
            session_id,
            min(limit - len(found), 20),
            before_seq=before,
            top_level_only=True,
            status=RunStatus.COMPLETED,
        )
        newer = [run for run in page if (run.seq or 0) > seq]
        found[:0] = newer
        if len(newer) < len(page) or not page or page[0].seq is None:
            break
        before = page[0].seq
    return found


def summary_prompt(previous: str | None, runs: Sequence[Run], max_words: int) -> list[Message]:
    """The messages that ask the model for the new summary."""
    lines: list[str] = []
    for run in runs:
        said = run.input if isinstance(run.input, str) else _first(run.messages, "user")
        answer = run.output if isinstance(run.output, str) else _last(run.messages, "assistant")
        lines.append(f"User: {_cut(said)}")
        if answer:
            lines.append(f"Assistant: {_cut(answer)}")
    body = f"Previous summary:\n{previous or '(none yet)'}\n\nNew turns:\n" + "\n".join(lines)
    return [
        Message(role="system", content=SYSTEM_PROMPT.format(max_words=max_words)),
        Message(role="user", content=body),
    ]


def _first(messages: Sequence[Message], role: str) -> str:
    return next((m.content or "" for m in messages if m.role == role), "")


def _last(messages: Sequence[Message], role: str) -> str:
    return next((m.content or "" for m in reversed(messages) if m.role == role), "")


def _cut(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


__all__ = [
    "SUMMARY_KEY",
    "SUMMARY_MARKER",
    "SessionSummaries",
    "after_turn",
    "refresh",
    "runs_since",
    "summaries_option",
    "summary_message",
    "summary_prompt",
    "through_seq",
]
