"""Test helpers for the Mongo backend: a throwaway server, and a command counter.

MongoDB itself is often not installable where tests run. ``nx-27017`` (PyPI) speaks the
MongoDB wire protocol and stores in SQLite; it is installed in a virtualenv of its own
(``ensure_nx``), never in the project's environment, and started on a free loopback port
with a fresh data folder (``NxServer``). ``use_test_server`` picks the server a test session
uses: ``KERN_TEST_MONGO_URL`` if set, else a server already listening on the default port,
else a throwaway nx-27017.

``CommandCounter`` is a ``pymongo.monitoring.CommandListener``: it counts the commands a
block of code sends, the documents the server returns, and (``examined``) the keys and
documents the server reports examining for each ``find``, where the server reports it
(MongoDB does, in ``explain``; nx-27017 reports zero).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pymongo import MongoClient, monitoring
from pymongo.errors import PyMongoError

NX_PACKAGE = "nx-27017"
NX_VERSION = "0.8.1"
URL_ENV = "KERN_TEST_MONGO_URL"
DEFAULT_URL = "mongodb://127.0.0.1:27017/"
INSTALL_HINT = (
    f"python3 -m venv .kern-test/nx-27017 && "
    f".kern-test/nx-27017/bin/pip install {NX_PACKAGE}=={NX_VERSION}"
)


class ServerUnavailable(RuntimeError):
    """No MongoDB-compatible server could be found or started (the message says why)."""


# -- the nx-27017 virtualenv -----------------------------------------------------------------
def _installed_version(venv: Path) -> str | None:
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({NX_PACKAGE!r}))"],
        capture_output=True,
        text=True,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def ensure_nx(venv: Path, *, install: bool = True) -> Path:
    """The ``nx-27017`` executable of ``venv``, creating the venv (pinned version) if needed.

    A file lock next to the venv keeps two test sessions from building it at once.
    """
    venv = venv.absolute()
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version(venv) != NX_VERSION:
            if not install:
                raise ServerUnavailable(f"{NX_PACKAGE} is not installed in {venv}: {INSTALL_HINT}")
            _install(venv)
    executable = venv / "bin" / NX_PACKAGE
    if not executable.exists():
        raise ServerUnavailable(f"{executable} is missing: {INSTALL_HINT}")
    return executable


def _install(venv: Path) -> None:
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{NX_PACKAGE}=={NX_VERSION}"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            raise ServerUnavailable(
                f"could not install {NX_PACKAGE}=={NX_VERSION} in {venv} ({' '.join(step)} "
                f"failed: {done.stderr.strip()[-800:]}). Install it by hand: {INSTALL_HINT}"
            )


# -- a throwaway server --------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reachable(url: str, timeout_ms: int = 500) -> bool:
    """True if a MongoDB-compatible server answers ``hello`` at ``url``."""
    client: MongoClient[Any] = MongoClient(
        url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
    )
    try:
        client.admin.command("hello")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


class NxServer:
    """An nx-27017 process on a free loopback port, one SQLite file per database in
    ``data_dir``. ``stop()`` ends that process (and only it); ``start(port=server.port)``
    starts it again where it was, on the same data."""

    def __init__(self, executable: Path, data_dir: Path) -> None:
        self.executable = executable
        self.data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.port = 0
        self.stderr = data_dir / "nx-27017.stderr"

    def start(self, timeout: float = 60.0, *, port: int | None = None) -> str:
        """Start the server (on ``port`` if given, else a free one); its URL."""
        last_error = ""
        for _ in range(3):  # a free port can be taken between the probe and the bind
            chosen = port or _free_port()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            log = self.data_dir / "nx-27017.log"
            command = [
                str(self.executable),
                "--data-dir", str(self.data_dir),
                "--host", "127.0.0.1",
                "--port", str(chosen),
                "--log-file", str(log),
                "--pid-file", str(self.data_dir / "nx-27017.pid"),
            ]  # fmt: skip
            with open(self.stderr, "wb") as stderr:
                self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
            url = f"mongodb://127.0.0.1:{chosen}/"
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                if reachable(url, 300):
                    self.url, self.port = url, chosen
                    return url
                time.sleep(0.1)
            last_error = self._stop_process()
        raise ServerUnavailable(f"{NX_PACKAGE} did not start: {last_error[-800:]}")

    def _stop_process(self) -> str:
        process, self.process = self.process, None
        if process is None:
            return ""
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        try:
            return self.stderr.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        self._stop_process()


@dataclass
class Server:
    """The server a test session uses. ``owned``: started by us (and stopped at the end)."""

    url: str
    owned: bool
    how: str

    def database_url(self, database: str) -> str:
        """The server URL with ``database`` as its path (options and credentials kept)."""
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path=f"/{database}"))


@contextlib.contextmanager
def use_test_server(venv: Path) -> Iterator[Server]:
    """``KERN_TEST_MONGO_URL``, else a server on the default port, else a throwaway nx-27017
    from ``venv`` (installed there if missing). Raises ``ServerUnavailable`` with the fix."""
    if url := os.environ.get(URL_ENV):
        if not reachable(url, 5000):
            where = urlsplit(url).netloc.rpartition("@")[2]  # credentials left out
            raise ServerUnavailable(f"{URL_ENV}: no MongoDB-compatible server answers at {where}")
        yield Server(url, False, f"{URL_ENV}")
        return
    if reachable(DEFAULT_URL, 300):
        yield Server(DEFAULT_URL, False, "found on 127.0.0.1:27017")
        return
    try:
        executable = ensure_nx(venv)
    except OSError as exc:
        raise ServerUnavailable(f"could not set up {NX_PACKAGE} in {venv}: {exc}") from exc
    data_dir = Path(tempfile.mkdtemp(prefix="kern-nx-"))
    server = NxServer(executable, data_dir)
    try:
        url = server.start()
        yield Server(url, True, f"{NX_PACKAGE} {NX_VERSION} started from {venv}")
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


# -- counting commands ----------------------------------------------------------------------
@dataclass
class Tally:
    """What one counted block sent and got back."""

    commands: list[str] = field(default_factory=list)
    documents_returned: int = 0
    #: The ``find`` commands sent, as sent (for ``examined``).
    finds: list[dict[str, Any]] = field(default_factory=list)
    #: Every document lookup the server had to make, as a ``find`` command: the finds, and
    #: the filters of ``update``, ``delete`` and ``findAndModify`` (for ``explain_find``).
    lookups: list[dict[str, Any]] = field(default_factory=list)


def _returned(reply: Any) -> int:
    cursor = reply.get("cursor") if hasattr(reply, "get") else None
    if isinstance(cursor, dict):
        return len(cursor.get("firstBatch", cursor.get("nextBatch", [])))
    value = reply.get("value") if hasattr(reply, "get") else None
    return 1 if isinstance(value, dict) else 0


def _lookups(name: str, command: Any) -> list[dict[str, Any]]:
    collection = command.get(name)
    if name == "find":
        return [dict(command)]
    if name == "findAndModify":
        return [{"find": collection, "filter": command.get("query", {})}]
    if name in ("update", "delete"):
        key = "updates" if name == "update" else "deletes"
        return [{"find": collection, "filter": op.get("q", {})} for op in command.get(key, [])]
    return []


class CommandCounter(monitoring.CommandListener):
    """Counts, per database, the commands sent while ``counting(database)`` is open.

    Register it before clients are created (``pymongo.monitoring.register(counter)``):
    pymongo hands listeners to clients when they are built.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, Tally] = {}
        self._pending: dict[int, Tally] = {}

    @contextlib.contextmanager
    def counting(self, database: str) -> Iterator[Tally]:
        tally = Tally()
        with self._lock:
            self._active[database] = tally
        try:
            yield tally
        finally:
            with self._lock:
                self._active.pop(database, None)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            tally = self._active.get(event.database_name)
            if tally is None:
                return
            tally.commands.append(event.command_name)
            command = event.command
            if event.command_name == "find":
                tally.finds.append(dict(command))
            tally.lookups.extend(_lookups(event.command_name, command))
            self._pending[event.request_id] = tally

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        with self._lock:
            tally = self._pending.pop(event.request_id, None)
            if tally is not None:
                tally.documents_returned += _returned(event.reply)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        with self._lock:
            self._pending.pop(event.request_id, None)


def explain_find(client: MongoClient[Any], database: str, find: dict[str, Any]) -> dict[str, Any]:
    """The server's ``explain`` (executionStats) of a ``find`` command as it was sent."""
    keep = ("find", "filter", "sort", "projection", "skip", "limit", "hint")
    command = {key: find[key] for key in keep if key in find}
    return client[database].command({"explain": command, "verbosity": "executionStats"})


def examined(client: MongoClient[Any], database: str, finds: list[dict[str, Any]]) -> int:
    """Keys plus documents the server reports examining for ``finds`` (0 if it does not say)."""
    total = 0
    for find in finds:
        stats = explain_find(client, database, find).get("executionStats", {})
        total += int(stats.get("totalKeysExamined", 0)) + int(stats.get("totalDocsExamined", 0))
    return total


def plan_uses_index(explained: dict[str, Any]) -> bool:
    """True if the winning plan reads through an index and never scans the collection.

    MongoDB names plan stages (``IXSCAN``, ``COLLSCAN``); nx-27017 reports SQLite's query
    plan (``SEARCH t USING INDEX …``, ``SCAN t``).
    """
    plan = explained.get("queryPlanner", {}).get("winningPlan")
    text = repr(plan)
    if "COLLSCAN" in text:
        return False
    if isinstance(plan, list):  # SQLite's plan, line by line
        details = [str(step.get("detail", "")) for step in plan if isinstance(step, dict)]
        main = [d for d in details if d.startswith(("SCAN", "SEARCH")) and "json_each" not in d]
        return bool(main) and all(d.startswith("SEARCH") and "INDEX" in d for d in main)
    return "IXSCAN" in text or "IDHACK" in text or "EXPRESS" in text


def raw_documents(client: MongoClient[Any], database: str, prefix: str) -> list[str]:
    """Every document of every collection of ``database`` whose name starts with ``prefix``
    (kern's collections, all of them), as ``"<collection>: <document>"``, read with pymongo
    and not through kern: for checking that data is gone (``forget_user``), pending-commit
    markers included. Give a sync ``MongoClient``, also for an ``AsyncMongoDb``'s data."""
    db = client[database]
    return [
        f"{name}: {doc!r}"
        for name in sorted(db.list_collection_names())
        if name.startswith(prefix)
        for doc in db[name].find({})
    ]


_counter: CommandCounter | None = None
_counter_lock = threading.Lock()


def shared_counter() -> CommandCounter:
    """This process's ``CommandCounter``, registered with pymongo on first call.

    Call it before creating the clients it should see (a conftest's import time).
    """
    global _counter
    with _counter_lock:
        if _counter is None:
            _counter = CommandCounter()
            monitoring.register(_counter)
        return _counter
