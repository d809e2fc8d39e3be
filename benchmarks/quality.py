"""Retrieval quality: how often recall puts the right memory near the top, by words (lexical),
by meaning (vectors) and fused (hybrid), on every backend, on kern's own labelled set
(``benchmarks/quality_data.py``, ``benchmarks/data/recall_quality.jsonl``).

For each backend, every fact of the set is stored once through the public API
(``LearningMachine(db=..., embedder=LocalEmbedder()).add_memory(user, content)``: the memory
and its vector), then each question is asked of the same database by three machines that
differ only in ``hybrid``:

- ``lexical``: ``Hybrid(vector=0.0)``, the backend's text search alone;
- ``vector``: ``Hybrid(lexical=0.0)``, the nearest by meaning alone;
- ``hybrid``: ``Hybrid()``, kern's default fusion of the two (reciprocal rank fusion).

``lm.search_memories(user, question, limit=10)`` gives the ranking. A question is answered at
rank r when the r-th memory is one of its answer facts (the first such). Figures per backend
and mode, over all questions and split by the question's ``overlap`` flag (whether it shares
a content word with its answer):

- ``hit@5``, ``hit@10``: the share of questions answered in the first 5 / 10;
- ``MRR``: the mean of 1/r over all questions (0 for a question not answered in the 10, so
  this is MRR@10);
- ``ms``: the median wall time of one ``search_memories`` call (query embedding, text search,
  vector search and fusion; every mode embeds the query and reads both rankings, a weight
  of 0 only drops one from the fusion). ``no-embedder ms`` is the same search by a machine
  without an embedder (text search only, what ``LearningMachine()`` does).

Servers as for ``benchmarks/per_turn.py`` (``benchmarks/targets/*.py``): Postgres at
``KERN_BENCH_POSTGRES_URL`` (else ``KERN_TEST_POSTGRES_URL``, else the local default), Redis
and MongoDB found on their default ports or started for the run (nx-27017 for MongoDB).

    uv run nox -s quality                                   # every backend
    uv run nox -s quality -- --backends sqlite --json /tmp/quality.json
    uv run nox -s quality -- --backends sqlite --sweep      # also a few Hybrid settings
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality_data as qd

from kern.learn import Hybrid, LearningMachine, LocalEmbedder

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("sqlite", "postgres", "duckdb", "mongo", "redis")
#: The three rankings compared, as ``Hybrid`` settings of otherwise identical machines.
MODES: dict[str, Hybrid] = {
    "lexical": Hybrid(vector=0.0),
    "vector": Hybrid(lexical=0.0),
    "hybrid": Hybrid(),
}
#: How many results each search asks for (the depth of hit@10 and MRR).
LIMIT = 10
#: The question subsets every metric is also given for.
SPLITS = ("all", "overlap", "no_overlap")
#: Other Hybrid settings ``--sweep`` measures on the same database (the default is "hybrid").
SWEEP: dict[str, Hybrid] = {
    "hybrid candidates=1": Hybrid(candidates=1),
    "hybrid candidates=10": Hybrid(candidates=10),
    "hybrid k=10": Hybrid(k=10),
    "hybrid lexical 1 : vector 2": Hybrid(vector=2.0),
    "hybrid lexical 2 : vector 1": Hybrid(lexical=2.0),
    "hybrid rrf (k=60)": Hybrid(method="rrf"),
    "hybrid rrf k=10": Hybrid(method="rrf", k=10),
}
#: The labelled sets (``benchmarks/data``): name -> file and chart.
SETS: dict[str, tuple[Path, str]] = {
    "everyday": (qd.DEFAULT_PATH, "quality.svg"),
    "long": (qd.DEFAULT_PATH.with_name("recall_quality_long.jsonl"), "quality-long.svg"),
}
DEFAULT_PLOT_DIR = REPO / "docs"


# -- metrics ---------------------------------------------------------------------------
def first_rank(ranked: Sequence[Collection[str]], answers: Collection[str]) -> int | None:
    """The 1-based rank of the first result that is an answer, or ``None``.

    ``ranked`` holds, per result, the fact ids it stands for (one, or several when the
    store merged facts into one memory); ``answers`` the question's answer fact ids."""
    wanted = set(answers)
    for rank, facts in enumerate(ranked, 1):
        if wanted.intersection(facts):
            return rank
    return None


def hit_at(ranks: Sequence[int | None], k: int) -> float:
    """The share of questions answered within the first ``k`` results (0.0 for none)."""
    if not ranks:
        return 0.0
    return sum(rank is not None and rank <= k for rank in ranks) / len(ranks)


def mrr(ranks: Sequence[int | None]) -> float:
    """Mean reciprocal rank over all questions; an unanswered question counts 0."""
    if not ranks:
        return 0.0
    return sum(1.0 / rank for rank in ranks if rank is not None) / len(ranks)


@dataclass(frozen=True)
class Scores:
    questions: int
    hit5: float
    hit10: float
    mrr: float


def scores(ranks: Sequence[int | None]) -> Scores:
    return Scores(len(ranks), hit_at(ranks, 5), hit_at(ranks, 10), mrr(ranks))


def chance(facts: int, answers: int, k: int = LIMIT) -> tuple[float, float, float]:
    """Expected (hit@5, hit@10, reciprocal rank within ``k``) of a random order of a user's
    ``facts`` facts, ``answers`` of which answer the question: the floor a ranking must beat
    (with 9-10 facts per user, about half of them land in the first 5 by luck)."""

    def first_at(rank: int) -> float:  # P(the first answer is at ``rank``)
        return math.comb(facts - rank, answers - 1) / math.comb(facts, answers)

    ranks = range(1, min(facts - answers + 1, k) + 1)
    hit = {n: sum(first_at(r) for r in ranks if r <= n) for n in (5, 10)}
    return hit[5], hit[10], sum(first_at(r) / r for r in ranks)


def chance_scores(qs: qd.QualitySet) -> dict[str, Scores]:
    """:func:`chance` averaged over the questions, per split (see :func:`split_scores`)."""
    groups: dict[str, list[tuple[float, float, float]]] = {split: [] for split in SPLITS}
    for question in qs.questions:
        expected = chance(len(qs.facts_by_user[question.user_id]), len(question.answers))
        groups["all"].append(expected)
        groups["overlap" if question.overlap else "no_overlap"].append(expected)
    out = {}
    for split, group in groups.items():
        n = len(group)
        sums = [sum(values) for values in zip(*group, strict=True)] if group else [0.0] * 3
        out[split] = Scores(n, *(total / n if n else 0.0 for total in sums))
    return out


def split_scores(
    questions: Sequence[qd.Question], ranks: Mapping[str, int | None]
) -> dict[str, Scores]:
    """:func:`scores` over all ``questions`` and over those with and without ``overlap``
    (``ranks`` by question id)."""
    groups: dict[str, list[int | None]] = {split: [] for split in SPLITS}
    for question in questions:
        rank = ranks[question.id]
        groups["all"].append(rank)
        groups["overlap" if question.overlap else "no_overlap"].append(rank)
    return {split: scores(group) for split, group in groups.items()}


# -- one backend -----------------------------------------------------------------------
@dataclass
class ModeResult:
    scores: dict[str, Scores]
    search_ms: float
    ranks: dict[str, int | None]


@dataclass
class BackendResult:
    backend: str
    users: int
    facts: int
    questions: int
    load_s: float
    modes: dict[str, ModeResult]
    #: Median search time of a machine without an embedder (text search only).
    no_embedder_ms: float
    #: Questions whose no-embedder ranking differs from the ``lexical`` mode's (expected 0).
    no_embedder_differs: int
    #: Facts stored as an already stored memory (the store's restatement check), by memory.
    merged: dict[str, list[str]] = field(default_factory=dict)

    def beats(self, mode: str = "hybrid", metric: str = "hit5") -> dict[str, float]:
        """``mode``'s margin over each of the other main modes on ``metric`` (all
        questions)."""
        mine = getattr(self.modes[mode].scores["all"], metric)
        return {
            other: mine - getattr(self.modes[other].scores["all"], metric)
            for other in MODES
            if other != mode and other in self.modes
        }


def target(name: str) -> ModuleType:
    """The backend's module in ``benchmarks/targets`` (how the benchmarks get its db)."""
    if name not in BACKENDS:
        raise SystemExit(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    return importlib.import_module(f"targets.{name}")


def subset(qs: qd.QualitySet, users: int | None) -> qd.QualitySet:
    """The set restricted to its first ``users`` users (all for ``None``)."""
    if users is None:
        return qs
    chosen = set(qs.users[:users])
    return qd.QualitySet(
        [f for f in qs.facts if f.user_id in chosen],
        [q for q in qs.questions if q.user_id in chosen],
    )


def load_facts(lm: LearningMachine, qs: qd.QualitySet) -> dict[str, set[str]]:
    """Store every fact as a memory of its user; the fact ids each stored memory stands for,
    by memory id (more than one where the store took a fact for a restatement)."""
    facts_of: dict[str, set[str]] = {}
    for fact in qs.facts:
        memory = lm.add_memory(fact.user_id, fact.content)
        if memory is None:
            raise RuntimeError(f"fact {fact.id} was not stored")
        facts_of.setdefault(memory.memory_id, set()).add(fact.id)
    return facts_of


def measure(
    name: str,
    qs: qd.QualitySet,
    modes: Mapping[str, Hybrid] = MODES,
    embedder: LocalEmbedder | None = None,
    log: Callable[[str], None] = print,
) -> BackendResult:
    """Load the set into a fresh database of backend ``name`` and ask every question in
    every mode (see the module docstring)."""
    module = target(name)
    embedder = embedder or LocalEmbedder()
    with tempfile.TemporaryDirectory(prefix=f"kern-quality-{name}-") as scratch:
        folder = Path(scratch)
        db = module.kern_db(folder)
        # The target's bare-driver Floor owns the clean-up of what its kern_db needed
        # (Postgres schemas, a Redis or nx-27017 server started for the run): closed last.
        cleanup = module.Floor(folder)
        try:
            began = time.perf_counter()
            facts_of = load_facts(LearningMachine(db=db, embedder=embedder), qs)
            load_s = time.perf_counter() - began
            log(f"{name}: stored {len(qs.facts)} facts of {len(qs.users)} users in {load_s:.1f}s")
            machines = {
                mode: LearningMachine(db=db, embedder=embedder, hybrid=hybrid)
                for mode, hybrid in modes.items()
            }
            words_only = LearningMachine(db=db)
            everyone = {**machines, "no embedder": words_only}
            for lm in everyone.values():  # warm up: model, connections, caches
                for _ in range(3):
                    lm.search_memories(qs.users[0], "warm-up search", limit=LIMIT)
            ranks: dict[str, dict[str, int | None]] = {mode: {} for mode in everyone}
            times: dict[str, list[float]] = {mode: [] for mode in everyone}
            ids: dict[str, dict[str, list[str]]] = {mode: {} for mode in everyone}
            for question in qs.questions:
                for mode, lm in everyone.items():  # interleaved: drift hits every mode alike
                    began = time.perf_counter()
                    hits = lm.search_memories(question.user_id, question.text, limit=LIMIT)
                    times[mode].append((time.perf_counter() - began) * 1000)
                    found = [facts_of.get(hit.memory.memory_id, set()) for hit in hits]
                    ranks[mode][question.id] = first_rank(found, question.answers)
                    ids[mode][question.id] = [hit.memory.memory_id for hit in hits]
        finally:
            db.close()
            cleanup.close()
    differs = (
        sum(ids["no embedder"][q.id] != ids["lexical"][q.id] for q in qs.questions)
        if "lexical" in modes
        else 0
    )
    return BackendResult(
        backend=name,
        users=len(qs.users),
        facts=len(qs.facts),
        questions=len(qs.questions),
        load_s=load_s,
        modes={
            mode: ModeResult(
                scores=split_scores(qs.questions, ranks[mode]),
                search_ms=statistics.median(times[mode]),
                ranks=ranks[mode],
            )
            for mode in modes
        },
        no_embedder_ms=statistics.median(times["no embedder"]),
        no_embedder_differs=differs,
        merged={memory: sorted(facts) for memory, facts in facts_of.items() if len(facts) > 1},
    )


# -- reporting -------------------------------------------------------------------------
def _row(backend: str, mode: str, s: Mapping[str, Scores], ms: str) -> str:
    return (
        f"| {backend} | {mode} | {s['all'].hit5:.3f} | {s['all'].hit10:.3f} "
        f"| {s['all'].mrr:.3f} | {s['overlap'].hit5:.3f} | {s['no_overlap'].hit5:.3f} "
        f"| {s['overlap'].mrr:.3f} | {s['no_overlap'].mrr:.3f} | {ms} |"
    )


def table(
    results: Iterable[BackendResult],
    modes: Collection[str] = tuple(MODES),
    baseline: Mapping[str, Scores] | None = None,
) -> str:
    """The headline table (markdown) of ``modes``: all questions, and the overlap split;
    ``baseline`` (:func:`chance_scores`) as a last row."""
    lines = [
        "| backend | mode | hit@5 | hit@10 | MRR | hit@5 overlap | hit@5 no overlap "
        "| MRR overlap | MRR no overlap | ms (median) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        for mode, found in result.modes.items():
            if mode not in modes:
                continue
            lines.append(_row(result.backend, mode, found.scores, f"{found.search_ms:.2f}"))
    if baseline is not None:
        lines.append(_row("any", "chance (random order)", baseline, "-"))
    return "\n".join(lines)


def complementarity(result: BackendResult, k: int = 5) -> dict[str, int]:
    """How many questions the lexical and the vector ranking each answer in the first ``k``:
    by one only, by both, by neither. What fusion can gain on hit@k is bounded by the
    "words only" count (what vectors miss and words find)."""
    lexical, vector = result.modes["lexical"].ranks, result.modes["vector"].ranks
    counts = {"words only": 0, "vectors only": 0, "both": 0, "neither": 0}
    for question, rank in lexical.items():
        by_words = rank is not None and rank <= k
        other = vector.get(question)
        by_vectors = other is not None and other <= k
        name = {
            (True, True): "both",
            (True, False): "words only",
            (False, True): "vectors only",
            (False, False): "neither",
        }[(by_words, by_vectors)]
        counts[name] += 1
    return counts


def summary(results: Iterable[BackendResult]) -> str:
    """Per backend: hybrid's hit@5 margin over the others, timing without an embedder, and
    anything unexpected (merged facts, a no-embedder ranking that differs)."""
    lines = []
    for result in results:
        notes = []
        if "hybrid" in result.modes:
            margins = ", ".join(
                f"{margin * 100:+.1f} pts vs {other}" for other, margin in result.beats().items()
            )
            notes.append(f"hybrid hit@5 {margins}")
        if {"lexical", "vector"} <= result.modes.keys():
            split = complementarity(result)
            notes.append(
                "answered in the top 5 by words only {words only}, by vectors only "
                "{vectors only}, by both {both}, by neither {neither}".format(**split)
            )
        notes.append(f"no-embedder search {result.no_embedder_ms:.2f} ms")
        if result.no_embedder_differs:
            notes.append(f"{result.no_embedder_differs} no-embedder rankings differ from lexical")
        if result.merged:
            notes.append(f"merged facts: {sorted(result.merged.values())}")
        lines.append(f"{result.backend}: " + "; ".join(notes))
    return "\n".join(lines)


def sweep_table(result: BackendResult) -> str:
    """The hybrid settings measured on ``result``'s backend (the default and ``SWEEP``)."""
    lines = [
        f"| {result.backend}: setting | hit@5 | hit@10 | MRR | hit@5 overlap | hit@5 no overlap |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for mode, found in result.modes.items():
        if mode != "hybrid" and mode not in SWEEP:
            continue
        s = found.scores
        label = "hybrid default (candidates=3, k=60, 1:1)" if mode == "hybrid" else mode
        lines.append(
            f"| {label} | {s['all'].hit5:.3f} | {s['all'].hit10:.3f} | {s['all'].mrr:.3f} "
            f"| {s['overlap'].hit5:.3f} | {s['no_overlap'].hit5:.3f} |"
        )
    return "\n".join(lines)


COLOURS = {"lexical": "#4e79a7", "vector": "#f28e2b", "hybrid": "#59a14f"}


def svg_chart(
    results: Sequence[BackendResult], baseline: Mapping[str, Scores] | None = None
) -> str:
    """Grouped bars (one group per backend, one bar per mode), one panel per metric, as a
    standalone SVG (no plotting library needed); ``baseline`` as a dashed line."""
    metrics = (("hit5", "hit@5"), ("hit10", "hit@10"), ("mrr", "MRR"))
    modes = [mode for mode in MODES if results and mode in results[0].modes]
    bar, gap, pad_left, pad_top, height = 12, 14, 40, 30, 180
    group = bar * len(modes) + gap
    panel = pad_left + group * max(len(results), 1) + 20
    width, total_height = panel * len(metrics), pad_top + height + 70
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_height}" '
        f'viewBox="0 0 {width} {total_height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{total_height}" fill="white"/>',
    ]
    for p, (metric, title) in enumerate(metrics):
        x0 = p * panel + pad_left
        base = pad_top + height
        out.append(
            f'<text x="{x0 + (panel - pad_left) / 2 - 10:.1f}" y="18" text-anchor="middle" '
            f'font-size="13" font-weight="bold">{title}</text>'
        )
        for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
            y = base - tick * height
            out.append(
                f'<line x1="{x0}" x2="{x0 + group * len(results)}" y1="{y:.1f}" y2="{y:.1f}" '
                'stroke="#ddd"/>'
            )
            out.append(f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end">{tick:.2f}</text>')
        for g, result in enumerate(results):
            gx = x0 + g * group + gap / 2
            for m, mode in enumerate(modes):
                value = getattr(result.modes[mode].scores["all"], metric)
                h = value * height
                out.append(
                    f'<rect x="{gx + m * bar:.1f}" y="{base - h:.1f}" width="{bar - 1}" '
                    f'height="{h:.1f}" fill="{COLOURS.get(mode, "#999")}">'
                    f"<title>{escape(result.backend)} {mode} {title} {value:.3f}</title></rect>"
                )
            out.append(
                f'<text x="{gx + bar * len(modes) / 2:.1f}" y="{base + 14}" '
                f'text-anchor="middle">{escape(result.backend)}</text>'
            )
        if baseline is not None:
            y = base - getattr(baseline["all"], metric) * height
            out.append(
                f'<line x1="{x0}" x2="{x0 + group * len(results)}" y1="{y:.1f}" y2="{y:.1f}" '
                'stroke="#555" stroke-dasharray="4 3"/>'
            )
    legend_y = pad_top + height + 40
    for m, mode in enumerate(modes):
        x = pad_left + m * 90
        out.append(
            f'<rect x="{x}" y="{legend_y - 9}" width="10" height="10" '
            f'fill="{COLOURS.get(mode, "#999")}"/>'
        )
        out.append(f'<text x="{x + 14}" y="{legend_y}">{mode}</text>')
    if baseline is not None:
        x = pad_left + len(modes) * 90
        out.append(
            f'<line x1="{x}" x2="{x + 18}" y1="{legend_y - 4}" y2="{legend_y - 4}" '
            'stroke="#555" stroke-dasharray="4 3"/>'
        )
        out.append(f'<text x="{x + 22}" y="{legend_y}">chance</text>')
    asked = results[0].questions if results else 0
    out.append(
        f'<text x="{width - 10}" y="{legend_y}" text-anchor="end" fill="#555">'
        f"all {asked} questions, search_memories(limit={LIMIT}), LocalEmbedder</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def to_json(
    results: Sequence[BackendResult],
    modes: Mapping[str, Hybrid],
    baseline: Mapping[str, Scores] | None = None,
) -> dict[str, Any]:
    return {
        "limit": LIMIT,
        "modes": {mode: asdict(hybrid) for mode, hybrid in modes.items()},
        "chance": {split: asdict(s) for split, s in (baseline or {}).items()},
        "results": [asdict(result) for result in results],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", nargs="*", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--users", type=int, help="only the first N users (default: all)")
    parser.add_argument("--json", type=Path, help="write every figure (and ranks) here")
    parser.add_argument(
        "--sets", nargs="*", default=list(SETS), choices=SETS, help="labelled sets (default: all)"
    )
    parser.add_argument(
        "--plot-dir",
        type=Path,
        default=DEFAULT_PLOT_DIR,
        help=f"where the SVG charts go (default {DEFAULT_PLOT_DIR})",
    )
    parser.add_argument("--no-plot", action="store_true", help="write no chart")
    parser.add_argument(
        "--sweep", action="store_true", help="also hybrid with a few Hybrid settings"
    )
    args = parser.parse_args(argv)

    modes = {**MODES, **(SWEEP if args.sweep else {})}
    embedder = LocalEmbedder()
    everything: dict[str, Any] = {}
    failures = 0
    for set_name in args.sets:
        path, chart = SETS[set_name]
        plot = args.plot_dir / chart
        print(f"== set {set_name!r} ({path.relative_to(REPO)})")
        report = run_set(set_name, subset(qd.load(path), args.users), args, modes, embedder)
        everything[set_name] = report
        failures += len(report["failed"])
        if not args.no_plot and report["results"]:
            plot.write_text(svg_chart(report["results"], report["baseline"]), encoding="utf-8")
            print(f"wrote {plot}")
        print()
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    name: {
                        **to_json(report["results"], modes, report["baseline"]),
                        "failed": report["failed"],
                    }
                    for name, report in everything.items()
                },
                indent=1,
            )
            + "\n"
        )
        print(f"wrote {args.json}")
    return 1 if failures else 0


def run_set(
    set_name: str,
    qs: qd.QualitySet,
    args: argparse.Namespace,
    modes: Mapping[str, Hybrid],
    embedder: LocalEmbedder,
) -> dict[str, Any]:
    """Measure one labelled set on every chosen backend, print its tables; the figures."""
    problems = qd.validate(qs)
    if problems:
        raise SystemExit(f"the labelled set {set_name!r} is invalid:\n" + "\n".join(problems))
    overlap = sum(q.overlap for q in qs.questions)
    print(
        f"{len(qs.facts)} facts, {len(qs.questions)} questions ({overlap} overlap, "
        f"{len(qs.questions) - overlap} no overlap) of {len(qs.users)} users; limit {LIMIT}"
    )
    results: list[BackendResult] = []
    failed: dict[str, str] = {}
    for name in args.backends:
        try:
            results.append(measure(name, qs, modes, embedder))
        except Exception as exc:  # one backend's failure must not lose the others' figures
            failed[name] = f"{type(exc).__name__}: {exc}"
            print(f"{name}: not measured: {failed[name]}")
    print()
    baseline = chance_scores(qs)
    print(table(results, baseline=baseline))
    print()
    print(summary(results))
    for name, error in failed.items():
        print(f"{name}: not measured ({error})")
    if args.sweep:
        for result in results:
            print()
            print(sweep_table(result))
    return {"results": results, "baseline": baseline, "failed": failed}


if __name__ == "__main__":
    sys.exit(main())
