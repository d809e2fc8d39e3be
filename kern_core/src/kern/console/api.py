"""The HTTP JSON API under ``/api``, described by the OpenAPI document at ``/api/openapi.json``.

Reads: health, sessions (by user and type, offset-paginated), one session with a page of
its runs (``before_seq`` cursor, nested runs under their parent), a user's profile and
memories (``q`` ranks them as a turn's recall does), learnings by kind, status, user and
namespace, and the queue of proposals. Changes are POSTs guarded by ``ChangeAllowed``:
approve or reject a proposal, forget a user. Records come back as kern stores them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, JsonValue

from kern import __version__
from kern.console.context import console_of
from kern.console.deps import ChangeAllowed, Db, Machine
from kern.db.base import AsyncBaseDb
from kern.learn.machine import LearningMachine
from kern.performers import arun_turn
from kern.reading import (
    MAX_RUN_PAGE,
    RUN_PAGE,
    RunPage,
    learnings_page,
    sessions_page,
    transcript_page,
)
from kern.records import Learning, LearningStatus, Memory, Session, SessionType

router = APIRouter(prefix="/api")

Limit = Annotated[int, Query(ge=1, le=500, description="at most this many rows")]
Offset = Annotated[int, Query(ge=0, description="skip the first rows")]


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    backend: str
    read_only: bool


class SessionList(BaseModel):
    """A page of sessions, newest updated first; ``next_offset`` reads the next one."""

    sessions: list[Session]
    next_offset: int | None


class MemoryHit(BaseModel):
    """A memory, with its score when it was ranked for a query."""

    memory: Memory
    score: float | None = None


class MemoryList(BaseModel):
    user_id: str
    query: str | None
    memories: list[MemoryHit]
    next_offset: int | None


class LearningList(BaseModel):
    learnings: list[Learning]
    next_offset: int | None


class Profile(BaseModel):
    user_id: str
    profile: dict[str, JsonValue] | None


class Decision(BaseModel):
    """What approving or rejecting stored: a memory for a user memory, else a learning."""

    action: Literal["approved", "rejected"]
    learning_id: str
    memory: Memory | None = None
    learning: Learning | None = None


class ForgetReceipt(BaseModel):
    """The rows deleted per table (``sessions``, ``runs``, ``memories``, ``learnings``)."""

    user_id: str
    deleted: dict[str, int]
    total: int


def _next(offset: int, limit: int, more: bool) -> int | None:
    return offset + limit if more else None


@router.get("/health", response_model=Health)
async def health(request: Request, db: Db) -> Health:
    """The console is up and its database is open."""
    return Health(
        status="ok",
        version=__version__,
        backend=db.backend_name,
        read_only=console_of(request).read_only,
    )


@router.get("/sessions", response_model=SessionList)
async def list_sessions(
    db: Db,
    user_id: str | None = None,
    session_type: SessionType | None = None,
    limit: Limit = 20,
    offset: Offset = 0,
) -> SessionList:
    """Sessions, newest updated first (background-learning markers hidden)."""
    rows, more = await arun_turn(
        sessions_page(user_id=user_id, session_type=session_type, limit=limit, offset=offset),
        db,
    )
    return SessionList(sessions=rows, next_offset=_next(offset, limit, more))


@router.get("/sessions/{session_id:path}", response_model=RunPage)
async def get_session(
    db: Db,
    session_id: str,
    limit: Annotated[int, Query(ge=1, le=MAX_RUN_PAGE)] = RUN_PAGE,
    before_seq: Annotated[int | None, Query(ge=1, description="runs older than this")] = None,
) -> RunPage:
    """The session and the newest page of its runs (``before_seq``: the page before it;
    the response's ``older`` is the cursor of the next older page)."""
    page = await arun_turn(transcript_page(session_id, limit=limit, before_seq=before_seq), db)
    if page is None:
        raise HTTPException(404, f"no session {session_id!r} is stored")
    return page


@router.get("/users/{user_id:path}/profile", response_model=Profile)
async def get_profile(machine: Machine, user_id: str) -> Profile:
    """The user's active profile fields (``null``: none)."""
    return Profile(user_id=user_id, profile=await machine.aget_user_profile(user_id))


@router.get("/users/{user_id:path}/memories", response_model=MemoryList)
async def list_memories(
    db: Db,
    machine: Machine,
    user_id: str,
    q: Annotated[str | None, Query(description="rank the memories for this text")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> MemoryList:
    """The user's memories, newest first; with ``q``, the best ``limit`` ranked as a turn's
    recall ranks them (``offset`` does not apply to a search)."""
    if q is not None and q.strip():
        found = await machine.asearch_memories(user_id, q, limit)
        hits = [MemoryHit(memory=s.memory, score=s.score) for s in found]
        return MemoryList(user_id=user_id, query=q, memories=hits, next_offset=None)
    rows = await db.list_memories(user_id, limit=limit + 1, offset=offset)
    return MemoryList(
        user_id=user_id,
        query=None,
        memories=[MemoryHit(memory=m) for m in rows[:limit]],
        next_offset=_next(offset, limit, len(rows) > limit),
    )


@router.get("/learnings", response_model=LearningList)
async def list_learnings(
    db: Db,
    kind: str | None = None,
    status: LearningStatus | None = None,
    user_id: str | None = None,
    namespace: str | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> LearningList:
    """Learnings matching every filter given, newest updated first."""
    rows, more = await arun_turn(
        learnings_page(
            kind=kind,
            status=status,
            user_id=user_id,
            namespace=namespace,
            limit=limit,
            offset=offset,
        ),
        db,
    )
    return LearningList(learnings=rows, next_offset=_next(offset, limit, more))


@router.get("/proposals", response_model=LearningList)
async def list_proposals(
    db: Db,
    kind: str | None = None,
    user_id: str | None = None,
    namespace: str | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> LearningList:
    """Learnings waiting for a decision (status ``proposed``), newest first."""
    return await list_learnings(
        db,
        kind=kind,
        status=LearningStatus.PROPOSED,
        user_id=user_id,
        namespace=namespace,
        limit=limit,
        offset=offset,
    )


async def decide(machine: LearningMachine, learning_id: str, approve: bool) -> Decision:
    """Approve or reject through the learning machine (as ``lm.approve`` does)."""
    if approve:
        stored = await machine.aapprove(learning_id)
        if isinstance(stored, Memory):
            return Decision(action="approved", learning_id=learning_id, memory=stored)
        return Decision(action="approved", learning_id=learning_id, learning=stored)
    rejected = await machine.areject(learning_id)
    return Decision(action="rejected", learning_id=learning_id, learning=rejected)


@router.post(
    "/proposals/{learning_id:path}/approve",
    response_model=Decision,
    dependencies=[ChangeAllowed],
    responses={403: {"description": "read-only, or CSRF"}, 404: {}, 409: {}},
)
async def approve(machine: Machine, learning_id: str) -> Decision:
    """Approve a proposal: it becomes active and is recalled from the next turn on."""
    return await decide(machine, learning_id, True)


@router.post(
    "/proposals/{learning_id:path}/reject",
    response_model=Decision,
    dependencies=[ChangeAllowed],
    responses={403: {"description": "read-only, or CSRF"}, 404: {}, 409: {}},
)
async def reject(machine: Machine, learning_id: str) -> Decision:
    """Reject a proposal: it is kept as ``rejected`` and never recalled."""
    return await decide(machine, learning_id, False)


@router.post(
    "/users/{user_id:path}/forget",
    response_model=ForgetReceipt,
    dependencies=[ChangeAllowed],
    responses={403: {"description": "read-only, or CSRF"}},
)
async def forget(db: Db, user_id: str) -> ForgetReceipt:
    """Delete every row holding the user's data; the receipt counts them per table."""
    return await forget_user(db, user_id)


async def forget_user(db: AsyncBaseDb, user_id: str) -> ForgetReceipt:
    deleted = await db.forget_user(user_id)
    return ForgetReceipt(user_id=user_id, deleted=deleted, total=sum(deleted.values()))
