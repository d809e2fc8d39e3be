"""``kern demo``: two turns of one session in two separate processes, on a SQLite file.

The second process starts with nothing in memory; the first turn reaches its model context
from the database. With no ``OPENAI_API_KEY`` or base URL configured, the model is kern's
local scripted model (clearly labelled), which answers by quoting what it was sent.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

TURNS = (
    "I am working on building a local-first web app.",
    "What python web framework fits this best?",
)

console = Console()


def _start_scripted_server() -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "kern.testing.scripted_server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    base_url = server.stdout.readline().strip()
    if not base_url.startswith("http"):
        server.kill()
        raise SystemExit("the local scripted model server did not start")
    return server, base_url


def main(args: argparse.Namespace) -> int:
    """Run the demo: pick the model, then run each turn in a fresh child process."""
    db_file = Path(args.db)
    session_id = args.session_id or f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    base_url = args.base_url or os.environ.get("OPENAI_BASE_URL")
    server = None
    if base_url or os.environ.get("OPENAI_API_KEY"):
        label = f"model {args.model!r}" + (f" at {base_url}" if base_url else " (OpenAI)")
    else:
        server, base_url = _start_scripted_server()
        label = (
            "LOCAL SCRIPTED MODEL (no OPENAI_API_KEY or base_url configured): it answers "
            "by quoting what the database put in its context"
        )
    console.print(Rule("kern demo"))
    console.print(f"model:    {label}", markup=False, highlight=False)
    console.print(f"database: SQLite file {db_file}", markup=False, highlight=False)
    console.print(f"session:  {session_id}\n", markup=False, highlight=False)
    try:
        for number, message in enumerate(TURNS, start=1):
            console.print(Rule(f"turn {number}: a new Python process"))
            # Through the kern command, so a failed turn prints the one-line kern error (the
            # traceback only with --debug), and this process adds nothing to it.
            command = [sys.executable, "-m", "kern.cli", "demo", "--turn", message]
            command += ["--db", str(db_file), "--session-id", session_id, "--model", args.model]
            if base_url:
                command += ["--base-url", base_url]
            if getattr(args, "debug", False):
                command.append("--debug")
            returncode = subprocess.run(command).returncode
            if returncode != 0:
                return returncode
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
    console.print(
        f"\nBoth turns are stored as runs of session {session_id} in {db_file}; turn 2 "
        "ran in a new process and got turn 1 from the database.",
        markup=False,
        highlight=False,
    )
    return 0


def run_turn(args: argparse.Namespace) -> int:
    """One turn, in its own process: everything it remembers comes from the database."""
    from kern.agent import Agent
    from kern.db.sqlite import SqliteDb
    from kern.models.openai import OpenAIChat

    agent = Agent(
        model=OpenAIChat(id=args.model, base_url=args.base_url),
        db=SqliteDb(db_file=args.db),
        add_history_to_context=True,
        num_history_runs=3,
    )
    console.print(f"process {os.getpid()}", style="dim")
    agent.print_response(args.turn, session_id=args.session_id)
    return 0


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="kern demo", description=__doc__)
    parser.add_argument(
        "--db", default="tmp/kern-demo.db", help="SQLite file to use (default: %(default)s)"
    )
    parser.add_argument(
        "--model",
        default=os.environ.get("KERN_DEMO_MODEL", "gpt-4.1-mini"),
        help="model id sent to the server (default: %(default)s; env KERN_DEMO_MODEL)",
    )
    parser.add_argument(
        "--base-url",
        default=None,
        help="an OpenAI-compatible server, e.g. http://localhost:11434/v1 for Ollama "
        "(default: OPENAI_BASE_URL, else OpenAI with OPENAI_API_KEY, else kern's local "
        "scripted model)",
    )
    parser.add_argument(
        "--session-id",
        default=None,
        help="session to store both turns in (default: a new demo-<time>-<pid> id)",
    )
    parser.add_argument("--turn", default=None, help=argparse.SUPPRESS)
    return parser


def cli(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_turn(args) if args.turn else main(args)


if __name__ == "__main__":
    raise SystemExit(cli())
