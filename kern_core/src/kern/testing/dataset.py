"""A synthetic kern database of any size, for tests and benchmarks of moving data.

``sample_pages`` yields ``RecordPage`` s (import order: sessions, runs, memories, learnings)
describing users with agent, team and workflow sessions; runs with messages, tool calls,
member runs under their leader and every status; memories and learnings with vectors on a
share of them and some proposals waiting for approval. Everything is derived from ``seed``,
so two calls give equal records, and pages are made lazily: a database of 500,000 runs
never sits in memory. ``write_sample(db, ...)`` imports it through ``import_records``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from kern.db.base import BaseDb
from kern.db.transfer import DEFAULT_PAGE, RecordPage
from kern.records import (
    Embedding,
    Learning,
    LearningStatus,
    Memory,
    Message,
    Run,
    RunStatus,
    Session,
    SessionType,
    ToolCall,
)

T0 = datetime(2025, 1, 6, 9, 0, 0, tzinfo=UTC)
DIM = 16
TOPICS = ("travel", "food", "work", "music", "health", "books", "sport", "money")


def _vector(rng: random.Random) -> list[float]:
    return [round(rng.uniform(-1.0, 1.0), 6) for _ in range(DIM)]


def _sessions(users: int, sessions: int) -> list[Session]:
    made = []
    types = (SessionType.AGENT, SessionType.AGENT, SessionType.TEAM, SessionType.WORKFLOW)
    for i in range(sessions):
        session_type = types[i % len(types)]
        made.append(
            Session(
                session_id=f"s{i:06d}",
                session_type=session_type,
                component_id=f"{session_type.value}-{i % 5}",
                user_id=f"user-{i % users}",
                name=f"conversation {i}" if i % 3 else None,
                state={"turns": i % 17, "topic": TOPICS[i % len(TOPICS)], "ok": i % 2 == 0},
                summary=f"talked about {TOPICS[i % len(TOPICS)]}" if i % 4 == 0 else None,
                metadata={"source": "sample"},
                version=1 + i % 9,
                created_at=T0 + timedelta(minutes=i),
                updated_at=T0 + timedelta(minutes=i, seconds=30, microseconds=i),
            )
        )
    return made


def _run(session: Session, seq: int, rng: random.Random, parent: str | None) -> Run:
    topic = rng.choice(TOPICS)
    question = f"question {seq} about {topic}"
    messages = [Message(role="user", content=question)]
    if seq % 5 == 0:
        call = ToolCall(id=f"call-{seq}", name="search", arguments=f'{{"q": "{topic}"}}')
        messages += [
            Message(role="assistant", tool_calls=[call]),
            Message(role="tool", tool_call_id=call.id, content=f"3 results on {topic}"),
        ]
    answer = f"answer {seq}: {topic} — ünïcode ✓"
    messages.append(Message(role="assistant", content=answer))
    statuses = (RunStatus.COMPLETED,) * 8 + (RunStatus.ERROR, RunStatus.CANCELLED)
    return Run(
        run_id=f"{session.session_id}-r{seq:05d}",
        session_id=session.session_id,
        seq=seq,
        parent_run_id=parent,
        component_id=session.component_id if parent is None else "member",
        user_id=session.user_id,
        status=rng.choice(statuses),
        input=question,
        messages=messages,
        output={"content": answer, "tokens": rng.randint(5, 500)},
        metrics={"input_tokens": rng.randint(10, 900), "duration": round(rng.random(), 6)},
        created_at=session.created_at + timedelta(seconds=seq, microseconds=seq),
    )


def sample_pages(
    *,
    users: int = 3,
    sessions: int = 1_000,
    runs: int = 50_000,
    memories: int = 3_000,
    learnings: int = 3_000,
    seed: int = 0,
    page_size: int = DEFAULT_PAGE,
) -> Iterator[RecordPage]:
    """The pages of a sample database, in import order, made as they are consumed."""
    rng = random.Random(seed)
    all_sessions = _sessions(users, sessions)
    for start in range(0, len(all_sessions), page_size):
        yield RecordPage(kind="sessions", records=all_sessions[start : start + page_size])

    batch: list[Run] = []
    per_session, extra = divmod(runs, sessions)
    for index, session in enumerate(all_sessions):
        leader: str | None = None
        for seq in range(1, per_session + (1 if index < extra else 0) + 1):
            # Team sessions: every third run is a member run under the run before it.
            member = session.session_type is SessionType.TEAM and seq % 3 == 0
            run = _run(session, seq, rng, leader if member else None)
            if not member:
                leader = run.run_id
            batch.append(run)
            if len(batch) == page_size:
                yield RecordPage(kind="runs", records=batch)
                batch = []
    if batch:
        yield RecordPage(kind="runs", records=batch)

    yield from _memory_pages(users, memories, rng, page_size)
    yield from _learning_pages(users, learnings, all_sessions, rng, page_size)


def _memory_pages(
    users: int, count: int, rng: random.Random, page_size: int
) -> Iterator[RecordPage]:
    for start in range(0, count, page_size):
        records, vectors = [], {}
        for i in range(start, min(count, start + page_size)):
            memory = Memory(
                memory_id=f"m{i:06d}",
                user_id=f"user-{i % users}",
                agent_id=f"agent-{i % 5}" if i % 2 else None,
                content=f"fact {i}: likes {rng.choice(TOPICS)} and {rng.choice(TOPICS)}",
                topics=[rng.choice(TOPICS)],
                source_run_id=f"s{i % 1000:06d}-r00001" if i % 3 == 0 else None,
                created_at=T0 + timedelta(seconds=i),
                updated_at=T0 + timedelta(seconds=i, microseconds=7),
            )
            records.append(memory)
            if i % 2 == 0:
                vectors[memory.memory_id] = Embedding(model="sample-16", vector=_vector(rng))
        yield RecordPage(kind="memories", records=records, embeddings=vectors)


def _learning_pages(
    users: int, count: int, sessions: list[Session], rng: random.Random, page_size: int
) -> Iterator[RecordPage]:
    kinds = (
        "user_profile",
        "user_memory",
        "session_context",
        "entity_memory",
        "learned_knowledge",
        "decision_log",
    )
    for start in range(0, count, page_size):
        records, vectors = [], {}
        for i in range(start, min(count, start + page_size)):
            kind = kinds[i % len(kinds)]
            status = LearningStatus.PROPOSED if i % 7 == 0 else LearningStatus.ACTIVE
            learning = Learning(
                learning_id=f"l{i:06d}",
                kind=kind,
                namespace="global" if kind == "learned_knowledge" else "user",
                user_id=None if kind == "learned_knowledge" else f"user-{i % users}",
                session_id=sessions[i % len(sessions)].session_id
                if kind == "session_context"
                else None,
                entity_id=f"entity-{i % 40}" if kind == "entity_memory" else None,
                content={"text": f"learning {i} on {rng.choice(TOPICS)}", "weight": i % 10},
                status=status,
                created_at=T0 + timedelta(seconds=i),
                updated_at=T0 + timedelta(seconds=i, microseconds=11),
            )
            records.append(learning)
            if i % 3 == 0:
                vectors[learning.learning_id] = Embedding(model="sample-16", vector=_vector(rng))
        yield RecordPage(kind="learnings", records=records, embeddings=vectors)


def write_sample(db: BaseDb, **options: int) -> dict[str, int]:
    """Import a sample database into ``db``; the records written per kind."""
    written = {"sessions": 0, "runs": 0, "memories": 0, "learnings": 0}
    for page in sample_pages(**options):
        written[page.kind] += db.import_records(page)
    return written


__all__ = ["sample_pages", "write_sample"]
