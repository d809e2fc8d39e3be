"""Agno's side of the per-turn benchmark: the same turn on Agno's sync Agent and db, at
growing session lengths.

Agno is never a dependency of kern: this runs in a virtualenv of its own (``nox -s bench``
builds ``.kern-test/agno-venv``), called by ``benchmarks/per_turn.py`` once per backend with
the same model server, and prints one JSON line: the median ms per turn at each size. It
imports nothing from kern, so the turn (``message number n``, the last 3 runs as history)
is restated here; keep it in step with ``per_turn.py``.

Each size gets its own session, pre-filled through Agno's own API with that many completed
runs (one ``upsert_session`` of an ``AgentSession`` holding them: running the turns would
take hours at 10,000), then 20 warm-up turns and ``--turns`` measured ones.

    python benchmarks/agno_side/per_turn_agno.py --backend sqlite --target /tmp/x \\
        --base-url http://127.0.0.1:PORT/v1 --sizes 0 1000 --turns 100
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("AGNO_TELEMETRY", "false")

from agno.agent import Agent
from agno.models.message import Message
from agno.models.openai import OpenAIChat
from agno.run.agent import RunOutput
from agno.run.base import RunStatus
from agno.session import AgentSession

HISTORY_RUNS = 3
AGENT_ID = "bench-agent"


def agno_db(backend: str, target: str) -> Any:
    """Agno's sync db for ``backend``; ``target`` is ``URL#schema-or-prefix``, or a folder."""
    url, _, name = target.partition("#")
    if backend == "postgres":
        from agno.db.postgres import PostgresDb

        return PostgresDb(db_url=url, db_schema=name)
    if backend == "sqlite":
        from agno.db.sqlite import SqliteDb

        return SqliteDb(db_file=str(Path(target) / "agno.db"))
    if backend == "mongo":
        from agno.db.mongo import MongoDb

        return MongoDb(db_url=url, db_name=name)
    if backend == "redis":
        from agno.db.redis import RedisDb

        return RedisDb(db_url=url, db_prefix=name)
    raise SystemExit(f"no Agno db for {backend}")


def prior_run(session_id: str, n: int) -> RunOutput:
    """A completed turn as Agno stores one: the user's message and the answer."""
    return RunOutput(
        run_id=uuid.uuid4().hex,
        agent_id=AGENT_ID,
        session_id=session_id,
        input=None,
        content=f"an answer to message {n}",
        messages=[
            Message(role="user", content=f"message number {n}"),
            Message(role="assistant", content=f"an answer to message {n}"),
        ],
        status=RunStatus.completed,
        created_at=int(time.time()),
    )


def seed(db: Any, session_id: str, prior: int) -> None:
    if prior == 0:
        return
    runs = [prior_run(session_id, n) for n in range(prior)]
    now = int(time.time())
    db.upsert_session(
        AgentSession(
            session_id=session_id,
            agent_id=AGENT_ID,
            runs=runs,  # type: ignore[arg-type]
            created_at=now,
            updated_at=now,
        )
    )


def measure(agent: Agent, db: Any, size: int, turns: int) -> float:
    session_id = f"agno-{size}-{uuid.uuid4().hex[:8]}"
    seed(db, session_id, size)
    for warm in range(20):
        agent.run(f"message number {-warm - 1}", session_id=session_id)
    times = []
    for n in range(turns):
        began = time.perf_counter()
        agent.run(f"message number {n}", session_id=session_id)
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--sizes", type=int, nargs="+", required=True)
    parser.add_argument("--turns", type=int, default=100)
    args = parser.parse_args()
    db = agno_db(args.backend, args.target)
    agent = Agent(
        id=AGENT_ID,
        model=OpenAIChat(id="bench", base_url=args.base_url, api_key="bench"),
        db=db,
        add_history_to_context=True,
        num_history_runs=HISTORY_RUNS,
        telemetry=False,
    )
    medians = {size: measure(agent, db, size, args.turns) for size in args.sizes}
    print(
        json.dumps(
            {
                "backend": args.backend,
                "agno_version": importlib.metadata.version("agno"),
                "ms_per_turn": medians,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
