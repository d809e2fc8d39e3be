"""Recall latency: what the learning machine reads from the database per turn.

With ``Agent(learning=True)`` every turn starts with a recall: the user's profile (one exact
``query_learnings(..., limit=1)``) and the memories relevant to the input (the backend's
ranked ``search_memories``, bounded), plus the user's newest few memories. This measures
it, per call, at two shapes of data:

- ``spread``: 100,000 memories over 1,000 users (100 each), a profile per user;
- ``single``: 10,000 memories of one user.

Figures per shape, medians and p95 in milliseconds:

- ``search+profile``: the two storage calls alone (``search_memories`` + the profile get);
- ``recall``: the default machine's whole ``recall()`` as a turn runs it (the two calls,
  the newest-memories read, building the prompt text), with the memory store the backend
  resolves to (its own, where its plugin registers one);
- ``recall, generic``: the same with kern's generic memory store, when the backend has its
  own (what the backend's store saves).

Memories and queries are drawn from a synthetic vocabulary with a Zipf-Mandelbrot
distribution, p(rank) ~ 1 / (rank + offset) ** s: with the defaults (30,000 words, s=1,
offset=100) the commonest content word is about 0.2% of content words, as in English text
once the ~100 function words are set aside; function words are mixed in as in real
sentences (recall drops them from the query). ``--offset 0 --vocabulary 5000 --zipf 1.1``
is a stress case where a few words are in most memories. The database is built once per
file and reused (``--db``)::

    uv run python benchmarks/recall.py                      # SQLite in a temp dir
    uv run python benchmarks/recall.py --db sqlite:///tmp/recall.db --queries 2000
    uv run python benchmarks/recall.py --db postgresql://user:pw@localhost/bench

Target: under 10 ms median for ``search+profile`` on SQLite and Postgres. The machine's
load average is printed with the figures: on a busy machine they are not comparable.
"""

from __future__ import annotations

import argparse
import bisect
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kern.db import connect
from kern.learn import LearningMachine, UserMemoryStore, UserProfileStore
from kern.learn.scope import LearningScope
from kern.learn.text import search_query
from kern.performers import run_turn
from kern.records import Learning, LearningStatus, Memory

#: Function words (all dropped from recall queries, as real ones are); the content words,
#: verbs included, come from the Zipf-Mandelbrot vocabulary.
FUNCTION_WORDS = [
    *("the", "is", "has", "a", "an", "of", "to", "in", "for", "with", "on", "at", "and"),
    *("their", "my", "i", "me", "what", "how", "which", "should", "can", "about", "from"),
]
SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ne",
    "ru",
    "sa",
    "te",
    "vi",
    "do",
    "pe",
    "zu",
    "bo",
    "ga",
    "hi",
    "ju",
]
MARKER = "kern-recall-benchmark"


def vocabulary(size: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


class Text:
    """Sentences of Zipf-Mandelbrot-distributed content words among function words."""

    def __init__(self, size: int, s: float, offset: float, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.words = vocabulary(size, self.rng)
        weights = [1 / ((rank + offset) ** s) for rank in range(1, size + 1)]
        total = sum(weights)
        self.cumulative = []
        running = 0.0
        for weight in weights:
            running += weight / total
            self.cumulative.append(running)

    def word(self) -> str:
        index = bisect.bisect_left(self.cumulative, self.rng.random())
        return self.words[min(index, len(self.words) - 1)]

    def sentence(self, content_words: int) -> str:
        parts = []
        for _ in range(content_words):
            if self.rng.random() < 0.5:
                parts.append(self.rng.choice(FUNCTION_WORDS))
            parts.append(self.word())
        return " ".join(parts).capitalize() + "."

    def memory(self) -> str:
        return "The user " + self.sentence(self.rng.randint(6, 12)).lower()


def fill(db, users: list[str], per_user: int, text: Text) -> None:
    started = time.perf_counter()
    total = len(users) * per_user
    for n, user in enumerate(users):
        for _ in range(per_user):
            db.upsert_memory(Memory(user_id=user, content=text.memory()))
        db.upsert_learning(
            Learning(
                kind="user_profile",
                namespace="user",
                user_id=user,
                content={"name": f"User {n}", "preferences": [text.sentence(3)]},
            )
        )
        if (n + 1) % max(1, len(users) // 10) == 0 or per_user >= 1000:
            done = (n + 1) * per_user
            print(f"  filled {done:,}/{total:,} memories ({time.perf_counter() - started:.0f}s)")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def timed(step: Callable[[int], object], count: int) -> list[float]:
    times = []
    for n in range(count):
        began = time.perf_counter()
        step(n)
        times.append((time.perf_counter() - began) * 1000)
    return times


class GenericMemoryStore(UserMemoryStore):
    """kern's generic memory store, kept as it is on every backend (a subclass the user
    chose is never swapped for the backend's own): two contract reads per recall."""


def measure(db, users: list[str], queries: int, text: Text) -> dict[str, list[float]]:
    rng = random.Random(11)
    asked = [(rng.choice(users), text.sentence(rng.randint(3, 7))) for _ in range(queries)]
    machine = LearningMachine()
    backend = db.backend_name

    def storage_calls(n: int) -> None:
        user, question = asked[n]
        db.search_memories(user, search_query(question), limit=5)
        db.query_learnings(kind="user_profile", user_id=user, status=LearningStatus.ACTIVE, limit=1)

    def recall_with(chosen: LearningMachine) -> Callable[[int], None]:
        def recall(n: int) -> None:
            user, question = asked[n]
            scope = LearningScope(user, "bench-session", None, f"run-{n}", backend)
            run_turn(chosen.recall(scope, question), db)

        return recall

    steps = {"search+profile": storage_calls, "recall": recall_with(machine)}
    if type(machine.stores_for(backend)[1]) is not UserMemoryStore:
        # The backend registers its own memory store: also time the generic one.
        generic = LearningMachine(stores=[UserProfileStore(), GenericMemoryStore()])
        steps["recall, generic"] = recall_with(generic)
    warm = min(50, queries)
    for step in steps.values():
        timed(step, warm)
    return {what: timed(step, queries) for what, step in steps.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--db", help="database URL (default: a SQLite file in a temp dir)")
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--per-user", type=int, default=100)
    parser.add_argument("--single", type=int, default=10_000, help="memories of the one user")
    parser.add_argument("--queries", type=int, default=1_000, help="measured recalls per shape")
    parser.add_argument("--vocabulary", type=int, default=30_000, help="content words")
    parser.add_argument("--zipf", type=float, default=1.0, help="the exponent s")
    parser.add_argument("--offset", type=float, default=100, help="the Mandelbrot offset")
    args = parser.parse_args()

    scratch = None
    url = args.db
    if url is None:
        scratch = tempfile.TemporaryDirectory()
        url = f"sqlite:///{Path(scratch.name) / 'recall.db'}"
    db = connect(url)
    text = Text(args.vocabulary, args.zipf, args.offset)
    try:
        shapes = {
            "spread": ([f"{MARKER}-u{n}" for n in range(args.users)], args.per_user),
            "single": ([f"{MARKER}-single"], args.single),
        }
        results = {}
        for name, (users, per_user) in shapes.items():
            if not db.list_memories(users[-1], limit=1):
                print(f"{name}: storing {len(users) * per_user:,} memories of {len(users):,} users")
                fill(db, users, per_user, text)
            results[name] = measure(db, users, args.queries, text)
        load = " ".join(f"{value:.2f}" for value in os.getloadavg())
        print(f"\nbackend {db.backend_name} ({url}), {args.queries} recalls per shape")
        print(f"load average (1, 5, 15 min) after measuring: {load}")
        print(f"{'shape':<8} {'what':<16} {'median ms':>10} {'p95 ms':>8}")
        for name, figures in results.items():
            for what, times in figures.items():
                median, p95 = statistics.median(times), percentile(times, 0.95)
                print(f"{name:<8} {what:<16} {median:>10.3f} {p95:>8.3f}")
    finally:
        db.close()
        if scratch is not None:
            scratch.cleanup()


if __name__ == "__main__":
    main()
