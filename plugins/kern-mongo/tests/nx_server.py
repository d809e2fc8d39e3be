"""The MongoDB-compatible server the Mongo tests (and the Mongo benchmark) run against.

``use_test_server`` picks the server a test session uses: ``KERN_TEST_MONGO_URL`` if set,
else a server already listening on the default port, else a throwaway ``nx-27017``
(``NxServer``) on a free loopback port with a fresh data folder. MongoDB itself is often
not installable where the tests run; nx-27017 (PyPI) speaks the MongoDB wire protocol and
stores in SQLite.

Why this installs a package at run time, and why only here, in the tests: nx-27017 is a
program the tests start, not a library kern uses, and it cannot join the workspace's lock:
its requirements conflict with the project's (it needs Python < 3.15 where the workspace
allows any Python >= 3.11), and its dependencies (neosqlite, a pymongo range of its own)
must not move the versions of the drivers kern is tested with. So
``ensure_nx`` builds it a virtualenv of its own, ``.kern-test/nx-27017`` (``NX_VERSION``
pinned, installed with pip, under a file lock), the first time a test session needs it.
This used to live in the runtime package as ``kern.db.mongo.testing``; code that installs
packages has no place in a runtime package.
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
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pymongo import MongoClient
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
