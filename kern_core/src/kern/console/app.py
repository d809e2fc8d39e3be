"""The console as one ASGI app: the pages, the API, the static files, the guards around them.

``create_app(url=..., token=...)`` is what ``kern serve`` runs under uvicorn; tests and
embedders may pass an open async Db instead (``create_app(db=..., token=...)``) and drive
the app in-process. The order of the wrappers, outermost first: security headers on every
response, then the token gate (401 before anything is read), then FastAPI's routing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kern import __version__
from kern.console import api, errors, pages
from kern.console.auth import Keys, TokenGate
from kern.console.context import Console, attach
from kern.console.headers import SecurityHeaders
from kern.db.base import AsyncBaseDb

STATIC = Path(__file__).parent / "static"

#: What a request without the token is told (the API's 401 body).
UNAUTHORIZED = (
    "missing or wrong token: send 'Authorization: Bearer <token>' with the token kern serve "
    "printed (or KERN_CONSOLE_TOKEN), or log in at /login"
)


def _refuse(request: Request) -> Response:
    """The answer to a request without the token: 401 JSON for the API, else 401 with the
    login form (which returns to the page asked for)."""
    if errors.is_api(request):
        return JSONResponse(
            {"detail": UNAUTHORIZED}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )
    return pages.login_form(request, status_code=401)


def create_app(
    *,
    token: str,
    url: str | None = None,
    db: AsyncBaseDb | None = None,
    read_only: bool = False,
) -> FastAPI:
    """The console on the database at ``url`` (opened on first use, closed at shutdown)
    or on ``db`` (left open: it is the caller's)."""
    console = Console(keys=Keys(token), db=db, url=url, read_only=read_only)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            await console.db()  # open it now: a wrong URL fails at start, not on a page
            yield
        finally:
            await console.aclose()

    app = FastAPI(
        title="kern console",
        version=__version__,
        description="What agents remember, and the proposals waiting for approval. Every "
        "request needs the token: 'Authorization: Bearer <token>'.",
        openapi_url="/api/openapi.json",
        docs_url=None,  # the interactive docs load scripts from a CDN
        redoc_url=None,
        lifespan=lifespan,
    )
    attach(app, console)
    errors.install(app)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(TokenGate, keys=console.keys, refuse=_refuse)
    app.add_middleware(SecurityHeaders)
    return app
