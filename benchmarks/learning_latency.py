"""Per-turn latency with ``learning=True``: the extraction in the turn (foreground) or after
it (``LearningMachine(background=True)``), against a model whose extraction takes 200 ms.

The scripted model server runs in its own process: it answers a turn at once and an
extraction request (one with the ``save_user_memories`` tool) after ``--delay`` seconds,
with one memory to store. Each turn tells the agent a new fact, so every turn's learning
writes. A turn's latency is the wall time of ``agent.run`` (what the user waits for). In the
background mode the benchmark then waits for that turn's learning (not timed) before the
next turn, as a user reads the answer before writing again, and reports how long after the
answer the memory was stored.

    uv run nox -s learning_latency
    uv run python benchmarks/learning_latency.py --turns 200 --db sqlite:////tmp/l.db \\
        --db postgresql://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SERVE = """
import sys, time
from kern.testing.scripted_server import Reply, ScriptedServer, ToolCallReply, request_messages

delay = float(sys.argv[1])

def respond(body):
    tools = [t["function"]["name"] for t in body.get("tools") or []]
    if "save_user_memories" not in tools:
        return "Noted."
    said = request_messages(body)[-1]["content"].split("User: ", 1)[-1].split("\\n", 1)[0]
    call = ToolCallReply("save_user_memories", {"memories": [{"content": said}]})
    return Reply.tool_calls(call).after(delay)

with ScriptedServer(responder=respond) as server:
    print(server.base_url, flush=True)
    while True:
        time.sleep(3600)
"""


def start_server(delay: float) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(delay)], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    return server, server.stdout.readline().strip()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure(url: str, base_url: str, background: bool, turns: int, warmup: int) -> dict[str, Any]:
    from kern.agent import Agent
    from kern.db import connect
    from kern.learn import LearningMachine
    from kern.models.openai import OpenAIChat

    db = connect(url)
    lm = LearningMachine(background=background)
    user = f"bench-{'bg' if background else 'fg'}-{time.time_ns()}"
    agent = Agent(
        model=OpenAIChat(id="bench", base_url=base_url, api_key="bench"),
        db=db,
        learning=lm,
        user_id=user,
    )
    latencies: list[float] = []
    learned_after: list[float] = []
    try:
        for n in range(warmup + turns):
            started = time.perf_counter()
            agent.run(f"Fact number {n}: my lucky number is {n * 7}.")
            answered = time.perf_counter()
            if background:
                lm.wait()
            done = time.perf_counter()
            if n >= warmup:
                latencies.append(answered - started)
                if background:
                    learned_after.append(done - answered)
        stored = len(db.list_memories(user, limit=10_000))
    finally:
        db.close()
    if stored != warmup + turns:
        raise SystemExit(f"expected {warmup + turns} memories, found {stored}")
    result = {
        "median_ms": statistics.median(latencies) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
    }
    if learned_after:
        result["learned_after_median_ms"] = statistics.median(learned_after) * 1000
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.2, help="extraction delay, seconds")
    parser.add_argument("--db", action="append", help="database URL (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    server, base_url = start_server(args.delay)
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            urls = args.db or [f"sqlite:///{Path(folder) / 'learning.db'}"]
            for url in urls:
                backend = url.split(":", 1)[0].split("+", 1)[0]
                for background in (False, True):
                    mode = "background" if background else "foreground"
                    figures = measure(url, base_url, background, args.turns, args.warmup)
                    results.append({"backend": backend, "mode": mode, **figures})
    finally:
        server.terminate()
        server.wait()

    command = " ".join(["python", *sys.argv])
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    print(f"{command}\n{when}, {platform.machine()}, Python {platform.python_version()}")
    print(f"{args.turns} turns per row, extraction delay {args.delay * 1000:.0f} ms\n")
    print("| backend | learning | median | p95 | memory stored after the answer |")
    print("|---|---|---|---|---|")
    for row in results:
        after = row.get("learned_after_median_ms")
        learned = f"{after:.0f} ms" if after is not None else "before the answer"
        print(
            f"| {row['backend']} | {row['mode']} | {row['median_ms']:.1f} ms | "
            f"{row['p95_ms']:.1f} ms | {learned} |"
        )
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
