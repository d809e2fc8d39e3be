"""The console's pages: sessions, a transcript, a user, the proposals queue, forgetting.

Plain HTML forms do everything (``static/console.js`` only saves a reload when approving
or rejecting); every change is a POST guarded by ``ChangeAllowed``, whose forms carry the
CSRF value, and each answers with a redirect (303) or a receipt page. In read-only mode the
buttons are not shown and the POSTs are refused.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.responses import HTMLResponse

from kern.console.api import decide, forget_user
from kern.console.auth import COOKIE
from kern.console.context import console_of
from kern.console.deps import ChangeAllowed, CsrfChecked, Db, Machine
from kern.console.render import id_path, page
from kern.performers import arun_turn
from kern.reading import (
    MAX_RUN_PAGE,
    RUN_PAGE,
    learnings_page,
    newest_seq,
    sessions_page,
    transcript_page,
)
from kern.records import LearningStatus, Memory, SessionType

router = APIRouter(include_in_schema=False)

SESSIONS_PER_PAGE = 25
MEMORIES_PER_PAGE = 50
LEARNINGS_PER_PAGE = 50
PROPOSALS_PER_PAGE = 50
#: Where a login goes when it was asked for no page in particular.
HOME = "/sessions"


def local_path(target: str | None) -> str:
    """``target`` if it is a path on this server, else the home page: a login never
    redirects to another site (``//host``, ``/\\host``, or ``/<tab>/host``, which browsers
    read as ``//host``)."""
    if (
        not target
        or not target.startswith("/")
        or target[1:2] == "/"
        or any(ord(char) <= 0x20 or char in "\\\x7f" for char in target)
    ):
        return HOME
    return target


def login_form(request: Request, *, status_code: int, error: str = "") -> HTMLResponse:
    """The login page; for a refused page request, it returns there after login."""
    path = quote(request.url.path, safe="/")
    target = path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET" or request.url.path == "/login":
        target = request.query_params.get("next") or HOME
    return page(request, "login.html", status_code, next=local_path(target), error=error)


# -- logging in -------------------------------------------------------------------------
@router.get("/login")
async def login_page(request: Request) -> Response:
    return login_form(request, status_code=200)


@router.post("/login")
async def login(
    request: Request,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = HOME,
) -> Response:
    """Check the token; set the session cookie (HttpOnly, SameSite=Strict)."""
    keys = console_of(request).keys
    if not keys.token_ok(token):
        return page(
            request,
            "login.html",
            401,
            next=local_path(next),
            error="That is not the console's token.",
        )
    response = RedirectResponse(local_path(next), status_code=303)
    response.set_cookie(COOKIE, keys.cookie, httponly=True, samesite="strict", path="/")
    return response


@router.post("/logout", dependencies=[CsrfChecked])
async def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


# -- reading ----------------------------------------------------------------------------
@router.get("/")
async def home() -> Response:
    return RedirectResponse(HOME, status_code=303)


@router.get("/sessions")
async def sessions(
    request: Request,
    db: Db,
    user: str = "",
    type: str = "",
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    session_type = SessionType(type) if type in set(SessionType) else None
    rows, more = await arun_turn(
        sessions_page(
            user_id=user or None,
            session_type=session_type,
            limit=SESSIONS_PER_PAGE,
            offset=offset,
        ),
        db,
    )
    return page(
        request,
        "sessions.html",
        sessions=rows,
        user=user,
        type=session_type.value if session_type else "",
        types=[t.value for t in SessionType],
        offset=offset,
        per_page=SESSIONS_PER_PAGE,
        more=more,
    )


@router.get("/sessions/{session_id:path}")
async def transcript(
    request: Request,
    db: Db,
    session_id: str,
    before: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RUN_PAGE)] = RUN_PAGE,
) -> Response:
    found = await arun_turn(transcript_page(session_id, limit=limit, before_seq=before), db)
    if found is None:
        raise HTTPException(404, f"no session {session_id!r} is stored")
    newest = newest_seq(found.runs)
    newer = newest + 1 + limit if before is not None and newest is not None else None
    return page(
        request,
        "session.html",
        session_id=session_id,
        session=found.session,
        runs=found.runs,
        older=found.older,
        newer=newer,
        before=before,
        limit=limit,
    )


@router.get("/users")
async def find_user(id: str = "") -> Response:
    """The user lookup form of every page."""
    return RedirectResponse(f"/users/{id_path(id)}" if id else HOME, status_code=303)


@router.get("/users/{user_id:path}")
async def user(
    request: Request,
    db: Db,
    machine: Machine,
    user_id: str,
    q: str = "",
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    profile = await machine.aget_user_profile(user_id)
    memories: list[tuple[Memory, float | None]]
    if q.strip():
        hits = await machine.asearch_memories(user_id, q, MEMORIES_PER_PAGE)
        memories = [(hit.memory, hit.score) for hit in hits]
        more = False
    else:
        rows = await db.list_memories(user_id, limit=MEMORIES_PER_PAGE + 1, offset=offset)
        memories = [(memory, None) for memory in rows[:MEMORIES_PER_PAGE]]
        more = len(rows) > MEMORIES_PER_PAGE
    learnings, more_learnings = await arun_turn(
        learnings_page(user_id=user_id, limit=LEARNINGS_PER_PAGE, offset=0), db
    )
    return page(
        request,
        "user.html",
        user_id=user_id,
        profile=profile,
        q=q,
        memories=memories,
        offset=offset,
        per_page=MEMORIES_PER_PAGE,
        more=more,
        learnings=learnings,
        more_learnings=more_learnings,
    )


@router.get("/proposals")
async def proposals(
    request: Request,
    db: Db,
    user: str = "",
    kind: str = "",
    offset: Annotated[int, Query(ge=0)] = 0,
    approved: str = "",
    rejected: str = "",
) -> Response:
    rows, more = await arun_turn(
        learnings_page(
            kind=kind or None,
            status=LearningStatus.PROPOSED,
            user_id=user or None,
            limit=PROPOSALS_PER_PAGE,
            offset=offset,
        ),
        db,
    )
    return page(
        request,
        "proposals.html",
        proposals=rows,
        user=user,
        kind=kind,
        offset=offset,
        per_page=PROPOSALS_PER_PAGE,
        more=more,
        approved=approved,
        rejected=rejected,
    )


# -- changing ---------------------------------------------------------------------------
@router.post("/proposals/{learning_id:path}/approve", dependencies=[ChangeAllowed])
async def approve(machine: Machine, learning_id: str) -> Response:
    await decide(machine, learning_id, True)
    return RedirectResponse(f"/proposals?approved={id_path(learning_id)}", status_code=303)


@router.post("/proposals/{learning_id:path}/reject", dependencies=[ChangeAllowed])
async def reject(machine: Machine, learning_id: str) -> Response:
    await decide(machine, learning_id, False)
    return RedirectResponse(f"/proposals?rejected={id_path(learning_id)}", status_code=303)


@router.get("/forget/{user_id:path}")
async def forget_page(request: Request, user_id: str) -> Response:
    return page(request, "forget.html", user_id=user_id, error="")


@router.post("/forget/{user_id:path}", dependencies=[ChangeAllowed])
async def forget(
    request: Request, db: Db, user_id: str, confirm: Annotated[str, Form()] = ""
) -> Response:
    """Forget the user once its id was typed again; the receipt counts the rows."""
    if confirm != user_id:
        return page(
            request,
            "forget.html",
            400,
            user_id=user_id,
            error="The id typed does not match: nothing was deleted.",
        )
    receipt = await forget_user(db, user_id)
    return page(request, "forgotten.html", receipt=receipt)
