"""Cold start: how long a fresh process takes before kern can do anything (issue 18).

A CLI command, a serverless function or a test run starts a new interpreter every time, so
what ``import kern...`` costs is paid on every call. Timed, ``--runs`` times each in a fresh
process (after one warm-up run that writes the bytecode caches):

- the import line of an agent on SQLite with an OpenAI model
  (``from kern.agent import Agent; from kern.db.sqlite import SqliteDb;
  from kern.models.openai import OpenAIChat``), target: median under 0.3 s;
- ``python -m kern.cli --help``;
- ``python -m kern.cli sessions --db sqlite:///<tmp>/x.db --json`` on an empty database
  (this one opens the database, so it imports SQLAlchemy);
- ``python -c pass``, the interpreter alone, for reference.

Each process's wall time (median and p90) and CPU time (user + system, median: less
sensitive than wall time to other work on the machine) are reported with the load average,
then the modules that cost the import line most, from ``python -X importtime``.

Bytecode. An installed kern and its dependencies have ``.pyc`` files; a virtualenv whose
installer wrote none (uv does not by default) run under ``PYTHONDONTWRITEBYTECODE=1``
compiles every module it imports from source at every start, pydantic's and the SDK's
included. The runs use a bytecode cache of their own (``PYTHONPYCACHEPREFIX`` in a
temporary folder, written by the warm-up run), as an installed kern would;
``--no-bytecode-cache`` measures the other case.

    uv run nox -s cold_start
    uv run python benchmarks/cold_start.py --runs 40
    # before/after: the sources of another checkout (e.g. `git archive HEAD | tar -x -C DIR`)
    uv run python benchmarks/cold_start.py --tree DIR
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

IMPORT_LINE = (
    "from kern.agent import Agent; from kern.db.sqlite import SqliteDb; "
    "from kern.models.openai import OpenAIChat"
)

#: The budget of the import line's median wall time (issue 18).
TARGET_S = 0.3


@dataclass
class Timing:
    name: str
    walls: list[float]
    cpus: list[float]

    def row(self) -> str:
        wall = statistics.median(self.walls)
        return (
            f"| {self.name} | {wall:.3f} | {percentile(self.walls, 0.9):.3f} "
            f"| {statistics.median(self.cpus):.3f} |"
        )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def environment(tree: Path | None, cache: Path | None) -> dict[str, str]:
    """The children's environment: ``tree``'s sources first on the path, and the bytecode
    cache (or none)."""
    env = dict(os.environ)
    if cache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(cache)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    if tree is not None:
        # The editable install puts this checkout's src folders on sys.path; the tree's come
        # first, so its modules are the ones imported (kern's namespace takes both folders).
        sources = [tree / "kern_core" / "src", *sorted((tree / "plugins").glob("*/src"))]
        env["PYTHONPATH"] = os.pathsep.join(str(path) for path in sources)
    return env


def run_once(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh process running ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(name: str, command: list[str], env: dict[str, str], runs: int) -> Timing:
    run_once(command, env)  # warm-up: bytecode caches, the empty database's tables
    timing = Timing(name, [], [])
    for _ in range(runs):
        wall, cpu = run_once(command, env)
        timing.walls.append(wall)
        timing.cpus.append(cpu)
    return timing


_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def importtime_top(env: dict[str, str], count: int) -> list[tuple[float, float, str]]:
    """The ``count`` modules with the largest cumulative import time in the import line
    (median of three runs): (cumulative ms, self ms, module indented by depth)."""
    samples: dict[str, list[tuple[float, float]]] = {}
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", IMPORT_LINE],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        for line in done.stderr.splitlines():
            found = _IMPORTTIME.match(line)
            if found:
                own, cumulative, indent, module = found.groups()
                label = " " * (len(indent) - 1) + module
                samples.setdefault(label, []).append((int(cumulative) / 1e3, int(own) / 1e3))
    rows = [
        (statistics.median(c for c, _ in times), statistics.median(s for _, s in times), label)
        for label, times in samples.items()
    ]
    return sorted(rows, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="fresh processes per command")
    parser.add_argument("--top", type=int, default=15, help="-X importtime entries to show")
    parser.add_argument(
        "--tree", type=Path, help="import kern from this checkout's sources instead"
    )
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="no cache of the run's own: what has no .pyc compiles at every start",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kern-cold-") as tmp:
        cache = None if args.no_bytecode_cache else Path(tmp) / "pycache"
        env = environment(args.tree, cache)
        py = sys.executable
        sessions = ["sessions", "--db", f"sqlite:///{tmp}/x.db", "--json"]
        cases = [
            ("import line", [py, "-c", IMPORT_LINE]),
            ("kern --help", [py, "-m", "kern.cli", "--help"]),
            ("kern sessions (empty SQLite)", [py, "-m", "kern.cli", *sessions]),
            ("python -c pass", [py, "-c", "pass"]),
        ]
        load_before = os.getloadavg()
        timings = [measure(name, command, env, args.runs) for name, command in cases]
        load_after = os.getloadavg()
        top = importtime_top(env, args.top)

    source = args.tree or REPO
    caching = "none (from source)" if args.no_bytecode_cache else "cached"
    print(f"kern from {source}; bytecode: {caching}; {args.runs} runs each; Python {sys.version}")
    print(
        f"load average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in load_before)} before, "
        f"{' '.join(f'{x:.2f}' for x in load_after)} after; {os.cpu_count()} CPUs\n"
    )
    print("| command | wall median (s) | wall p90 (s) | CPU median (s) |")
    print("|---|---:|---:|---:|")
    for timing in timings:
        print(timing.row())
    median = statistics.median(timings[0].walls)
    verdict = "within" if median <= TARGET_S else "OVER"
    print(f"\nimport line: median {median:.3f} s, {verdict} the {TARGET_S} s budget\n")
    print(f"-X importtime of the import line, top {args.top} by cumulative time (ms):\n")
    print("| cumulative | self | module |")
    print("|---:|---:|---|")
    for cumulative, own, label in top:
        print(f"| {cumulative:.1f} | {own:.1f} | `{label}` |")


if __name__ == "__main__":
    main()
