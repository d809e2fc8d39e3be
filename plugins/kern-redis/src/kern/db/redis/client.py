"""Which redis-py client a Db uses: built from a URL, or the user's own, checked.

URLs are redis-py's: ``redis://[user:password@]host:port/db``, ``rediss://…`` (TLS),
``unix:///path/to/redis.sock``. ``?cluster=true`` (or ``cluster=True``) makes a Redis Cluster
client from the URL of any one node. A wrong kind of client or URL is refused at
construction with an error that names the class or URL to use instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from kern.db.registry import wrong_backend_hint
from kern.errors import ConfigurationError, SyncAsyncMismatchError

SCHEMES = ("redis", "rediss", "unix")
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Connection:
    """The client a Db talks through, and whether closing the Db closes it."""

    client: Any
    cluster: bool
    owned: bool
    where: str


def _split_url(db_url: str, cls: str) -> tuple[str, bool]:
    """The URL for redis-py (our ``cluster`` query parameter removed) and that flag."""
    if not isinstance(db_url, str) or "://" not in db_url:
        # Not echoed: a URL may hold a password.
        raise ConfigurationError(
            f"{cls} could not read db_url as a Redis URL. Use redis://localhost:6379/0, "
            "rediss://user:password@host:6380/0 (TLS) or unix:///path/to/redis.sock; add "
            "?cluster=true for Redis Cluster."
        )
    parts = urlsplit(db_url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        # As written: urlsplit finds no scheme in postgresql+psycopg_async:// ("_").
        given = db_url.partition("://")[0].lower()
        raise ConfigurationError(
            f"{cls} stores in Redis and needs a redis://, rediss:// or unix:// URL (e.g. "
            f"redis://localhost:6379/0), not a {given}:// one: "
            f"{wrong_backend_hint(given, backend='redis')}."
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not any(k == "cluster" for k, _ in query):
        return db_url, False
    cluster = any(k == "cluster" and v.lower() in _TRUE for k, v in query)
    rest = urlencode([(k, v) for k, v in query if k != "cluster"])
    base = db_url.split("?", 1)[0]
    return (f"{base}?{rest}" if rest else base), cluster


def _where(url: str) -> str:
    """The URL without its password (in the user part or the query), for repr and messages."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    hidden = any(k == "password" for k, _ in query)
    if parts.password is None and not hidden:
        return url
    if hidden:
        masked = [(k, "***" if k == "password" else v) for k, v in query]
        parts = parts._replace(query=urlencode(masked, safe="*"))
    netloc = parts.netloc
    if parts.password is not None:
        user = f"{parts.username}:***@" if parts.username else ":***@"
        netloc = user + netloc.rsplit("@", 1)[1]
    # By hand: urlunsplit would drop the "//" of unix:///path URLs.
    search = f"?{parts.query}" if parts.query else ""
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return f"{parts.scheme}://{netloc}{parts.path}{search}{fragment}"


_SYNC = (redis.Redis, redis.cluster.RedisCluster)
_ASYNC = (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)
_CLUSTER = (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster)


def _check_choice(db_url: Any, client: Any, cls: str) -> None:
    if (db_url is None) == (client is None):
        given = "both db_url and client" if client is not None else "neither"
        raise ConfigurationError(
            f"{cls} needs exactly one of db_url or client (got {given}): e.g. "
            f"{cls}(db_url='redis://localhost:6379/0')."
        )


def _describe(client: Any) -> str:
    """The client's class, as the user would import it."""
    if isinstance(client, _CLUSTER):
        if isinstance(client, _ASYNC):
            return "redis.asyncio.cluster.RedisCluster"
        return "redis.cluster.RedisCluster"
    return "redis.asyncio.Redis" if isinstance(client, _ASYNC) else "redis.Redis"


def _address(client: Any) -> str:
    """Where a user's client points, without credentials (for repr)."""
    pool = getattr(client, "connection_pool", None)
    options = getattr(pool, "connection_kwargs", {}) if pool is not None else {}
    if "path" in options:
        return f"unix://{options['path']}"
    if "host" in options:
        return f"redis://{options['host']}:{options.get('port', 6379)}/{options.get('db', 0)}"
    return _describe(client)


def _given_client(client: Any, *, want_async: bool, cluster: bool | None, cls: str) -> Connection:
    right, wrong = (_ASYNC, _SYNC) if want_async else (_SYNC, _ASYNC)
    if isinstance(client, wrong):
        if want_async:
            fix = (
                f"{cls} needs an async client (redis.asyncio.Redis or "
                "redis.asyncio.cluster.RedisCluster); for a sync client use RedisDb(client=...)."
            )
        else:
            fix = (
                f"{cls} needs a sync client (redis.Redis or redis.cluster.RedisCluster); for "
                "an async client use AsyncRedisDb(client=...)."
            )
        raise SyncAsyncMismatchError(f"{cls} got a {_describe(client)} client. {fix}")
    if not isinstance(client, right):
        kind = "redis.asyncio.Redis" if want_async else "redis.Redis"
        raise ConfigurationError(
            f"{cls}(client=...) needs a redis-py client such as {kind}(host=..., port=...), "
            f"not {type(client).__name__}."
        )
    is_cluster = isinstance(client, _CLUSTER)
    if cluster and not is_cluster:
        raise ConfigurationError(
            f"{cls}(cluster=True) needs a RedisCluster client; pass "
            f"{'redis.asyncio.cluster' if want_async else 'redis.cluster'}.RedisCluster(...) "
            "or leave cluster unset."
        )
    return Connection(client, is_cluster, owned=False, where=_address(client))


def connect(
    db_url: str | None,
    client: Any,
    *,
    cluster: bool | None,
    want_async: bool,
    cls: str,
    max_connections: int,
) -> Connection:
    """The connection for a Db's constructor arguments (see the module docstring)."""
    _check_choice(db_url, client, cls)
    if client is not None:
        return _given_client(client, want_async=want_async, cluster=cluster, cls=cls)
    assert db_url is not None
    url, url_cluster = _split_url(db_url, cls)
    use_cluster = url_cluster if cluster is None else cluster
    if use_cluster:
        factory: Any = (
            redis.asyncio.cluster.RedisCluster if want_async else redis.cluster.RedisCluster
        )
        made = factory.from_url(url, max_connections=max_connections)
    else:
        plain: Any = redis.asyncio.Redis if want_async else redis.Redis
        made = plain.from_url(url, max_connections=max_connections)
    return Connection(made, use_cluster, owned=True, where=_where(db_url))
