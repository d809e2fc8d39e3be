"""Who may use the console: one token, checked on every request, and CSRF for browsers.

``kern serve`` takes the token from ``KERN_CONSOLE_TOKEN`` or makes one and prints it. A
client proves it knows the token in one of two ways, on pages and API alike:

- ``Authorization: Bearer <token>``: scripts, API clients, ``curl``;
- the ``kern_console`` cookie that the login page sets (HttpOnly, SameSite=Strict): the
  browser. It holds an HMAC of the token, so the token itself never sits in the browser.

Every request but the login page and the package's static files is checked (``TokenGate``):
without a valid token the API answers 401 JSON and a page answers 401 with the login form.

A browser sends its cookie by itself, so a POST authenticated by the cookie must also carry
the CSRF value: an HMAC of the token that only pages served to a logged-in browser hold, in
the hidden form field ``csrf`` or the ``X-CSRF-Token`` header (checked by
``kern.console.deps.csrf_checked`` on every POST). A POST with a valid Bearer header and no
cookie is exempt: another site cannot make a browser send that header, so such a request
comes from a client that knows the token. Tokens and derived values are compared with
``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Literal

from starlette.datastructures import Headers
from starlette.requests import Request, cookie_parser
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

#: The environment variable that fixes the token (else one is generated at start).
TOKEN_ENV = "KERN_CONSOLE_TOKEN"
#: A token shorter than this is refused: it would be guessable.
MIN_TOKEN_LENGTH = 16
#: The browser's session cookie.
COOKIE = "kern_console"
#: Where a form carries the CSRF value, and the header that API calls from pages use.
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"

#: How a request proved it knows the token.
Auth = Literal["bearer", "cookie"]


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def _same(given: str, expected: str) -> bool:
    """Constant-time equality, for any text a client may send."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


class Keys:
    """The token and what is derived from it: the cookie value and the CSRF value."""

    def __init__(self, token: str) -> None:
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"the console token must be at least {MIN_TOKEN_LENGTH} characters "
                f"(unset {TOKEN_ENV} and kern serve makes a random one)"
            )
        self.token = token
        self.cookie = self._derive("kern-console-cookie")
        self.csrf = self._derive("kern-console-csrf")

    def _derive(self, purpose: str) -> str:
        return hmac.new(self.token.encode(), purpose.encode(), hashlib.sha256).hexdigest()

    def token_ok(self, given: str | None) -> bool:
        return given is not None and _same(given, self.token)

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and _same(given, self.csrf)

    def authenticate(self, headers: Headers) -> Auth | None:
        """``"bearer"`` or ``"cookie"`` for a request that proves it knows the token."""
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.token_ok(credentials.strip()):
            return "bearer"
        cookie = cookie_parser(headers.get("cookie", "")).get(COOKIE)
        if cookie is not None and _same(cookie, self.cookie):
            return "cookie"
        return None


def is_open(path: str) -> bool:
    """Paths served without a token: the login page and the package's own static files."""
    return path == "/login" or path.startswith("/static/")


class TokenGate:
    """ASGI middleware: every request but ``is_open`` ones proves it knows the token.

    ``refuse`` builds the 401 response (JSON for the API, the login form for a page). The
    way the request authenticated is left in ``request.state.auth`` for ``check_csrf``.
    """

    def __init__(self, app: ASGIApp, keys: Keys, refuse: Callable[[Request], Response]) -> None:
        self.app = app
        self.keys = keys
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        auth = self.keys.authenticate(Headers(scope=scope))
        if auth is None and scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # policy violation
            return
        if auth is None:
            await self.refuse(Request(scope, receive))(scope, receive, send)
            return
        scope.setdefault("state", {})["auth"] = auth
        await self.app(scope, receive, send)


def csrf_needed(request: Request) -> bool:
    """Whether a state-changing request must carry the CSRF value: all but those that
    authenticated with a Bearer header and sent no console cookie."""
    has_cookie = COOKIE in request.cookies
    return getattr(request.state, "auth", None) != "bearer" or has_cookie


async def csrf_value(request: Request) -> str | None:
    """The CSRF value a request carries: its header, else its form field."""
    header = request.headers.get(CSRF_HEADER)
    if header is not None:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin (``Origin``)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.partition("://")[2] == host
