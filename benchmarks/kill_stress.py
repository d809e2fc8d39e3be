"""kill -9 during turns: no committed run is lost and no state runs ahead of its runs.

A child process runs agent turns in a loop on one session; every turn's model answer calls a
tool that adds 1 to ``session_state["turns"]``, so a turn's state and its run belong together.
After each ``run()`` returns the child notes the run id in a ledger (fsynced). The parent
kills the child with SIGKILL at a random moment, again and again, and after every kill checks
with a fresh db object:

- every run id in the ledger is stored (a turn that returned is never lost);
- ``state["turns"]`` equals the number of stored runs (never ahead of them, never behind).

    uv run nox -s stress -- --db sqlite:///tmp/stress.db --kills 40
    uv run python benchmarks/kill_stress.py --db postgresql://postgres@127.0.0.1:5432/test

The model is kern's scripted server, in the parent process. Exit status 1 on any violation.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kern.db
from kern.agent import Agent
from kern.models.openai import OpenAIChat
from kern.testing.scripted_server import Reply, ScriptedServer, ToolCallReply


def bump(session_state: dict) -> str:
    """Count this turn in the session's state."""
    session_state["turns"] = session_state.get("turns", 0) + 1
    return "counted"


def responder(body: dict[str, Any]) -> Reply:
    """Every turn: first a call of ``bump``, then a short answer."""
    if body["messages"][-1]["role"] == "tool":
        return Reply.text("ok")
    return Reply.tool_calls(ToolCallReply(name="bump", arguments={}))


def child(db_url: str, base_url: str, session_id: str, user_id: str, ledger: Path) -> None:
    agent = Agent(
        model=OpenAIChat(id="scripted", base_url=base_url, api_key="stress"),
        db=kern.db.connect(db_url),
        tools=[bump],
    )
    print("ready", flush=True)  # imports done: the parent's clock starts now
    with ledger.open("a") as out:
        while True:
            output = agent.run("next turn", session_id=session_id, user_id=user_id)
            out.write(output.run_id + "\n")
            out.flush()
            os.fsync(out.fileno())


@dataclass
class Tally:
    kills: int = 0
    runs: int = 0
    lost: list[str] = field(default_factory=list)
    ahead: list[tuple[int, int]] = field(default_factory=list)
    behind: list[tuple[int, int]] = field(default_factory=list)


def stored_runs(db: Any, session_id: str) -> list[str]:
    ids: list[str] = []
    before = None
    while page := db.get_last_runs(session_id, 500, before_seq=before):
        ids = [run.run_id for run in page] + ids
        before = page[0].seq
    return ids


def check(db_url: str, session_id: str, ledger: Path, tally: Tally) -> None:
    db = kern.db.connect(db_url)
    try:
        runs = stored_runs(db, session_id)
        session = db.get_session(session_id)
        turns = session.state.get("turns", 0) if session is not None else 0
    finally:
        db.close()
    noted = ledger.read_text().split() if ledger.exists() else []
    tally.runs = len(runs)
    stored = set(runs)
    tally.lost = [run_id for run_id in noted if run_id not in stored]
    if turns > len(runs):
        tally.ahead.append((turns, len(runs)))
    elif turns < len(runs):
        tally.behind.append((turns, len(runs)))


def stress(db_url: str, kills: int, seed: int, max_delay: float) -> Tally:
    rng = random.Random(seed)
    session_id, user_id = f"stress-{uuid.uuid4().hex[:8]}", f"stress-user-{uuid.uuid4().hex[:8]}"
    tally = Tally()
    with ScriptedServer(responder=responder) as server, tempfile.TemporaryDirectory() as tmp:
        ledger = Path(tmp) / "ledger.txt"
        for _ in range(kills):
            process = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "--db",
                    db_url,
                    "--base-url",
                    server.base_url,
                    "--session",
                    session_id,
                    "--user",
                    user_id,
                    "--ledger",
                    str(ledger),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert process.stdout is not None
            process.stdout.readline()  # "ready"
            time.sleep(rng.uniform(0.0, max_delay))  # somewhere inside the turns
            process.send_signal(signal.SIGKILL)
            process.wait()
            tally.kills += 1
            check(db_url, session_id, ledger, tally)
        db = kern.db.connect(db_url)
        try:
            db.forget_user(user_id)
        finally:
            db.close()
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=None, help="a database URL (default: a temp SQLite)")
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-delay", type=float, default=1.5, help="seconds of turns at most")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--session", help=argparse.SUPPRESS)
    parser.add_argument("--user", help=argparse.SUPPRESS)
    parser.add_argument("--ledger", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.db, args.base_url, args.session, args.user, args.ledger)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        db_url = args.db or f"sqlite:///{tmp}/stress.db"
        started = time.perf_counter()
        tally = stress(db_url, args.kills, args.seed, args.max_delay)
        elapsed = time.perf_counter() - started
    print(
        f"{db_url.split('://')[0]}: {tally.kills} kills, {tally.runs} runs stored, "
        f"{len(tally.lost)} runs lost, {len(tally.ahead)} states ahead of their runs, "
        f"{len(tally.behind)} behind ({elapsed:.0f} s)"
    )
    return 1 if tally.lost or tally.ahead or tally.behind else 0


if __name__ == "__main__":
    sys.exit(main())
