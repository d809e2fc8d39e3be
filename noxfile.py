"""Sessions beyond the test suite: benchmarks, lint, and installing the built wheels.

Sessions run inside the uv workspace environment (``uv run``), so they measure and test
exactly what ``uv run`` installs (the root project with its ``dev`` group: every workspace member).
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "tests"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (the README's test command)."""
    session.run("uv", "run", "pytest", *session.posargs, external=True)


@nox.session
def lint(session: nox.Session) -> None:
    """The README's lint: ruff, then mypy (strict; the plugins' relaxations in pyproject)."""
    session.run("uv", "run", "ruff", "check", ".", external=True)
    session.run("uv", "run", "ruff", "format", "--check", ".", external=True)
    session.run("uv", "run", "mypy", external=True)


@nox.session
def bench(session: nox.Session) -> None:
    """Per-turn wall time against the bare-client floor and Agno, at 0 to 10,000 prior runs;
    writes docs/per_turn.svg (figures go in docs/benchmarks.md). Run it as ``uv run --group
    bench nox -s bench``. Arguments replace the full run's: ``-- --backends sqlite --turns
    600`` (no Agno, no chart)."""
    agno = agno_python(session)
    full = [
        *(["--agno-python", agno] if agno else []),
        *("--sizes", "0", "100", "1000", "10000"),
        *("--json", "tmp/per_turn.json", "--chart", "docs/per_turn.svg"),
    ]
    session.run(
        "uv",
        "run",
        "--group",
        "bench",
        "python",
        "benchmarks/per_turn.py",
        *(session.posargs or full),
        external=True,
    )


@nox.session
def round_trips(session: nox.Session) -> None:
    """Statements (SQL) and commands (MongoDB) one agent turn sends, an append and a state
    change (figures in docs/benchmarks.md#round-trips-per-turn)."""
    session.run("uv", "run", "python", "benchmarks/round_trips.py", *session.posargs, external=True)


@nox.session
def retention(session: nox.Session) -> None:
    """apply_retention: rows removed per second and the cost of a call with nothing to remove,
    at 20k and 100k runs on every backend (docs/benchmarks.md#retention); ``-- --backends
    sqlite --runs 20000`` for a quick run."""
    session.run("uv", "run", "python", "benchmarks/retention.py", *session.posargs, external=True)


@nox.session
def recall(session: nox.Session) -> None:
    """Recall latency with vectors (hybrid, vector-only, lexical) on every backend, 100k
    memories over 1k users; ``-- --backends sqlite postgres``, ``-- --users 20 --queries 20``
    for a quick run, ``-- --db URL`` for the lexical-only figures (docs/benchmarks.md)."""
    session.run("uv", "run", "python", "benchmarks/recall.py", *session.posargs, external=True)


@nox.session
def learning_latency(session: nox.Session) -> None:
    """Per-turn latency with learning=True, extraction in the turn or in the background,
    against a 200 ms extraction (docs/benchmarks.md); ``-- --db URL`` for other backends."""
    session.run(
        "uv", "run", "python", "benchmarks/learning_latency.py", *session.posargs, external=True
    )


@nox.session
def quality(session: nox.Session) -> None:
    """Retrieval quality (hit@5, hit@10, MRR) of lexical, vector and hybrid recall per backend."""
    session.run("uv", "run", "python", "benchmarks/quality.py", *session.posargs, external=True)


@nox.session
def vector_paths(session: nox.Session) -> None:
    """Each SQL backend's vector search paths side by side (figures in docs/backends/)."""
    for backend in session.posargs or ["sqlite", "duckdb"]:
        session.run("uv", "run", "python", f"benchmarks/vector_paths/{backend}.py", external=True)


@nox.session
def transfer(session: nox.Session) -> None:
    """kern copy into each backend (rows/s) and kern export's peak memory at 50k/500k runs."""
    session.run("uv", "run", "python", "benchmarks/transfer.py", *session.posargs, external=True)


@nox.session
def wheels(session: nox.Session) -> None:
    """Build every distribution and import every backend from a fresh virtualenv."""
    session.run("uv", "run", "pytest", "tests/test_layout.py", "-q", external=True)


@nox.session
def stress(session: nox.Session) -> None:
    """kill -9 during turns: no committed run lost, no state ahead of its runs."""
    session.run("uv", "run", "python", "benchmarks/kill_stress.py", *session.posargs, external=True)


@nox.session
def console(session: nox.Session) -> None:
    """The console on a session of 10,000 runs: server time of its page (SQLite, Postgres;
    target under 100 ms). Figures in docs/console.md."""
    session.run("uv", "run", "python", "benchmarks/console.py", *session.posargs, external=True)


#: What the throughput session installs for Agno's side, in a virtualenv of its own (agno is
#: never a dependency of kern): Agno, pinned so that figures compare, and its drivers.
AGNO_VENV = ".kern-test/agno-venv"
AGNO_REQUIREMENTS = (
    "agno==3.1.10",
    "openai",
    "sqlalchemy[asyncio]",
    "psycopg[binary]",
    "aiosqlite",
    "redis",
    "pymongo",
)


def agno_python(session: nox.Session) -> str | None:
    """The Python of Agno's own virtualenv (built here, kept for the next run), or None
    (warned) if it could not be installed: the benchmark then runs without Agno."""
    python = f"{AGNO_VENV}/bin/python"
    try:
        session.run("python3", "-m", "venv", AGNO_VENV, external=True)
        session.run(python, "-m", "pip", "install", "-q", *AGNO_REQUIREMENTS, external=True)
    except nox.command.CommandFailed as exc:
        session.warn(f"no Agno figures: installing agno failed ({exc}); see pip's output above")
        return None
    return python


@nox.session
def throughput(session: nox.Session) -> None:
    """Async turns/s at C = 1, 10, 50, 200 sessions on one event loop: kern's async dbs
    against the async floor and Agno (installed in .kern-test/agno-venv; without it the run
    goes on with kern and the floor); writes docs/throughput.svg and a cProfile of each
    backend at C=50. Run it as ``uv run --group bench nox -s throughput``. Arguments replace
    the full run's: ``-- --backends sqlite --concurrency 1 10 --turns 3`` (no chart)."""
    python = agno_python(session)
    agno = ["--agno-python", python] if python else []
    full = ["--chart", "docs/throughput.svg", "--profile", "sqlite", "postgres", "redis", "mongo"]
    session.run(
        "uv",
        "run",
        "--group",
        "bench",
        "python",
        "benchmarks/throughput.py",
        *agno,
        *(session.posargs or full),
        external=True,
    )


@nox.session
def cold_start(session: nox.Session) -> None:
    """Seconds a fresh process takes to import kern (the agent import line, ``kern --help``,
    ``kern sessions``) and the -X importtime top entries; target: import line under 0.3 s
    median. Figures in docs/benchmarks.md#cold-start."""
    session.run("uv", "run", "python", "benchmarks/cold_start.py", *session.posargs, external=True)
