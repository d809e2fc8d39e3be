"""Async throughput: agent turns per second with C sessions at once on one event loop.

A *session* makes ``--turns`` turns one after the other; C sessions run together under
``asyncio.gather``, and a batch's throughput is its turns over its wall time (small C runs
several rounds of C sessions, so that every batch makes at least ``--min-turns`` turns).
A turn is what a chat server does per message (``benchmarks/per_turn.py``): read the
session's last 3 runs, call the model, store the new run. Three sides make the same turns:

- kern: ``await Agent(..., db=<Async*Db>, add_history_to_context=True).arun(...)``;
- the floor: ``AsyncOpenAI`` plus the raw async driver doing the same storage work
  (``benchmarks/throughput/backends.py``);
- Agno, when ``--agno-python`` names an interpreter that has it (``nox -s throughput``
  builds one): ``benchmarks/agno_side/throughput_agno.py`` in that interpreter, its JSON
  merged here.

The model is ``benchmarks/throughput/model_server.py``: the scripted server's answers from
an asyncio server in ``--workers`` processes; its own ceiling (requests/s to a client that
costs almost nothing) is measured first and printed beside kern's threaded scripted server's.
Kern and the floor alternate within each repetition; figures are medians of ``--repeats``,
each row with the 1-minute load average when it was taken (the machine is shared).

    uv run --group bench nox -s throughput                    # everything, Agno included
    uv run python benchmarks/throughput.py --concurrency 1 10 --turns 3 --backends sqlite
    uv run python benchmarks/throughput.py --backends postgres --concurrency 50 \\
        --profile postgres                        # + kern and the floor under cProfile at C=50
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import math
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import ceiling, model_server
from throughput.backends import BACKENDS, Backend, Floor, open_backend

from kern.agent import Agent
from kern.models.openai import OpenAIChat

HISTORY_RUNS = 3
HERE = Path(__file__).resolve().parent
AGNO_SCRIPT = HERE / "agno_side" / "throughput_agno.py"
DEFAULT_JSON = HERE.parent / "tmp" / "throughput.json"

#: One session's turns; returns the last reply (checked against the session's own history).
SessionRun = Callable[[str, str, int], Awaitable[str]]


def check_reply(reply: str, prefix: str, turns: int) -> None:
    """The last reply echoes the session's own earlier messages, no more than 3 runs back:
    history reached the model, and no other session's did."""
    if turns >= 2 and f'"{prefix} turn {turns - 2}"' not in reply:
        raise AssertionError(f"turn {turns - 1} of {prefix} missed its history: {reply!r}")
    if turns > HISTORY_RUNS + 1 and f'"{prefix} turn {turns - HISTORY_RUNS - 2}"' in reply:
        raise AssertionError(f"{prefix} got more than {HISTORY_RUNS} runs of history: {reply!r}")


@dataclass(frozen=True)
class Batch:
    """One batch: its turns, wall time and this process's CPU time (all its threads)."""

    turns: int
    seconds: float
    cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.turns / self.seconds

    @property
    def cpu_ms(self) -> float:
        """CPU per turn in this process: what one event loop has to spend on each turn."""
        return self.cpu_seconds * 1000 / self.turns


async def batch(run: SessionRun, concurrency: int, turns: int, min_turns: int) -> Batch:
    """``concurrency`` sessions at once, in rounds until at least ``min_turns`` turns."""
    rounds = max(1, math.ceil(min_turns / (concurrency * turns)))
    tag = uuid.uuid4().hex[:8]
    began, cpu = time.perf_counter(), time.process_time()
    for r in range(rounds):
        prefixes = [f"s{i}r{r}{tag}" for i in range(concurrency)]
        replies = await asyncio.gather(*(run(p, f"u{i}", turns) for i, p in enumerate(prefixes)))
        for prefix, reply in zip(prefixes, replies, strict=True):
            check_reply(reply, prefix, turns)
    return Batch(
        rounds * concurrency * turns, time.perf_counter() - began, time.process_time() - cpu
    )


def kern_session(agent: Agent) -> SessionRun:
    async def run(prefix: str, user_id: str, turns: int) -> str:
        reply = ""
        for n in range(turns):
            out = await agent.arun(f"{prefix} turn {n}", session_id=prefix, user_id=user_id)
            reply = str(out.content)
        return reply

    return run


def floor_session(floor: Floor, client: openai.AsyncOpenAI) -> SessionRun:
    async def run(prefix: str, user_id: str, turns: int) -> str:
        reply = ""
        for n in range(turns):
            history = await floor.last_messages(prefix, HISTORY_RUNS)
            user = {"role": "user", "content": f"{prefix} turn {n}"}
            answer = await client.chat.completions.create(
                model="bench",
                messages=[*history, user],  # type: ignore[list-item]
            )
            reply = answer.choices[0].message.content or ""
            messages = [user, {"role": "assistant", "content": reply}]
            await floor.append(prefix, user["content"], messages, reply)
        return reply

    return run


async def agno_side(
    python: str, backend: Backend, base_url: str, concurrency: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Agno's figures for one backend and C, from its own interpreter (or why there are none)."""
    process = await asyncio.create_subprocess_exec(
        python,
        str(AGNO_SCRIPT),
        "--backend",
        backend.name,
        "--target",
        backend.agno_target,
        "--base-url",
        base_url,
        "--concurrency",
        str(concurrency),
        "--turns",
        str(args.turns),
        "--min-turns",
        str(args.min_turns),
        "--repeats",
        str(args.repeats),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "AGNO_TELEMETRY": "false"},
    )
    out, err = await process.communicate()
    lines = out.decode().strip().splitlines()
    if process.returncode != 0 or not lines:
        tail = err.decode().strip().splitlines()[-3:]
        return {"error": f"exit {process.returncode}: {' | '.join(tail)}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def package_of(filename: str) -> str:
    """Who a profiled function belongs to: a distribution, kern's core or a plugin, asyncio,
    another stdlib module, or C built-ins (counted apart: cProfile names no owner)."""
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/kern_core/src/kern/" in filename:
        return "kern (core)"
    if "/plugins/" in filename:
        return filename.split("/plugins/", 1)[1].split("/", 1)[0]
    if "/benchmarks/" in filename:
        return "benchmark"
    if "/asyncio/" in filename:
        return "asyncio"
    if filename.startswith(("~", "<")):
        return "C built-ins"
    return "stdlib: " + Path(filename).stem


def by_package(stats: pstats.Stats, turns: int) -> dict[str, float]:
    """Own time (tottime) per turn, in ms, summed by ``package_of``."""
    totals: dict[str, float] = {}
    for (filename, _, _), row in stats.stats.items():  # type: ignore[attr-defined]
        package = package_of(filename)
        totals[package] = totals.get(package, 0.0) + row[2] * 1000 / turns
    return totals


async def profiled(run: SessionRun, args: argparse.Namespace, out: Path) -> dict[str, float]:
    """One batch under cProfile: its top entries printed, its stats saved to ``out``, and
    its own time per turn by package returned."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        done = await batch(run, args.profile_concurrency, args.turns, args.min_turns)
    finally:
        profiler.disable()
    profiler.dump_stats(out)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(25)
    print(f"\n## profile ({out}): {done.turns} turns\n{text.getvalue()}", flush=True)
    return by_package(stats, done.turns)


def profile_table(label: str, kern: dict[str, float], floor: dict[str, float]) -> str:
    """kern's and the floor's own time per turn by package, the largest differences first."""
    lines = [
        f"{label}: own time per turn under cProfile (ms; cProfile slows Python code alike "
        "on both sides)",
        "",
        "| package | kern ms/turn | floor ms/turn | kern - floor |",
        "|---|---:|---:|---:|",
    ]
    names = sorted(set(kern) | set(floor), key=lambda n: -abs(kern.get(n, 0.0) - floor.get(n, 0.0)))
    for name in names:
        k, f = kern.get(name, 0.0), floor.get(name, 0.0)
        if max(k, f) >= 0.01:
            lines.append(f"| {name} | {k:.2f} | {f:.2f} | {k - f:+.2f} |")
    k, f = sum(kern.values()), sum(floor.values())
    lines.append(f"| **total** | **{k:.2f}** | **{f:.2f}** | **{k - f:+.2f}** |")
    return "\n".join(lines)


def source_state() -> str:
    """The commit measured, and whether the work tree differed from it (read-only git)."""

    def git(*command: str) -> str:
        done = subprocess.run(["git", *command], capture_output=True, text=True, cwd=HERE)
        return done.stdout.strip()

    changed = len(git("status", "--porcelain", "--untracked-files=no").splitlines())
    return f"{git('rev-parse', '--short', 'HEAD')}" + (
        f" + {changed} changed files in the work tree" if changed else ""
    )


def load() -> float:
    return os.getloadavg()[0]


async def measure_backend(
    name: str,
    base_url: str,
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    profiles: dict[str, Any],
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        backend = await open_backend(name, Path(scratch), args.postgres_engine_kwargs)
        client = openai.AsyncOpenAI(base_url=base_url, api_key="bench")
        model = OpenAIChat(id="bench", base_url=base_url, api_key="bench")
        try:
            agent = Agent(
                model=model,
                db=backend.kern,
                add_history_to_context=True,
                num_history_runs=HISTORY_RUNS,
            )
            sides = {
                "kern": kern_session(agent),
                "floor": floor_session(backend.floor, client),
            }
            for run in sides.values():  # tables, pools and code paths warmed up
                await batch(run, 10, args.turns, 0)
            for concurrency in args.concurrency:
                figures: dict[str, list[Batch]] = {side: [] for side in sides}
                for repeat in range(args.repeats):
                    order = list(sides) if repeat % 2 == 0 else list(reversed(sides))
                    for side in order:
                        figures[side].append(
                            await batch(sides[side], concurrency, args.turns, args.min_turns)
                        )
                row: dict[str, Any] = {"backend": name, "concurrency": concurrency}
                for side, batches in figures.items():
                    row[side] = statistics.median(b.per_second for b in batches)
                    row[f"{side}_runs"] = [round(b.per_second, 1) for b in batches]
                    row[f"{side}_cpu_ms"] = statistics.median(b.cpu_ms for b in batches)
                row["load"] = load()
                if args.agno_python:
                    agno = await agno_side(args.agno_python, backend, base_url, concurrency, args)
                    row["agno"] = agno.get("median")
                    row["agno_runs"] = agno.get("runs")
                    row["agno_cpu_ms"] = agno.get("cpu_ms")
                    row["agno_db"] = agno.get("db_class")
                    row["agno_version"] = agno.get("agno_version")
                    row["agno_error"] = agno.get("error")
                    row["load_agno"] = load()
                rows.append(row)
                print(table_row(row), flush=True)
            if name in args.profile:
                folder = args.json.parent
                folder.mkdir(parents=True, exist_ok=True)
                found = {
                    side: await profiled(
                        run,
                        args,
                        folder / f"throughput-{side}-{name}-C{args.profile_concurrency}.pstats",
                    )
                    for side, run in sides.items()
                }
                table = profile_table(
                    f"{name}, C={args.profile_concurrency}", found["kern"], found["floor"]
                )
                profiles[name] = {"table": table, **found}
                print(f"\n{table}\n", flush=True)
        finally:
            await model.get_async_client().close()  # on this loop, before it closes
            await client.close()
            await backend.close()


TABLE_HEAD = (
    "| backend | C | kern turns/s | floor turns/s | kern / floor | Agno turns/s | Agno / floor "
    "| CPU ms/turn kern, floor, Agno | load |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def table_row(row: dict[str, Any]) -> str:
    agno = row.get("agno")
    if agno:
        agno_cells = f"{agno:,.0f} | {agno / row['floor']:.2f}x"
        agno_cpu = f"{row['agno_cpu_ms']:.2f}" if row.get("agno_cpu_ms") else "-"
    else:
        agno_cells, agno_cpu = f"{row.get('agno_error') or 'not run'} | -", "-"
    cpu = f"{row['kern_cpu_ms']:.2f}, {row['floor_cpu_ms']:.2f}, {agno_cpu}"
    loads = f"{row['load']:.1f}" + (f", {row['load_agno']:.1f}" if "load_agno" in row else "")
    return (
        f"| {row['backend']} | {row['concurrency']} | {row['kern']:,.0f} | {row['floor']:,.0f} "
        f"| {row['kern'] / row['floor']:.2f}x | {agno_cells} | {cpu} | {loads} |"
    )


async def ceilings(
    base_url: str, concurrency: list[int], requests: int, workers: int
) -> list[dict[str, Any]]:
    """The model server's ceiling at each C, and kern's threaded scripted server's."""
    scripted = subprocess.Popen(
        [sys.executable, "-m", "kern.testing.scripted_server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert scripted.stdout is not None
    scripted_url = scripted.stdout.readline().strip()
    rows = []
    try:
        print(
            f"| C | model_server.py ({workers} processes) req/s | scripted_server.py "
            "(threaded) req/s | load |\n|---:|---:|---:|---:|"
        )
        for c in concurrency:
            ours = await ceiling.measure(base_url, c, requests)
            theirs = await ceiling.measure(scripted_url, c, requests)
            rows.append({"concurrency": c, "server": ours, "scripted": theirs, "load": load()})
            print(f"| {c} | {ours:,.0f} | {theirs:,.0f} | {load():.1f} |", flush=True)
    finally:
        scripted.terminate()
        scripted.wait(timeout=10)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", nargs="*", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 10, 50, 200])
    parser.add_argument("--turns", type=int, default=10, help="turns per session")
    parser.add_argument("--min-turns", type=int, default=200, help="turns per batch, at least")
    parser.add_argument("--repeats", type=int, default=3, help="batches per side (median)")
    parser.add_argument("--workers", type=int, default=2, help="model server processes")
    parser.add_argument("--agno-python", help="an interpreter with agno (nox -s throughput)")
    parser.add_argument(
        "--profile", nargs="*", default=[], help="backends to profile (cProfile, both sides)"
    )
    parser.add_argument("--profile-concurrency", type=int, default=50, help="C of the profile")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results file")
    parser.add_argument("--chart", type=Path, help="an SVG chart (matplotlib: --group bench)")
    parser.add_argument("--ceiling-requests", type=int, default=4000)
    parser.add_argument(
        "--postgres-engine-kwargs",
        type=json.loads,
        help="JSON for AsyncPostgresDb(engine_kwargs=...), e.g. '{\"pool_pre_ping\": false}'",
    )
    args = parser.parse_args()

    server, base_url = model_server.start(args.workers)
    started = time.time()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": " ".join(sys.argv),
        "python": sys.version.split()[0],
        "source": source_state(),
        "cpus": os.cpu_count(),
        "turns": args.turns,
        "min_turns": args.min_turns,
        "repeats": args.repeats,
        "workers": args.workers,
        "postgres_engine_kwargs": args.postgres_engine_kwargs,
        "rows": [],
        "profiles": {},
    }
    try:
        results["ceiling"] = asyncio.run(
            ceilings(base_url, args.concurrency, args.ceiling_requests, args.workers)
        )
        print(f"\n{TABLE_HEAD}", flush=True)
        for name in args.backends:
            asyncio.run(measure_backend(name, base_url, args, results["rows"], results["profiles"]))
    finally:
        server.terminate()
        server.wait(timeout=10)
        results["seconds"] = round(time.time() - started)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
        print(f"\n{results['seconds']} s; results in {args.json}", flush=True)
    if args.chart:
        from throughput.chart import draw

        draw(results, args.chart)
        print(f"chart: {args.chart}")


if __name__ == "__main__":
    main()
