"""The dependencies routes declare: the db, the learning machine, and the guards on changes.

Every route that changes data declares ``ChangeAllowed`` (the app's test checks that no POST
route lacks a guard): it refuses in read-only mode, refuses a browser POST from another
origin, and checks the CSRF value (``kern.console.auth``). Logging out changes no data, so
it is only ``CsrfChecked`` and works in read-only mode too.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from kern.console.auth import csrf_needed, csrf_value, same_origin
from kern.console.context import READ_ONLY_MESSAGE, console_of
from kern.db.base import AsyncBaseDb
from kern.learn.machine import LearningMachine


async def database(request: Request) -> AsyncBaseDb:
    return await console_of(request).db()


async def learning_machine(request: Request) -> LearningMachine:
    return await console_of(request).machine()


async def csrf_checked(request: Request) -> None:
    """Refuse a cross-origin POST, and a cookie-authenticated one without the CSRF value."""
    if not same_origin(request):
        raise HTTPException(403, "refused: the request comes from another origin")
    if csrf_needed(request) and not console_of(request).keys.csrf_ok(await csrf_value(request)):
        raise HTTPException(
            403,
            "refused: missing or wrong CSRF value (reload the page and try again; API "
            "clients send Authorization: Bearer <token> and no cookie)",
        )


async def change_allowed(request: Request) -> None:
    """``csrf_checked``, and nothing changes in read-only mode (403 saying so)."""
    if console_of(request).read_only:
        raise HTTPException(403, READ_ONLY_MESSAGE)
    await csrf_checked(request)


Db = Annotated[AsyncBaseDb, Depends(database)]
Machine = Annotated[LearningMachine, Depends(learning_machine)]
CsrfChecked = Depends(csrf_checked)
ChangeAllowed = Depends(change_allowed)
