"""Real Redis servers for the Redis backend's tests, and per-test key prefixes.

Where the tests run (docs/architecture.md, "Where the backend tests run"):

- ``redis_url``: ``KERN_TEST_REDIS_URL`` if set, else a server on ``127.0.0.1:6379``, else
  a throwaway ``redis-server`` this test session starts (and stops at the end).
- ``counting_url``: for tests that read the server's own command counters (``INFO
  commandstats``), which count every client's commands: ``KERN_TEST_REDIS_URL`` if set (it
  must then be a server no one else uses meanwhile), else a throwaway ``redis-server``
  private to this session, else ``127.0.0.1:6379``.
- ``cluster_nodes``: three ``redis-server --cluster-enabled yes`` masters on free loopback
  ports, joined by ``redis-cli --cluster create``, stopped at the end.
- ``own_redis``: servers private to one test, which it may stop and start again (fault
  tests); stopped after the test, by their own process handles.

Each test gets a fresh key prefix (``kern-test-<hex>:``) and its keys are deleted after it:
nothing else on a shared server is touched (no FLUSHALL). Under ``CI=true`` a missing
server fails the tests with what to install; elsewhere they are skipped with that message.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import pytest
import redis
import redis.cluster

# The helpers beside this file (redis_probes: the command counter) are imported by name by
# the test modules. The importlib import mode (root pyproject) puts no test folder on
# sys.path, so this conftest, loaded first, does.
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

ENV_URL = "KERN_TEST_REDIS_URL"
DEFAULT_URL = "redis://127.0.0.1:6379/0"
INSTALL = (
    "install Redis (Debian/Ubuntu: apt-get install redis-server redis-tools), or set "
    f"{ENV_URL}=redis://host:port/0 to a server the tests may write to"
)
#: Seconds a server may take to start or a cluster to agree (a hang guard only).
START_TIMEOUT = 30.0


def unavailable(message: str) -> None:
    """Fail under CI (a backend that cannot run is an error there), skip elsewhere."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def answers(url: str, **kwargs: object) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2, **kwargs)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def free_port(*, below: int = 65536) -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port < below:
            return int(port)


def wait_until(check, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + START_TIMEOUT
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


class RedisServer:
    """One ``redis-server`` process on loopback, keeping nothing on disk (unless ``extra``
    says otherwise: later options win, e.g. ``"--appendonly", "yes"``). With ``password``
    the server requires it and ``url`` carries it."""

    def __init__(self, folder: Path, port: int, *extra: str, password: str | None = None) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        folder.mkdir(parents=True, exist_ok=True)
        self.port = port
        auth = "" if password is None else f":{password}@"
        self.url = f"redis://{auth}127.0.0.1:{port}/0"
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(folder), *extra]
        if password is not None:
            args += ["--requirepass", password]
        self.log = open(folder / "redis.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: self.process.poll() is None and answers(self.url), self.url)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def throwaway(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[str]:
    if shutil.which("redis-server") is None:
        unavailable(f"no Redis server for the Redis backend's tests: {INSTALL}")
    server = RedisServer(tmp_path_factory.mktemp(name), free_port())
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server the tests may write to (under their own key prefixes)."""
    url = os.environ.get(ENV_URL)
    if url:
        if not answers(url):
            unavailable(f"{ENV_URL}={url!r} does not answer PING; start it, or unset {ENV_URL}")
        yield url
    elif answers(DEFAULT_URL):
        yield DEFAULT_URL
    else:
        yield from throwaway(tmp_path_factory, "redis")


@pytest.fixture(scope="session")
def counting_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose command counters only this test session moves (see module doc)."""
    url = os.environ.get(ENV_URL)
    if url:
        if not answers(url):
            unavailable(f"{ENV_URL}={url!r} does not answer PING; start it, or unset {ENV_URL}")
        yield url
    elif shutil.which("redis-server") is not None:
        yield from throwaway(tmp_path_factory, "redis-private")
    elif answers(DEFAULT_URL):
        yield DEFAULT_URL
    else:
        unavailable(f"no Redis server for the Redis backend's tests: {INSTALL}")


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RedisServer]]:
    """``start(*extra, port=None, password=None)`` -> a ``redis-server`` of this test's own
    (for fault tests: stop it with ``server.stop()``, start it again with
    ``start(..., port=server.port)``: the same port and data folder). Every server started
    is stopped after the test; no other server is touched."""
    if shutil.which("redis-server") is None:
        unavailable(f"no redis-server for the Redis backend's fault tests: {INSTALL}")
    folder = tmp_path_factory.mktemp("redis-own")
    started: list[RedisServer] = []

    def start(*extra: str, port: int | None = None, password: str | None = None) -> RedisServer:
        server = RedisServer(folder, port or free_port(below=55535), *extra, password=password)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def cluster_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """``host:port`` of the three masters of a throwaway Redis Cluster."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        unavailable(f"no redis-server/redis-cli to start a Redis Cluster: {INSTALL}")
    folder = tmp_path_factory.mktemp("redis-cluster")
    servers: list[RedisServer] = []
    try:
        used: set[int] = set()
        for _ in range(3):
            port = free_port(below=55535)  # the cluster bus listens on port + 10000
            while port in used or port + 10000 in used:
                port = free_port(below=55535)
            used |= {port, port + 10000}
            servers.append(
                RedisServer(
                    folder / str(port),
                    port,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                )
            )
        nodes = [f"127.0.0.1:{server.port}" for server in servers]
        create = ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0"]
        subprocess.run(
            [*create, "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT,
        )
        clients = [redis.Redis(port=server.port) for server in servers]
        wait_until(
            lambda: all(c.cluster("info")["cluster_state"] == "ok" for c in clients),
            "cluster_state:ok",
        )
        for client in clients:
            client.close()
        yield nodes
    finally:
        for server in servers:
            server.stop()


def cluster_url(nodes: list[str]) -> str:
    return f"redis://{nodes[0]}/0?cluster=true"


def new_prefix() -> str:
    return f"kern-test-{uuid.uuid4().hex[:12]}:"


def delete_prefix(url: str, prefix: str, *, cluster: bool = False) -> None:
    """Delete every key under ``prefix`` (test clean-up only; kern itself never scans)."""
    client = redis.cluster.RedisCluster.from_url(url) if cluster else redis.Redis.from_url(url)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    finally:
        with suppress(redis.RedisError):
            client.close()


@pytest.fixture
def redis_space(request: pytest.FixtureRequest) -> Iterator[Callable[[str], tuple[str, str]]]:
    """``space(server)`` -> ``(URL for kern, fresh key prefix)`` on the server fixture named
    ``server`` (``redis_url``, ``counting_url`` or ``cluster_nodes``); the prefix's keys are
    deleted after the test."""
    made: list[tuple[str, str, bool]] = []

    def space(server: str) -> tuple[str, str]:
        found = request.getfixturevalue(server)
        prefix = new_prefix()
        if server == "cluster_nodes":
            made.append((f"redis://{found[0]}/0", prefix, True))
            return cluster_url(found), prefix
        made.append((found, prefix, False))
        return found, prefix

    yield space
    for url, prefix, cluster in made:
        delete_prefix(url, prefix, cluster=cluster)


@pytest.fixture
def prefix(redis_space: Callable[[str], tuple[str, str]]) -> str:
    """A fresh key prefix on ``redis_url``, cleaned up after the test."""
    return redis_space("redis_url")[1]
