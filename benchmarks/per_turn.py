"""Per-turn wall time of a persisted agent turn, against the floor, at growing session lengths.

A *turn* is what a chat server does per user message: read the session and its last 3 runs,
call the model (kern's scripted OpenAI-compatible server, in its own process on loopback),
and store the new run. The *floor* makes the same turn with the bare openai client and raw
``sqlite3`` (one table, the same index and pragmas): kern's overhead is the difference.

Each size is measured on its own session, pre-filled with that many runs; kern and the floor
alternate in blocks so that drift in the machine hits both alike. Figures are medians.

    uv run nox -s bench            # or: uv run python benchmarks/per_turn.py --turns 300
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import openai

from kern.agent import Agent
from kern.db.sqlite import SqliteDb
from kern.models.openai import OpenAIChat
from kern.records import Message, Run

SIZES = (0, 1_000, 10_000)
HISTORY_RUNS = 3


def start_server() -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "kern.testing.scripted_server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    return server, server.stdout.readline().strip()


def turn_messages(n: int) -> list[Message]:
    return [
        Message(role="user", content=f"message number {n}"),
        Message(role="assistant", content=f"an answer to message {n}"),
    ]


# -- kern ----------------------------------------------------------------------------
def kern_turn(db_file: Path, base_url: str, session_id: str, prior: int) -> Callable[[int], None]:
    db = SqliteDb(db_file=db_file)
    for n in range(prior):
        db.append_run(Run(session_id=session_id, input=f"message {n}", messages=turn_messages(n)))
    agent = Agent(
        model=OpenAIChat(id="bench", base_url=base_url, api_key="bench"),
        db=db,
        add_history_to_context=True,
        num_history_runs=HISTORY_RUNS,
    )

    def turn(n: int) -> None:
        agent.run(f"message number {n}", session_id=session_id)

    return turn


# -- the floor: bare openai client + raw sqlite3 ------------------------------------------
FLOOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    session_id TEXT NOT NULL, seq INTEGER NOT NULL, run_id TEXT NOT NULL,
    input TEXT, messages TEXT NOT NULL, output TEXT, created_at TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
)
"""


def floor_turn(db_file: Path, base_url: str, session_id: str, prior: int) -> Callable[[int], None]:
    conn = sqlite3.connect(db_file, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(FLOOR_SCHEMA)
    conn.execute("BEGIN")
    for n in range(prior):
        messages = json.dumps([m.model_dump() for m in turn_messages(n)])
        conn.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, datetime('now'))",
            (session_id, n + 1, f"r{n}", f"message {n}", messages, "answer"),
        )
    conn.execute("COMMIT")
    client = openai.OpenAI(base_url=base_url, api_key="bench")

    def turn(n: int) -> None:
        rows = conn.execute(
            "SELECT messages FROM runs WHERE session_id = ? ORDER BY seq DESC LIMIT ?",
            (session_id, HISTORY_RUNS),
        ).fetchall()
        history = [m for (raw,) in reversed(rows) for m in json.loads(raw)]
        user = {"role": "user", "content": f"message number {n}"}
        reply = client.chat.completions.create(model="bench", messages=[*history, user])
        answer = {"role": "assistant", "content": reply.choices[0].message.content}
        conn.execute("BEGIN IMMEDIATE")
        (last,) = conn.execute(
            "SELECT coalesce(max(seq), 0) FROM runs WHERE session_id = ?", (session_id,)
        ).fetchone()
        conn.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, datetime('now'))",
            (session_id, last + 1, f"t{n}", user["content"], json.dumps([user, answer]), "x"),
        )
        conn.execute("COMMIT")

    return turn


def median_ms(turn: Callable[[int], None], start: int, count: int) -> list[float]:
    times = []
    for n in range(start, start + count):
        began = time.perf_counter()
        turn(n)
        times.append((time.perf_counter() - began) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=300, help="measured turns per size")
    parser.add_argument("--block", type=int, default=25, help="turns per alternating block")
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    args = parser.parse_args()

    server, base_url = start_server()
    results: dict[int, tuple[float, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as folder:
            for size in args.sizes:
                kern = kern_turn(Path(folder) / "kern.db", base_url, f"s{size}", size)
                floor = floor_turn(Path(folder) / "floor.db", base_url, f"s{size}", size)
                for warm in range(20):
                    kern(-warm - 1)
                    floor(-warm - 1)
                kern_times: list[float] = []
                floor_times: list[float] = []
                for start in range(0, args.turns, args.block):
                    kern_times += median_ms(kern, start, args.block)
                    floor_times += median_ms(floor, start, args.block)
                results[size] = (statistics.median(kern_times), statistics.median(floor_times))
    finally:
        server.terminate()
        server.wait(timeout=10)

    base = results[args.sizes[0]][0]
    header = "| prior runs | kern ms/turn | floor ms/turn | kern / floor | kern / kern@first |"
    print(header)
    print("|---:|---:|---:|---:|---:|")
    for size, (kern_ms, floor_ms) in results.items():
        print(
            f"| {size:,} | {kern_ms:.3f} | {floor_ms:.3f} | "
            f"{kern_ms / floor_ms:.2f}x | {kern_ms / base:.2f}x |"
        )


if __name__ == "__main__":
    main()
