"""The console on a long session: server time to open a session of 10,000 runs.

A session of ``--runs`` runs (a user message, a tool call and its result, an answer; every
tenth turn a team turn with two member runs) is written through ``import_records`` with
its seqs, then the console app (``kern.console.create_app`` on the backend's async Db) is
called in-process, as uvicorn calls it, with no HTTP client or socket in the way: the time
is the server's handling of the request, from the ASGI call to the last byte of the body.

Timed, each ``--repeat`` times after a warm-up: the session's page (HTML, its newest page
of 50 runs), the same page in the middle of the session (``?before=<half>``), and the API's
``GET /api/sessions/{id}``. The page reads one page of runs through the ``(session_id,
seq)`` index, never the session, so its time should not depend on ``--runs``. Target:
median and p95 under 100 ms on SQLite and Postgres.

    uv run nox -s console
    uv run python benchmarks/console.py --backends sqlite --runs 100000 --repeat 100

Postgres: ``KERN_BENCH_POSTGRES_URL``, else ``KERN_TEST_POSTGRES_URL``, else
``postgresql://postgres@127.0.0.1:5432/postgres``; the runs go into a schema made for this
run and dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kern.console import create_app
from kern.db import connect
from kern.db.transfer import RecordPage
from kern.records import Message, Run, Session, ToolCall

TOKEN = "bench-token-" + "b" * 32
PAGE = 1000
POSTGRES = (
    os.environ.get("KERN_BENCH_POSTGRES_URL")
    or os.environ.get("KERN_TEST_POSTGRES_URL")
    or "postgresql://postgres@127.0.0.1:5432/postgres"
)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def runs_of(session_id: str, count: int) -> Iterator[Run]:
    """``count`` runs with seqs 1..count: turns with tool traffic, some with members."""
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    seq = 0
    turn = 0
    while seq < count:
        turn += 1
        leader = f"{session_id}-t{turn}"
        if turn % 10 == 0 and seq + 3 <= count:  # a team turn: two members, then the leader
            for member in ("researcher", "writer"):
                seq += 1
                yield Run(
                    run_id=f"{leader}-{member}",
                    session_id=session_id,
                    seq=seq,
                    parent_run_id=leader,
                    component_id=member,
                    input=f"part of turn {turn}",
                    messages=[Message(role="assistant", content=f"{member} notes for {turn}")],
                    created_at=t0 + timedelta(seconds=seq),
                )
        seq += 1
        call = ToolCall(id=f"c{turn}", name="lookup", arguments=f'{{"turn": {turn}}}')
        yield Run(
            run_id=leader,
            session_id=session_id,
            seq=seq,
            component_id="helper",
            user_id="bench-user",
            input=f"question number {turn}: what about the weekend plan?",
            messages=[
                Message(role="user", content=f"question number {turn}: what about the plan?"),
                Message(role="assistant", tool_calls=[call]),
                Message(role="tool", tool_call_id=call.id, name="lookup", content="3 results"),
                Message(role="assistant", content=f"Answer {turn}: Saturday is free. " * 3),
            ],
            output=f"Answer {turn}",
            metrics={"input_tokens": 120, "output_tokens": 30},
            created_at=t0 + timedelta(seconds=seq),
        )


def seed(url: str, options: dict[str, Any], session_id: str, count: int) -> float:
    """Write the session and its runs (sync Db, ``import_records``); seconds taken."""
    started = time.perf_counter()
    db = connect(url, **options)
    try:
        session = Session(session_id=session_id, user_id="bench-user", component_id="helper")
        db.import_records(RecordPage("sessions", [session]))
        batch: list[Run] = []
        for run in runs_of(session_id, count):
            batch.append(run)
            if len(batch) == PAGE:
                db.import_records(RecordPage("runs", batch))
                batch = []
        if batch:
            db.import_records(RecordPage("runs", batch))
    finally:
        db.close()
    return time.perf_counter() - started


async def call(app: Any, path: str, query: str = "") -> tuple[float, int, bytes]:
    """One GET through the ASGI app: seconds, status, body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {TOKEN}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("bench", 80),
    }
    status = 0
    body = bytearray()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    started = time.perf_counter()
    await app(scope, receive, send)
    return time.perf_counter() - started, status, bytes(body)


async def measure(db: Any, session_id: str, count: int, repeat: int) -> dict[str, list[float]]:
    app = create_app(db=db, token=TOKEN)
    half = count // 2
    targets = {
        "page, newest": (f"/sessions/{session_id}", ""),
        "page, middle": (f"/sessions/{session_id}", f"before={half}"),
        "api, newest": (f"/api/sessions/{session_id}", ""),
    }
    _, status, body = await call(app, *targets["page, newest"])
    assert status == 200, body[:500]
    assert f">#{count}<".encode() in body, "the newest run is not on the page"
    assert b">#1<" not in body or count <= 50, "the page read more than one page of runs"
    times: dict[str, list[float]] = {}
    for name, (path, query) in targets.items():
        for _ in range(max(repeat // 10, 5)):  # warm-up: caches, prepared statements
            await call(app, path, query)
        taken = []
        for _ in range(repeat):
            seconds, status, _ = await call(app, path, query)
            assert status == 200
            taken.append(seconds * 1000)
        times[name] = taken
    return times


async def open_and_measure(
    url: str, options: dict[str, Any], session_id: str, count: int, repeat: int
) -> dict[str, list[float]]:
    from kern.console.context import open_async

    if options:  # a schema of its own: the async Db is built with it
        scheme = "postgresql+psycopg_async"
        db = connect(f"{scheme}://{url.partition('://')[2]}", is_async=True, **options)
    else:
        db = open_async(url)
    try:
        return await measure(db, session_id, count, repeat)
    finally:
        await db.close()


def target(backend: str, folder: Path) -> tuple[str, dict[str, Any], Any]:
    """The URL, the Db options and a cleanup for ``backend``."""
    if backend == "sqlite":
        return f"sqlite:///{folder / 'console.db'}", {}, lambda: None
    if backend == "postgres":
        schema = f"kern_console_bench_{uuid.uuid4().hex[:8]}"

        def drop() -> None:
            import psycopg

            plain = POSTGRES.replace("+psycopg", "")
            with psycopg.connect(plain, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

        return POSTGRES, {"schema": schema}, drop
    raise SystemExit(f"unknown backend {backend!r}: sqlite or postgres")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--runs", type=int, default=10_000, help="runs in the session")
    parser.add_argument("--repeat", type=int, default=200, help="timed calls per request")
    args = parser.parse_args()

    print(f"session of {args.runs:,} runs; {args.repeat} calls each; ms of server time")
    print(f"{'backend':<9} {'request':<14} {'median':>8} {'p95':>8} {'max':>8}")
    worst = 0.0
    for backend in args.backends:
        with tempfile.TemporaryDirectory() as folder:
            url, options, cleanup = target(backend, Path(folder))
            session_id = f"bench-{uuid.uuid4().hex[:8]}"
            try:
                seeded = seed(url, options, session_id, args.runs)
                times = asyncio.run(
                    open_and_measure(url, options, session_id, args.runs, args.repeat)
                )
            finally:
                cleanup()
        for name, taken in times.items():
            median, p95 = statistics.median(taken), percentile(taken, 0.95)
            worst = max(worst, p95) if name.startswith("page") else worst
            print(f"{backend:<9} {name:<14} {median:>8.2f} {p95:>8.2f} {max(taken):>8.2f}")
        print(f"{backend:<9} (seeding {args.runs:,} runs took {seeded:.1f} s)")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, load {load}")
    verdict = "under" if worst < 100 else "OVER"
    print(f"worst page p95: {worst:.2f} ms, {verdict} the 100 ms target")
    return 0 if worst < 100 else 1


if __name__ == "__main__":
    raise SystemExit(main())
