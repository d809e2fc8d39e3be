"""Errors as answers: JSON ``{"detail": ...}`` under ``/api``, an HTML page elsewhere.

kern's own errors keep their message (it names the problem and the fix) and get the status
that fits: an unknown proposal is 404, one decided already 409, a bad id or text 400, an
unreachable database 503.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from kern.console.render import page
from kern.errors import (
    InvalidIdError,
    InvalidTextError,
    KernError,
    RunNotFoundError,
    SessionNotFoundError,
    StorageUnavailableError,
)
from kern.learn.base import LearningNotFoundError, NotProposedError

#: The status of each kern error a request can meet (the first match wins).
STATUS: tuple[tuple[type[KernError], int], ...] = (
    (LearningNotFoundError, 404),
    (SessionNotFoundError, 404),
    (RunNotFoundError, 404),
    (NotProposedError, 409),
    (InvalidIdError, 400),
    (InvalidTextError, 400),
    (StorageUnavailableError, 503),
)


def is_api(request: Request) -> bool:
    return request.url.path == "/api" or request.url.path.startswith("/api/")


def answer(
    request: Request, status: int, detail: Any, headers: dict[str, str] | None = None
) -> Response:
    if is_api(request):
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)
    message = detail if isinstance(detail, str) else "the request is not valid"
    return page(request, "error.html", status, status=status, message=message)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return answer(request, exc.status_code, exc.detail, getattr(exc, "headers", None))


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": e.get("loc"), "msg": e.get("msg")} for e in exc.errors()]
    return answer(request, 422, errors)


async def _kern_error(request: Request, exc: Exception) -> Response:
    status = next((code for kind, code in STATUS if isinstance(exc, kind)), 500)
    return answer(request, status, str(exc))


def install(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(KernError, _kern_error)
