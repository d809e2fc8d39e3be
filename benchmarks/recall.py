"""Recall latency: what the learning machine reads from the database per turn.

Two modes. **With vectors** (``--backends``, the default: every backend), each backend gets
a fresh throwaway database (``benchmarks/targets/*.py``: a temp file, a Postgres schema, a
Redis key prefix, a Mongo database, all dropped at the end) holding:

- ``spread``: 100,000 memories over 1,000 users (100 each), a profile per user;
- ``single``: 10,000 memories of one user (``--single 0`` skips it);

every memory stored with its vector through the contract (``upsert_memory(memory,
embedding=...)``, several threads on the server backends), vectors made in batches by the
real offline ``LocalEmbedder`` (``--embedder hash``: deterministic synthetic 256-dim
vectors instead, no model needed). Load time is printed apart: embedding and storing.
Then, per shape, the same queries are timed in every way, interleaved query by query:

- ``lexical``: ``lm.search_memories(user, query, limit=5)`` of a machine without an
  embedder (text search only: recall as it was before vectors);
- ``vector``: the storage call alone, ``db.search_memories_by_vector(user, embedding,
  limit=5)`` with the query's vector already made;
- ``hybrid, cached``: ``lm.search_memories(user, query, limit=5)`` of a machine with the
  embedder, the query's vector already made (an embedder that looks it up): text search,
  vector search (15 candidates each) and fusion;
- ``hybrid``: the same, embedding the query (what a user sees);
- ``embed``: embedding the query alone (``embedder.embed([query])``);
- ``recall``: the whole ``recall()`` of a turn with the embedder (profile, ranked and newest
  memories, fusion, prompt text).

The vector path each Db uses is printed (its ``vector_index`` attribute, ``exact`` when it
has none)::

    uv run nox -s recall                                            # every backend
    uv run nox -s recall -- --backends sqlite postgres --queries 1000
    uv run nox -s recall -- --backends sqlite --users 20 --per-user 10 --single 0 --queries 20

**Lexical only** (``--db URL``): the figures as before vectors, on a database built once per
URL and reused: per shape, ``search+profile`` (the two storage calls), ``recall`` (the
default machine's ``recall()``) and ``recall, generic`` (kern's generic memory store, when the
backend has its own)::

    uv run python benchmarks/recall.py --db sqlite:///tmp/recall.db --queries 2000
    uv run python benchmarks/recall.py --db postgresql://user:pw@localhost/bench

Memories and queries are drawn from a synthetic vocabulary with a Zipf-Mandelbrot
distribution, p(rank) ~ 1 / (rank + offset) ** s: with the defaults (30,000 words, s=1,
offset=100) the commonest content word is about 0.2% of content words, as in English text
once the ~100 function words are set aside; function words are mixed in as in real
sentences (recall drops them from the query). ``--offset 0 --vocabulary 5000 --zipf 1.1``
is a stress case where a few words are in most memories.

Target: under 10 ms median on SQLite and Postgres (``search+profile``; with vectors,
``hybrid``). The machine's load average is printed with the figures: on a busy machine they
are not comparable.
"""

from __future__ import annotations

import argparse
import bisect
import importlib
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kern.db import connect
from kern.learn import Embedder, LearningMachine, UserMemoryStore, UserProfileStore
from kern.learn.scope import LearningScope
from kern.learn.text import search_query
from kern.performers import run_turn
from kern.records import Embedding, Learning, LearningStatus, Memory

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


def measure_lexical(db, users: list[str], queries: int, text: Text) -> dict[str, list[float]]:
    """The lexical-only figures of ``--db`` (see the module docstring)."""
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


# -- with vectors ----------------------------------------------------------------------
BACKENDS = ("sqlite", "postgres", "duckdb", "mongo", "redis")
#: Threads storing memories while loading: a server backend takes concurrent writes (each
#: one waits on a round trip and a commit); the embedded ones have a single writer.
LOAD_THREADS = {"postgres": 4, "redis": 4, "mongo": 4}
#: Memories embedded (and then stored) per batch while loading.
LOAD_BATCH = 2_000
#: What the user asks for: ``search_memories(..., limit=5)``.
LIMIT = 5
#: The figures of the vector mode, in the order they are printed (module docstring).
STEPS = ("lexical", "vector", "hybrid, cached", "hybrid", "embed", "recall")


def say(line: str) -> None:
    """Print ``line`` now (progress of a long load, when stdout is a pipe)."""
    print(line, flush=True)


class HashEmbedder:
    """Deterministic synthetic vectors (``--embedder hash``): each word a fixed random vector
    (seeded by its CRC32), a text the normalised sum of its words' vectors, so that texts
    sharing words are near, as with a model. Nothing to load; for runs without wordllama."""

    def __init__(self, dimensions: int = 256) -> None:
        self.id = f"kern-bench:hash-{dimensions}"
        self.dimensions = dimensions
        self._words: dict[str, Any] = {}

    def _word(self, word: str) -> Any:
        vector = self._words.get(word)
        if vector is None:
            rng = np.random.default_rng(zlib.crc32(word.encode()))
            vector = self._words[word] = rng.standard_normal(self.dimensions)
        return vector

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = []
        for text in texts:
            total = np.zeros(self.dimensions)
            for word in text.lower().split():
                total += self._word(word.strip(".,?!"))
            norm = float(np.linalg.norm(total))
            vectors.append((total / norm if norm else total).tolist())
        return vectors


class KnownVectors:
    """An embedder that looks up the vectors ``embedder`` made beforehand for ``texts``
    (same ``id``, so they are compared with the stored ones): the hybrid search without the
    cost of embedding the query. A text it was not given is embedded then."""

    def __init__(self, embedder: Embedder, texts: Sequence[str]) -> None:
        self.embedder = embedder
        self.vectors = dict(zip(texts, embedder.embed(texts), strict=True))

    @property
    def id(self) -> str:
        return self.embedder.id

    @property
    def dimensions(self) -> int | None:
        return self.embedder.dimensions

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        missing = [text for text in texts if text not in self.vectors]
        if missing:
            self.vectors.update(zip(missing, self.embedder.embed(missing), strict=True))
        return [self.vectors[text] for text in texts]


def make_embedder(kind: str) -> Embedder:
    if kind == "hash":
        return HashEmbedder()
    from kern.learn import LocalEmbedder

    return LocalEmbedder()


@dataclass
class Shape:
    """One shape of data on one backend: what was loaded, how long it took, the timings."""

    users: int
    memories: int
    embed_s: float = 0.0
    store_s: float = 0.0
    times: dict[str, list[float]] = field(default_factory=dict)

    def figures(self) -> dict[str, dict[str, float]]:
        return {
            step: {"median": statistics.median(times), "p95": percentile(times, 0.95)}
            for step, times in self.times.items()
        }


def load(
    db,
    embedder: Embedder,
    users: list[str],
    per_user: int,
    text: Text,
    threads: int,
    log: Callable[[str], None] = say,
) -> Shape:
    """Store ``per_user`` memories of each user, each with its vector (``upsert_memory(...,
    embedding=...)``), and a profile per user. Vectors are made ``LOAD_BATCH`` at a time;
    embedding and storing are timed apart."""
    shape = Shape(users=len(users), memories=len(users) * per_user)
    owners = [user for user in users for _ in range(per_user)]
    pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def store(pair: tuple[Memory, list[float]]) -> None:
        memory, vector = pair
        db.upsert_memory(memory, embedding=Embedding(model=embedder.id, vector=vector))

    def profile(learning: Learning) -> None:
        db.upsert_learning(learning)

    def run(step: Callable[[Any], None], items: Sequence[Any]) -> None:
        if pool is None:
            for item in items:
                step(item)
        else:
            for _ in pool.map(step, items):
                pass

    reported = 0
    try:
        for start in range(0, len(owners), LOAD_BATCH):
            memories = [
                Memory(user_id=u, content=text.memory()) for u in owners[start : start + LOAD_BATCH]
            ]
            began = time.perf_counter()
            vectors = embedder.embed([memory.content for memory in memories])
            shape.embed_s += time.perf_counter() - began
            began = time.perf_counter()
            run(store, list(zip(memories, vectors, strict=True)))
            shape.store_s += time.perf_counter() - began
            done = start + len(memories)
            if done * 10 // len(owners) > reported or done == len(owners):
                reported = done * 10 // len(owners)
                log(
                    f"  {done:,}/{len(owners):,} memories (embedding {shape.embed_s:.1f}s, "
                    f"storing {shape.store_s:.1f}s)"
                )
        profiles = [
            Learning(
                kind="user_profile",
                namespace="user",
                user_id=user,
                content={"name": f"User {n}", "preferences": [text.sentence(3)]},
            )
            for n, user in enumerate(users)
        ]
        began = time.perf_counter()
        run(profile, profiles)
        shape.store_s += time.perf_counter() - began
    finally:
        if pool is not None:
            pool.shutdown()
    return shape


def questions(users: list[str], count: int, text: Text, seed: int) -> list[tuple[str, str]]:
    """``count`` distinct queries, each of a user drawn from ``users``."""
    rng = random.Random(seed)
    asked: dict[str, str] = {}
    while len(asked) < count:
        asked.setdefault(text.sentence(rng.randint(3, 7)), rng.choice(users))
    return [(user, query) for query, user in asked.items()]


def measure_vectors(
    db, embedder: Embedder, users: list[str], queries: int, text: Text
) -> dict[str, list[float]]:
    """Each of ``STEPS`` (module docstring) per query, in milliseconds. The steps of a query
    run one after the other, starting with a different step at each query, so that drift in
    the machine and a warm cache hit all of them alike."""
    warm_up = questions(users, min(50, queries), text, seed=13)
    asked = questions(users, queries, text, seed=11)
    seen = {query for _, query in asked}
    warm_up = [(user, query) for user, query in warm_up if query not in seen]
    known = KnownVectors(embedder, [query for _, query in warm_up + asked])
    embeddings = {q: Embedding(model=embedder.id, vector=v) for q, v in known.vectors.items()}
    words_only = LearningMachine(db=db)
    cached = LearningMachine(db=db, embedder=known)
    hybrid = LearningMachine(db=db, embedder=embedder)
    # Its own machine (so its own cache of query vectors): recall embeds every query anew.
    turn = LearningMachine(embedder=embedder)
    backend = db.backend_name

    def recall(user: str, query: str) -> None:
        run_turn(turn.recall(LearningScope(user, "bench", None, "run", backend), query), db)

    steps: dict[str, Callable[[str, str], object]] = {
        "lexical": lambda user, query: words_only.search_memories(user, query, limit=LIMIT),
        "vector": lambda user, query: db.search_memories_by_vector(
            user, embeddings[query], limit=LIMIT
        ),
        "hybrid, cached": lambda user, query: cached.search_memories(user, query, limit=LIMIT),
        "hybrid": lambda user, query: hybrid.search_memories(user, query, limit=LIMIT),
        "embed": lambda user, query: embedder.embed([query]),
        "recall": recall,
    }
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for n, (user, query) in enumerate(warm_up + asked):
        for name in names[n % len(names) :] + names[: n % len(names)]:
            began = time.perf_counter()
            steps[name](user, query)
            if n >= len(warm_up):
                times[name].append((time.perf_counter() - began) * 1000)
    return times


@dataclass
class BackendRun:
    backend: str
    vector_index: str
    shapes: dict[str, Shape]


def shapes_of(args: argparse.Namespace) -> dict[str, tuple[list[str], int]]:
    shapes = {"spread": ([f"{MARKER}-u{n}" for n in range(args.users)], args.per_user)}
    if args.single:
        shapes["single"] = ([f"{MARKER}-single"], args.single)
    return shapes


def run_backend(
    name: str,
    args: argparse.Namespace,
    embedder: Embedder,
    log: Callable[[str], None] = say,
) -> BackendRun:
    """Load every shape into a fresh database of backend ``name``, then time its queries."""
    module = importlib.import_module(f"targets.{name}")
    threads = args.load_threads or LOAD_THREADS.get(name, 1)
    text = Text(args.vocabulary, args.zipf, args.offset)
    with tempfile.TemporaryDirectory(prefix=f"kern-recall-{name}-") as scratch:
        folder = Path(scratch)
        db = module.kern_db(folder)
        # The target's bare-driver Floor owns the clean-up of what its kern_db needed
        # (Postgres schemas, a Redis or nx-27017 server started for the run): closed last.
        cleanup = module.Floor(folder)
        try:
            index = str(getattr(db, "vector_index", "exact"))
            reason = getattr(db, "vector_index_reason", None)
            log(f"{name}: vector path {index}" + (f" ({reason})" if reason else ""))
            result = BackendRun(name, index, {})
            for shape, (users, per_user) in shapes_of(args).items():
                log(
                    f"{name} {shape}: loading {len(users) * per_user:,} memories of "
                    f"{len(users):,} users with vectors ({threads} thread(s))"
                )
                loaded = load(db, embedder, users, per_user, text, threads, log)
                log(
                    f"{name} {shape}: loaded in {loaded.embed_s + loaded.store_s:.1f}s "
                    f"(embedding {loaded.embed_s:.1f}s, storing {loaded.store_s:.1f}s)"
                )
                count = args.queries if shape == "spread" else args.single_queries
                loaded.times = measure_vectors(db, embedder, users, count, text)
                result.shapes[shape] = loaded
            return result
        finally:
            db.close()
            cleanup.close()


def cell(figures: dict[str, dict[str, float]], step: str) -> str:
    found = figures.get(step)
    if found is None:
        return "-"
    return f"{found['median']:.2f} / {found['p95']:.2f}"


def table(runs: Sequence[BackendRun]) -> str:
    """Median / p95 ms per backend, shape and step (markdown), and the load."""
    lines = [
        "| backend | shape | vector path | " + " | ".join(STEPS) + " | load: embed s | store s |",
        "|---|---|---|" + "---:|" * (len(STEPS) + 2),
    ]
    for run in runs:
        for name, shape in run.shapes.items():
            figures = shape.figures()
            cells = " | ".join(cell(figures, step) for step in STEPS)
            lines.append(
                f"| {run.backend} | {name} | {run.vector_index} | {cells} "
                f"| {shape.embed_s:.1f} | {shape.store_s:.1f} |"
            )
    return "\n".join(lines)


def to_json(runs: Sequence[BackendRun], failed: dict[str, str]) -> dict[str, Any]:
    return {
        "results": [
            {
                "backend": run.backend,
                "vector_index": run.vector_index,
                "shapes": {
                    name: {**asdict(shape), "times": None, "figures": shape.figures()}
                    for name, shape in run.shapes.items()
                },
            }
            for run in runs
        ],
        "failed": failed,
    }


def interrupt(signum: int, frame: object) -> None:
    """SIGTERM as Ctrl-C, so that the databases and servers made for the run are removed."""
    raise KeyboardInterrupt(f"signal {signum}")


def main_vectors(args: argparse.Namespace) -> int:
    if threading.current_thread() is not threading.main_thread():
        return measure_all(args)
    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        return measure_all(args)
    finally:
        signal.signal(signal.SIGTERM, before)


def measure_all(args: argparse.Namespace) -> int:
    embedder = make_embedder(args.embedder)
    began = time.perf_counter()
    embedder.embed(["load the model"])
    say(f"embedder {embedder.id} (ready in {time.perf_counter() - began:.1f}s)")
    runs: list[BackendRun] = []
    failed: dict[str, str] = {}
    for name in args.backends:
        try:
            runs.append(run_backend(name, args, embedder))
            say("\n".join(table(runs[-1:]).splitlines()[2:]))  # kept if a later one is cut
        except (Exception, SystemExit) as exc:  # a target says "no server" by SystemExit
            failed[name] = f"{type(exc).__name__}: {exc}"
            say(f"{name}: not measured: {failed[name]}")
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"\n{args.queries} queries (single: {args.single_queries}), limit {LIMIT}, "
        f"embedder {embedder.id}; "
        f"median / p95 ms; load average (1, 5, 15 min) after measuring: {load}"
    )
    print(table(runs))
    for name, error in failed.items():
        print(f"{name}: not measured ({error})")
    if args.json is not None:
        args.json.write_text(json.dumps(to_json(runs, failed), indent=1) + "\n")
        print(f"wrote {args.json}")
    return 1 if failed else 0


# -- lexical only (--db) ---------------------------------------------------------------
def main_lexical(args: argparse.Namespace) -> int:
    url = args.db
    db = connect(url)
    text = Text(args.vocabulary, args.zipf, args.offset)
    try:
        results = {}
        for name, (users, per_user) in shapes_of(args).items():
            if not db.list_memories(users[-1], limit=1):
                print(f"{name}: storing {len(users) * per_user:,} memories of {len(users):,} users")
                fill(db, users, per_user, text)
            results[name] = measure_lexical(db, users, args.queries, text)
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
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--backends",
        nargs="*",
        choices=BACKENDS,
        default=list(BACKENDS),
        help="recall with vectors on fresh databases of these backends (default: all)",
    )
    parser.add_argument("--db", help="lexical only, on this database URL (built once, reused)")
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--per-user", type=int, default=100)
    parser.add_argument(
        "--single", type=int, default=10_000, help="memories of the one user (0: no such shape)"
    )
    parser.add_argument("--queries", type=int, default=1_000, help="measured queries per shape")
    parser.add_argument(
        "--single-queries",
        type=int,
        default=200,
        help="measured queries of the single shape with vectors (exact scans of 10,000 "
        "vectors are slow: fewer)",
    )
    parser.add_argument(
        "--embedder",
        choices=("local", "hash"),
        default="local",
        help="local: LocalEmbedder (wordllama); hash: synthetic 256-dim vectors",
    )
    parser.add_argument(
        "--load-threads", type=int, help="threads storing memories (default: 4 on servers)"
    )
    parser.add_argument("--json", type=Path, help="write the figures here (vector mode)")
    parser.add_argument("--vocabulary", type=int, default=30_000, help="content words")
    parser.add_argument("--zipf", type=float, default=1.0, help="the exponent s")
    parser.add_argument("--offset", type=float, default=100, help="the Mandelbrot offset")
    args = parser.parse_args(argv)
    if min(args.users, args.per_user, args.queries, args.single_queries) < 1:
        parser.error("--users, --per-user, --queries and --single-queries must be at least 1")
    return main_lexical(args) if args.db else main_vectors(args)


if __name__ == "__main__":
    sys.exit(main())
