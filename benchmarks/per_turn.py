"""Per-turn wall time of a persisted agent turn, against the floor, at growing session lengths.

A *turn* is what a chat server does per user message: read the session's last 3 runs, call
the model (kern's scripted OpenAI-compatible server, in its own process on loopback), and
store the new run. The *floor* makes the same turn with the bare openai client and the bare
database driver (``benchmarks/targets/<backend>.py``: same index, same durability): the
difference is kern's overhead.

Each size is measured on its own session, pre-filled with that many runs; kern and the floor
alternate in blocks so that drift in the machine hits both alike. Figures are medians.

    uv run --group bench nox -s bench         # every backend, Agno beside, the chart
    uv run nox -s bench -- --backends sqlite --turns 600

With ``--agno-python`` (the nox session builds Agno's virtualenv), Agno makes the same
turns on its sync SQLite and Postgres dbs (``agno_side/per_turn_agno.py``); ``--chart``
draws ms per turn against session length for kern, the floor and Agno.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kern.agent import Agent
from kern.models.openai import OpenAIChat
from kern.records import Message, Run

SIZES = (0, 1_000, 10_000)
HISTORY_RUNS = 3


def targets() -> dict[str, ModuleType]:
    import targets as package

    modules = (
        importlib.import_module(f"targets.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
    )
    return {module.NAME: module for module in modules}


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


def kern_turn(db, base_url: str, session_id: str, prior: int) -> Callable[[int], None]:
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


def floor_turn(floor, base_url: str, session_id: str, prior: int) -> Callable[[int], None]:
    floor.seed(session_id, prior, lambda n: [m.model_dump() for m in turn_messages(n)])
    client = openai.OpenAI(base_url=base_url, api_key="bench")

    def turn(n: int) -> None:
        history = floor.last_messages(session_id, HISTORY_RUNS)
        user = {"role": "user", "content": f"message number {n}"}
        reply = client.chat.completions.create(model="bench", messages=[*history, user])
        content = reply.choices[0].message.content
        floor.append(
            session_id, user["content"], [user, {"role": "assistant", "content": content}], content
        )

    return turn


def timed(turn: Callable[[int], None], start: int, count: int) -> list[float]:
    times = []
    for n in range(start, start + count):
        began = time.perf_counter()
        turn(n)
        times.append((time.perf_counter() - began) * 1000)
    return times


def measure(target: ModuleType, base_url: str, sizes: list[int], turns: int, block: int):
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        db, floor = target.kern_db(folder), target.Floor(folder)
        try:
            for size in sizes:
                session_id = f"bench-{size}-{time.time_ns()}"
                kern = kern_turn(db, base_url, session_id, size)
                bare = floor_turn(floor, base_url, session_id, size)
                for warm in range(20):
                    kern(-warm - 1)
                    bare(-warm - 1)
                kern_times: list[float] = []
                floor_times: list[float] = []
                for start in range(0, turns, block):
                    kern_times += timed(kern, start, block)
                    floor_times += timed(bare, start, block)
                yield size, statistics.median(kern_times), statistics.median(floor_times)
        finally:
            db.close()
            floor.close()


def agno_times(
    python: str, backend: str, base_url: str, sizes: list[int], turns: int
) -> dict[int, float] | None:
    """Agno's median ms per turn at each size (``agno_side/per_turn_agno.py`` in Agno's own
    virtualenv), or None where Agno has no such db or the run failed (said on stderr)."""
    if backend not in AGNO_TARGETS:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        target = AGNO_TARGETS[backend](scratch)
        done = subprocess.run(
            [
                python,
                str(Path(__file__).parent / "agno_side" / "per_turn_agno.py"),
                *("--backend", backend, "--target", target, "--base-url", base_url),
                *("--turns", str(turns), "--sizes", *map(str, sizes)),
            ],
            capture_output=True,
            text=True,
        )
    if done.returncode != 0:
        print(f"Agno on {backend} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {int(size): ms for size, ms in result["ms_per_turn"].items()}


def _postgres_target(scratch: str) -> str:
    """Agno's tables in a schema of their own on the benchmark's server."""
    import targets.postgres as pg

    url = pg.URL.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return f"{url}#agno_{uuid.uuid4().hex[:8]}"


#: Backends where Agno has a sync db, and the target string its side is given.
AGNO_TARGETS: dict[str, Callable[[str], str]] = {
    "sqlite": lambda scratch: scratch,
    "postgres": _postgres_target,
}


def main() -> None:
    available = targets()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", nargs="*", default=sorted(available))
    parser.add_argument("--turns", type=int, default=300, help="measured turns per size")
    parser.add_argument("--block", type=int, default=25, help="turns per alternating block")
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--agno-python", help="the Python of a virtualenv with agno installed")
    parser.add_argument("--agno-turns", type=int, default=100, help="Agno's turns per size")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--chart", type=Path, help="draw ms/turn against session length (SVG)")
    args = parser.parse_args()

    server, base_url = start_server()
    rows: list[dict[str, object]] = []
    print(
        "| backend | prior runs | kern ms/turn | floor ms/turn | kern - floor ms | kern / floor "
        "| vs first size | Agno ms/turn |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    try:
        for name in args.backends:
            agno = (
                agno_times(args.agno_python, name, base_url, args.sizes, args.agno_turns)
                if args.agno_python
                else None
            )
            first = None
            for size, kern_ms, floor_ms in measure(
                available[name], base_url, args.sizes, args.turns, args.block
            ):
                first = first or kern_ms
                agno_ms = agno.get(size) if agno else None
                rows.append(
                    {
                        "backend": name,
                        "size": size,
                        "kern": kern_ms,
                        "floor": floor_ms,
                        "agno": agno_ms,
                    }
                )
                print(
                    f"| {name} | {size:,} | {kern_ms:.3f} | {floor_ms:.3f} | "
                    f"{kern_ms - floor_ms:+.3f} | {kern_ms / floor_ms:.2f}x | "
                    f"{kern_ms / first:.2f}x | {'' if agno_ms is None else f'{agno_ms:.3f}'} |",
                    flush=True,
                )
    finally:
        server.terminate()
        server.wait(timeout=10)
    results = {"rows": rows, "turns": args.turns, "agno_turns": args.agno_turns}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    if args.chart:
        from per_turn_chart import draw

        draw(results, args.chart)
        print(f"chart: {args.chart}")


if __name__ == "__main__":
    main()
