"""Agno's side of the async throughput benchmark: the same sessions on Agno's Agent and dbs.

Agno is never a dependency of kern: this runs in a virtualenv of its own (``nox -s
throughput`` builds ``.kern-test/agno-venv``), called by ``benchmarks/throughput.py`` once
per backend and concurrency with the same model server, and prints one JSON line: the
turns/s of each repetition and their median. It imports nothing from kern, so the scenario
(``batch``, ``check_reply``) is restated here; keep it in step with ``throughput.py``.

Agno's classes: ``AsyncPostgresDb`` (SQLAlchemy's async engine on psycopg, as kern),
``AsyncSqliteDb`` (aiosqlite), ``AsyncMongoDb`` (pymongo's async client) and, for Redis,
where Agno has no async class, its sync ``RedisDb``, used from ``arun`` as Agno does.
Telemetry is off (the benchmark has no network, and it is not storage work).

    python benchmarks/agno_side/throughput_agno.py --backend sqlite --target /tmp/x \\
        --base-url http://127.0.0.1:PORT/v1 --concurrency 10
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import math
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("AGNO_TELEMETRY", "false")

from agno.agent import Agent
from agno.models.openai import OpenAIChat

HISTORY_RUNS = 3


def agno_db(backend: str, target: str) -> Any:
    """Agno's db for ``backend``; ``target`` is ``URL#schema-or-prefix``, or a folder."""
    url, _, name = target.partition("#")
    if backend == "postgres":
        from agno.db.postgres import AsyncPostgresDb

        return AsyncPostgresDb(db_url=url, db_schema=name)
    if backend == "sqlite":
        from agno.db.sqlite import AsyncSqliteDb

        return AsyncSqliteDb(db_file=str(Path(target) / "agno.db"))
    if backend == "mongo":
        from agno.db.mongo import AsyncMongoDb

        return AsyncMongoDb(db_url=url, db_name=name)
    if backend == "redis":
        from agno.db.redis import RedisDb

        return RedisDb(db_url=url, db_prefix=name)
    raise SystemExit(f"no Agno db for {backend}")


def check_reply(reply: str, prefix: str, turns: int) -> None:
    """As in throughput.py: the session's own history, no more than 3 runs back."""
    if turns >= 2 and f'"{prefix} turn {turns - 2}"' not in reply:
        raise AssertionError(f"turn {turns - 1} of {prefix} missed its history: {reply!r}")
    if turns > HISTORY_RUNS + 1 and f'"{prefix} turn {turns - HISTORY_RUNS - 2}"' in reply:
        raise AssertionError(f"{prefix} got more than {HISTORY_RUNS} runs of history: {reply!r}")


async def session(agent: Agent, prefix: str, user_id: str, turns: int) -> str:
    reply = ""
    for n in range(turns):
        out = await agent.arun(f"{prefix} turn {n}", session_id=prefix, user_id=user_id)
        reply = str(out.content)
    return reply


async def batch(agent: Agent, concurrency: int, turns: int, min_turns: int) -> tuple[float, float]:
    """Turns per second of ``concurrency`` sessions at once, in rounds up to ``min_turns``,
    and this process's CPU ms per turn."""
    rounds = max(1, math.ceil(min_turns / (concurrency * turns)))
    tag = uuid.uuid4().hex[:8]
    began, cpu = time.perf_counter(), time.process_time()
    for r in range(rounds):
        prefixes = [f"s{i}r{r}{tag}" for i in range(concurrency)]
        replies = await asyncio.gather(
            *(session(agent, p, f"u{i}", turns) for i, p in enumerate(prefixes))
        )
        for prefix, reply in zip(prefixes, replies, strict=True):
            check_reply(reply, prefix, turns)
    done = rounds * concurrency * turns
    cpu_ms = (time.process_time() - cpu) * 1000 / done
    return done / (time.perf_counter() - began), cpu_ms


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    db = agno_db(args.backend, args.target)
    agent = Agent(
        model=OpenAIChat(id="bench", base_url=args.base_url, api_key="bench"),
        db=db,
        add_history_to_context=True,
        num_history_runs=HISTORY_RUNS,
        telemetry=False,
    )
    await batch(agent, min(10, args.concurrency), args.turns, 0)  # tables, pools, code paths
    batches = [
        await batch(agent, args.concurrency, args.turns, args.min_turns)
        for _ in range(args.repeats)
    ]
    runs = [per_second for per_second, _ in batches]
    return {
        "backend": args.backend,
        "concurrency": args.concurrency,
        "db_class": type(db).__name__,
        "agno_version": importlib.metadata.version("agno"),
        "runs": runs,
        "median": statistics.median(runs),
        "cpu_ms": statistics.median(cpu_ms for _, cpu_ms in batches),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--min-turns", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args))), flush=True)


if __name__ == "__main__":
    main()
