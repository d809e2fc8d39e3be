"""Where a Mongo db points: checking the URL or client a user gave, and naming the database.

Every mistake is reported as a kern error that names the fix: a URL of another backend, a
sync client given to the async class (or the reverse), Motor instead of pymongo's own async
client, a database or prefix name MongoDB would refuse.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit

from pymongo import AsyncMongoClient, MongoClient
from pymongo.errors import ConfigurationError as PyMongoConfigurationError
from pymongo.errors import InvalidURI

from kern.db.registry import wrong_backend_hint
from kern.errors import ConfigurationError, SyncAsyncMismatchError

SCHEMES = ("mongodb", "mongodb+srv")
DEFAULT_DATABASE = "kern"
DEFAULT_PREFIX = "kern_"

#: Characters MongoDB accepts in a database name on every platform (and nx-27017 in files).
_DATABASE = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_]{0,48}$")


def check_url(db_url: object, *, cls: str) -> str:
    """``db_url`` if it is a ``mongodb://`` or ``mongodb+srv://`` URL; otherwise an error."""
    if not isinstance(db_url, str):
        raise ConfigurationError(
            f"{cls}(db_url=...) needs a URL string such as 'mongodb://localhost:27017/kern', "
            f"not {type(db_url).__name__}."
        )
    scheme, sep, _ = db_url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ConfigurationError(
            f"{cls} could not read db_url as a database URL. Use "
            "mongodb://[user:password@]host[:port]/[database] or mongodb+srv://…"
        )
    if scheme in SCHEMES:
        return db_url
    # The URL itself is not echoed: it may hold a password.
    raise ConfigurationError(
        f"{cls} stores in MongoDB and needs a mongodb:// or mongodb+srv:// URL (e.g. "
        f"mongodb://localhost:27017/kern), not a {scheme}:// one: "
        f"{wrong_backend_hint(scheme, backend='mongo')}."
    )


def url_database(db_url: str) -> str | None:
    """The database named in the URL's path (``mongodb://host/<database>?…``), if any.

    Read without pymongo's parser, which resolves ``mongodb+srv`` hosts over DNS.
    """
    path = urlsplit(db_url).path.lstrip("/")
    return unquote(path) or None


def check_database(name: str, *, cls: str) -> str:
    if not isinstance(name, str) or not _DATABASE.match(name):
        raise ConfigurationError(
            f"{cls}: {name!r} is not a usable database name. Use 1-63 letters, digits, '_' "
            "or '-' (in the URL path, mongodb://host/<database>, or database=...)."
        )
    return name


def check_prefix(prefix: str, *, cls: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise ConfigurationError(
            f"{cls}: collection_prefix {prefix!r} is not usable. Use up to 48 letters, digits "
            "or '_' (the default is 'kern_')."
        )
    return prefix


def exactly_one_target(db_url: object, client: object, *, cls: str) -> None:
    given = [name for name, value in (("db_url", db_url), ("client", client)) if value is not None]
    if len(given) != 1:
        raise ConfigurationError(
            f"{cls} needs exactly one of db_url or client (got {', '.join(given) or 'none'}): "
            f"e.g. {cls}(db_url='mongodb://localhost:27017/kern')."
        )


def _is_motor(client: object) -> bool:
    return type(client).__module__.split(".", 1)[0] == "motor"


def check_sync_client(client: object, *, cls: str) -> MongoClient[Any]:
    """A ``pymongo.MongoClient``; async clients get an error that names the fix."""
    if isinstance(client, MongoClient):
        return client
    if isinstance(client, AsyncMongoClient) or _is_motor(client):
        kind = "a Motor client" if _is_motor(client) else "pymongo.AsyncMongoClient"
        raise SyncAsyncMismatchError(
            f"{cls} is synchronous but got {kind}, which is async. For async code use "
            f"AsyncMongoDb(client=pymongo.AsyncMongoClient(...)) and `await agent.arun(...)`; "
            f"otherwise pass pymongo.MongoClient(...) to {cls}."
        )
    raise ConfigurationError(
        f"{cls}(client=...) needs a pymongo.MongoClient, not {type(client).__name__}."
    )


def check_async_client(client: object, *, cls: str) -> AsyncMongoClient[Any]:
    """A ``pymongo.AsyncMongoClient``; sync and Motor clients get an error naming the fix."""
    if isinstance(client, AsyncMongoClient):
        return client
    if isinstance(client, MongoClient):
        raise SyncAsyncMismatchError(
            f"{cls} is async but got a synchronous pymongo.MongoClient. Pass "
            f"pymongo.AsyncMongoClient(...) to {cls}, or use MongoDb(client=MongoClient(...)) "
            "with agent.run(...)."
        )
    if _is_motor(client):
        raise ConfigurationError(
            f"{cls} runs on pymongo's own async client, not Motor: pass "
            "pymongo.AsyncMongoClient(...) (same URL and options) instead."
        )
    raise ConfigurationError(
        f"{cls}(client=...) needs a pymongo.AsyncMongoClient, not {type(client).__name__}."
    )


def client_database(client: MongoClient[Any] | AsyncMongoClient[Any]) -> str | None:
    """The default database of a client's URL, if it named one."""
    try:
        return client.get_default_database().name
    except PyMongoConfigurationError:
        return None


def build_client(factory: type, db_url: str, *, cls: str) -> Any:
    """``factory(db_url)``, with pymongo's URL errors turned into kern's (no password echoed)."""
    try:
        return factory(db_url)
    except (InvalidURI, PyMongoConfigurationError, ValueError, TypeError) as exc:
        message = str(exc)
        try:
            password = urlsplit(db_url).password
        except ValueError:
            password = None
        if password and password in message:
            message = "the URL is malformed"
        raise ConfigurationError(
            f"{cls} could not use db_url ({message}). Expected "
            "mongodb://[user:password@]host[:port]/[database][?options]."
        ) from None


def url_target(db_url: str, database: str) -> str:
    """``mongodb://[user@]hosts/database`` from ``db_url``: the password and the options
    (which may hold secrets too) left out. For error messages."""
    scheme, _, rest = db_url.partition("://")
    netloc = rest.split("/", 1)[0].split("?", 1)[0]
    userinfo, at, hosts = netloc.rpartition("@")
    user = userinfo.split(":", 1)[0] if at else ""
    return f"{scheme.lower()}://{user + '@' if user else ''}{hosts}/{database}"


def client_target(client: MongoClient[Any] | AsyncMongoClient[Any], database: str) -> str:
    """``mongodb://hosts/database`` for a client given by the user (its seeds), for
    error messages."""
    addresses = client.topology_description.server_descriptions()
    hosts = ",".join(f"{host}:{port}" for host, port in addresses) or "?"
    return f"mongodb://{hosts}/{database}"


def choose_database(database: str | None, from_url: str | None, *, cls: str) -> str:
    """``database=`` if given, else the URL's (or client's) database, else ``"kern"``."""
    return check_database(database or from_url or DEFAULT_DATABASE, cls=cls)
