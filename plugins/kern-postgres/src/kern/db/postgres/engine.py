"""Which URLs and engines the Postgres classes take, and the engines they build.

kern runs Postgres on psycopg 3 only: ``postgresql://`` and ``postgresql+psycopg://`` (and
the ``postgres://`` spelling of hosted services) select its sync driver for ``PostgresDb``;
``postgresql+psycopg_async://`` its async driver for ``AsyncPostgresDb``. A URL or engine of
the wrong flavour is refused here, at construction, with the fix in the message, instead of
failing later inside SQLAlchemy (``MissingGreenlet`` for a sync engine driven from async
code, ``AsyncContextNotStarted``-style misuse for an async engine driven from sync code).

Several hosts. ``postgresql://user@h1:5432,h2:5433/db?target_session_attrs=read-write`` (libpq's
spelling) names hosts to try in order, e.g. a primary and its standby. SQLAlchemy cannot
parse that netloc, so it is rewritten here into the query form its psycopg dialect hands to
libpq (``?host=h1,h2&port=5432,5433``), and ``shown`` writes it back as it was given.

URLs are never echoed whole in messages: they may hold a password.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from kern.db.registry import wrong_backend_hint
from kern.errors import ConfigurationError, SyncAsyncMismatchError

SYNC_DRIVER = "psycopg"
ASYNC_DRIVER = "psycopg_async"
SYNC_SCHEME = f"postgresql+{SYNC_DRIVER}"
ASYNC_SCHEME = f"postgresql+{ASYNC_DRIVER}"
#: Drivers that only work from async code, and those that only work from sync code.
_ASYNC_ONLY = frozenset({ASYNC_DRIVER, "asyncpg"})
_SYNC_ONLY = frozenset({SYNC_DRIVER, "psycopg2", "psycopg2cffi", "pg8000"})

#: What every engine kern builds gets unless ``engine_kwargs`` says otherwise. No
#: ``pool_pre_ping``: its round trip per checkout is replaced by ``kern.db.postgres.failover``
#: (dead connections found at checkout without one, and a retry where it is safe).
ENGINE_DEFAULTS: dict[str, Any] = {}

_SCHEMA_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def check_schema(schema: str | None) -> str | None:
    """Refuse schema names that are not plain identifiers (they end up in DDL text)."""
    if schema is None:
        return None
    if not isinstance(schema, str) or not _SCHEMA_RE.match(schema):
        raise ConfigurationError(
            f"schema {schema!r} is not usable: use letters, digits and underscores, starting "
            "with a letter or underscore (at most 63 characters), e.g. schema='kern'."
        )
    return schema


#: scheme, netloc (``user:password@hosts``) and the rest of a URL written as a string.
_URL_PARTS = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9_+.-]*)://(?P<netloc>[^/?#]*)(?P<rest>.*)$", re.S
)
_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]*))(?::(?P<port>\d*))?$")


def _several_hosts(raw: str, cls: str) -> URL | None:
    """``scheme://user@h1:p1,h2:p2/db?…`` as a URL with the hosts and ports in its query
    (``host=h1,h2&port=p1,p2``, which SQLAlchemy's psycopg dialect gives libpq); None if
    ``raw`` names one host."""
    parts = _URL_PARTS.match(raw)
    if parts is None:
        return None
    userinfo, at, hostlist = parts["netloc"].rpartition("@")
    if "," not in hostlist:
        return None
    hosts: list[str] = []
    ports: list[str] = []
    for item in hostlist.split(","):
        found = _HOST_PORT.match(item)
        host = unquote(found["v6"] or found["host"] or "") if found else ""
        if found is None or not host:
            raise ConfigurationError(
                f"{cls} could not read the host list of db_url: every host needs a name, "
                "e.g. postgresql://user@db1:5432,db2:5432/app?target_session_attrs=read-write."
            )
        hosts.append(host)
        ports.append(found["port"] or "")
    url = make_url(f"{parts['scheme']}://{userinfo}{at}{parts['rest']}")
    if "host" in url.query or "port" in url.query:
        raise ConfigurationError(
            f"{cls} got hosts both in db_url's host part and in its query (?host=, ?port=): "
            "give them in one place, e.g. postgresql://user@db1:5432,db2:5432/app."
        )
    query = {"host": ",".join(hosts), **({"port": ",".join(ports)} if any(ports) else {})}
    return url.update_query_dict(query)


def _parse(db_url: str | URL, cls: str) -> URL:
    try:
        several = _several_hosts(db_url, cls) if isinstance(db_url, str) else None
        url = several if several is not None else make_url(db_url)
    except (ArgumentError, ValueError):
        raise ConfigurationError(
            f"{cls} could not read db_url as a database URL. Use "
            "postgresql://user:password@host:5432/database (several hosts: "
            "postgresql://user:password@host1:5432,host2:5432/database)."
        ) from None
    backend = url.get_backend_name()
    if backend == "postgres":  # the spelling of Heroku & co., which SQLAlchemy dropped
        url = url.set(drivername="postgresql" + url.drivername[len("postgres") :])
    elif backend != "postgresql":
        raise wrong_backend(cls, url.drivername)
    return url


def sync_url(db_url: str | URL, *, cls: str = "PostgresDb") -> URL:
    """``db_url`` as the psycopg 3 sync URL ``PostgresDb`` connects with."""
    url = _parse(db_url, cls)
    driver = url.get_driver_name() if "+" in url.drivername else None
    if driver in _ASYNC_ONLY:
        raise SyncAsyncMismatchError(
            f"{cls} is synchronous but got an async URL ({url.drivername}://): SQLAlchemy "
            "cannot drive an async driver from sync code. Use AsyncPostgresDb(db_url="
            f"'{ASYNC_SCHEME}://…') in async code, or give {cls} a sync URL: "
            "postgresql://… or postgresql+psycopg://…"
        )
    if driver not in (None, SYNC_DRIVER):
        raise _other_driver(cls, url.drivername, SYNC_SCHEME)
    return url.set(drivername=SYNC_SCHEME)


def async_url(db_url: str | URL, *, cls: str = "AsyncPostgresDb") -> URL:
    """``db_url`` as the psycopg 3 async URL ``AsyncPostgresDb`` connects with."""
    url = _parse(db_url, cls)
    driver = url.get_driver_name() if "+" in url.drivername else None
    if driver is None or driver in _SYNC_ONLY:
        raise SyncAsyncMismatchError(
            f"{cls} is asynchronous but got a sync URL ({url.drivername}://): a sync engine "
            "under an async class is the mix-up SQLAlchemy reports as MissingGreenlet. Use "
            f"{cls}(db_url='{ASYNC_SCHEME}://user:pass@host:5432/db') (SQLAlchemy's async "
            "engine on psycopg 3), or PostgresDb for sync code."
        )
    if driver != ASYNC_DRIVER:
        raise _other_driver(cls, url.drivername, ASYNC_SCHEME)
    return url


def sync_engine(engine: Any, *, cls: str = "PostgresDb") -> Engine:
    """Check a user's engine for ``PostgresDb``: a sync SQLAlchemy engine on psycopg 3."""
    if isinstance(engine, AsyncEngine):
        raise SyncAsyncMismatchError(
            f"{cls} is synchronous but got an async engine (create_async_engine): the mix-up "
            "behind SQLAlchemy's AsyncContextNotStarted errors. Give it "
            f"AsyncPostgresDb(engine=...) in async code, or pass {cls} a sync engine: "
            f"create_engine('{SYNC_SCHEME}://…')."
        )
    if not isinstance(engine, Engine):
        raise ConfigurationError(
            f"{cls}(engine=...) needs a SQLAlchemy Engine (sqlalchemy.create_engine), not "
            f"{type(engine).__name__}."
        )
    _check_dialect(engine, cls)
    if engine.dialect.is_async:
        raise SyncAsyncMismatchError(
            f"{cls} got a sync Engine built on an async driver ({engine.url.drivername}): "
            f"it would fail with MissingGreenlet. Use create_engine('{SYNC_SCHEME}://…') for "
            f"{cls}, or AsyncPostgresDb(engine=create_async_engine('{ASYNC_SCHEME}://…'))."
        )
    if engine.dialect.driver != SYNC_DRIVER:
        raise _other_driver(cls, engine.url.drivername, SYNC_SCHEME)
    return engine


def async_engine(engine: Any, *, cls: str = "AsyncPostgresDb") -> AsyncEngine:
    """Check a user's engine for ``AsyncPostgresDb``: an ``AsyncEngine`` on psycopg 3."""
    if isinstance(engine, Engine):
        raise SyncAsyncMismatchError(
            f"{cls} is asynchronous but got a sync engine (create_engine): the mix-up "
            "SQLAlchemy reports as MissingGreenlet. Use SQLAlchemy's async engine: "
            f"{cls}(engine=create_async_engine('{ASYNC_SCHEME}://…')), or give the sync "
            "engine to PostgresDb."
        )
    if not isinstance(engine, AsyncEngine):
        raise ConfigurationError(
            f"{cls}(engine=...) needs a SQLAlchemy AsyncEngine "
            f"(sqlalchemy.ext.asyncio.create_async_engine), not {type(engine).__name__}."
        )
    _check_dialect(engine.sync_engine, cls)
    if engine.dialect.driver != SYNC_DRIVER:  # psycopg's async dialect is named "psycopg" too
        raise _other_driver(cls, engine.url.drivername, ASYNC_SCHEME)
    return engine


def build_sync_engine(url: URL, engine_kwargs: dict[str, Any] | None) -> Engine:
    return create_engine(url, **{**ENGINE_DEFAULTS, **(engine_kwargs or {})})


def build_async_engine(url: URL, engine_kwargs: dict[str, Any] | None) -> AsyncEngine:
    return create_async_engine(url, **{**ENGINE_DEFAULTS, **(engine_kwargs or {})})


def shown(url: URL) -> str:
    """The URL with its password masked, for ``repr`` and messages; several hosts are
    written back into the host part (``postgresql+psycopg://u:***@h1:5432,h2:5433/db``)."""
    hosts = _query_hosts(url)
    if hosts is None:
        return url.render_as_string(hide_password=True)
    rest = {key: value for key, value in url.query.items() if key not in ("host", "port")}
    bare = url.set(host=None, port=None, query=rest).render_as_string(hide_password=True)
    scheme, _, tail = bare.partition("://")
    slash = tail.find("/")
    slash = len(tail) if slash < 0 else slash  # the username and password are %-escaped
    hostlist = ",".join(
        (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
        for host, port in hosts
    )
    return f"{scheme}://{tail[:slash]}{hostlist}{tail[slash:]}"


def _query_hosts(url: URL) -> list[tuple[str, str]] | None:
    """The (host, port) pairs of a URL naming several network hosts in its query (either of
    SQLAlchemy's spellings); None otherwise (one host, or Unix socket folders)."""
    given = url.query.get("host")
    if url.host is not None or given is None:
        return None
    if isinstance(given, str):
        hosts = given.split(",")
        port = url.query.get("port", "")
        ports = (port if isinstance(port, str) else ",".join(port)).split(",")
        ports = ports if len(ports) == len(hosts) else [""] * len(hosts)
        pairs = list(zip(hosts, ports, strict=True))
    else:  # host=h1:p1&host=h2:p2
        pairs = [
            (token.rpartition(":")[0], token.rpartition(":")[2]) if ":" in token else (token, "")
            for token in given
        ]
    if len(pairs) < 2 or any(not host or host.startswith("/") for host, _ in pairs):
        return None
    return pairs


def _check_dialect(engine: Engine, cls: str) -> None:
    if engine.dialect.name != "postgresql":
        raise wrong_backend(cls, engine.url.drivername)


def _other_driver(cls: str, drivername: str, scheme: str) -> ConfigurationError:
    return ConfigurationError(
        f"{cls} runs on psycopg 3, not on the driver of {drivername}://: use a "
        f"{scheme}://user:pass@host:5432/db URL (psycopg is installed with kern-memory[postgres])."
    )


def wrong_backend(cls: str, drivername: str) -> ConfigurationError:
    """The error for another backend's URL; the registry says which class to use instead."""
    scheme = drivername.lower()
    return ConfigurationError(
        f"{cls} stores in PostgreSQL and needs a postgresql:// URL (e.g. "
        f"postgresql://user:pass@localhost:5432/app), not a {scheme}:// one: "
        f"{wrong_backend_hint(scheme, backend='postgres')}."
    )
