"""``kern serve``: its options, its token, and what it says without the console extra.

The server itself is stubbed out here (``uvicorn.run`` records the app it was given); the
browser tests start the real one as a child process.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn

from kern.cli import main

Served = dict[str, Any]


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Served:
    """What ``kern serve`` handed to uvicorn, instead of serving it."""
    record: Served = {}

    def fake_run(app: Any, **options: Any) -> None:
        record.update(app=app, **options)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.delenv("KERN_CONSOLE_TOKEN", raising=False)
    return record


async def test_a_generated_token_is_printed_and_works(
    served: Served,
    backend_url: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
    client: Any,
) -> None:
    assert main(["serve", "--db", backend_url("sqlite")]) == 0
    assert served["host"] == "127.0.0.1" and served["port"] == 7860
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "kern console on http://127.0.0.1:7860/"
    token = lines[1].removeprefix("token: ")
    assert len(token) >= 40  # secrets.token_urlsafe(32)
    console = served["app"].state.console
    try:
        async with client(served["app"]) as anonymous:
            assert (await anonymous.get("/api/health")).status_code == 401
        bearer = {"Authorization": f"Bearer {token}"}
        async with client(served["app"], headers=bearer) as api:
            health = await api.get("/api/health")
            assert health.status_code == 200 and health.json()["read_only"] is False
    finally:
        await console.aclose()


def test_options_and_the_token_from_the_environment(
    served: Served,
    backend_url: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    kit: Any,
) -> None:
    monkeypatch.setenv("KERN_CONSOLE_TOKEN", kit.TOKEN)
    url = backend_url("sqlite")
    argv = ["serve", "--db", url, "--host", "0.0.0.0", "--port", "9000", "--read-only"]
    assert main(argv) == 0
    assert served["host"] == "0.0.0.0" and served["port"] == 9000
    printed = capsys.readouterr()
    assert kit.TOKEN not in printed.out
    assert "token: the value of KERN_CONSOLE_TOKEN" in printed.out
    assert "read-only" in printed.out
    assert "warning: listening on 0.0.0.0" in printed.err
    assert served["app"].state.console.read_only is True


@pytest.mark.parametrize(
    ("db", "token", "message"),
    [
        ("nosuch://x", None, "no installed kern backend handles URL scheme 'nosuch'"),
        (None, "short", "at least 16 characters"),
    ],
)
def test_bad_input_exits_2(
    served: Served,
    backend_url: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    db: str | None,
    token: str | None,
    message: str,
) -> None:
    if token is not None:
        monkeypatch.setenv("KERN_CONSOLE_TOKEN", token)
    assert main(["serve", "--db", db or backend_url("sqlite")]) == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert "app" not in served


def test_a_bad_port_exits_2(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--port", "0"])
    assert exited.value.code == 2
    assert "must be a whole number of at least 1" in " ".join(capsys.readouterr().err.split())


def test_without_the_extra_it_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now fails
    assert main(["serve", "--db", "sqlite:///unused.db"]) == 2
    said = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert said.endswith("pip install 'kern-memory[console]'")


def test_other_commands_never_import_the_web_stack() -> None:
    code = (
        "import sys; from kern.cli import build_parser; build_parser().parse_args(['serve']);"
        "import kern, kern.agent;"
        "loaded = [m for m in ('fastapi', 'uvicorn', 'jinja2', 'starlette', 'kern.console')"
        " if m in sys.modules]; print(loaded)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
