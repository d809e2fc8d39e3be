"""A database that refused kern's login says so, naming the user and host, never the password.

Drivers report a wrong password or an unknown role/user as a connection error, which kern
would otherwise word as "the database is unavailable" (check that the server runs): the
wrong fix. ``login_refused`` recognises the drivers' wording (Postgres/libpq, Redis ACL,
MongoDB's SCRAM) and ``login_error`` builds the ``StorageLoginError`` that says the fix first.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from kern.errors import StorageLoginError

#: What Postgres, Redis and MongoDB drivers say when credentials are refused.
_REFUSED = re.compile(
    r"password authentication failed|role \".*?\" does not exist|no password supplied"
    r"|invalid username-password pair|WRONGPASS|NOAUTH|Authentication required"
    r"|Authentication failed|AuthenticationFailed",
    flags=re.I,
)


def login_refused(exc: BaseException, detail: str) -> bool:
    """Whether ``exc`` (its masked text ``detail``) is the server refusing the credentials."""
    return type(exc).__name__ == "AuthenticationError" or bool(_REFUSED.search(detail))


def login_error(db: Any, target: str, detail: str) -> StorageLoginError:
    """The error for a refused login at ``target`` (a URL whose password is masked)."""
    parts = urlsplit(target)
    user = parts.username or "(none given)"
    host = parts.hostname or "localhost"
    where = f"{host}:{parts.port}" if parts.port else host
    backend = getattr(db, "backend_name", None) or type(db).__name__
    return StorageLoginError(
        f"the {backend} server at {where} refused the login of user {user!r}: fix the user "
        f"name or password in the URL (or create the user/role on the server). ({detail})",
        user=parts.username,
        host=host,
    )
