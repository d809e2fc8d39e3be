"""The retrieval-quality benchmark (``benchmarks/quality.py``): its metrics on hand-made
rankings (hit@k, MRR, the overlap split), its chart, and a tiny end-to-end run on SQLite."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULE_PATH = REPO / "benchmarks" / "quality.py"


def _import() -> ModuleType:
    name = "kern_benchmarks_quality"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, MODULE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


quality = _import()
qd = quality.qd


def _sqlite_ready() -> bool:
    """Whether SqliteDb implements the whole contract (the vector methods included)."""
    from kern.db.sqlite import SqliteDb

    return not getattr(SqliteDb, "__abstractmethods__", None)


needs_wordllama = pytest.mark.skipif(
    importlib.util.find_spec("wordllama") is None, reason="wordllama is not installed"
)
needs_sqlite_vectors = pytest.mark.skipif(
    not _sqlite_ready(), reason="SqliteDb does not implement the vector methods yet"
)


# -- first_rank ------------------------------------------------------------------------
def test_first_rank_is_the_rank_of_the_first_answer() -> None:
    ranked = [{"f1"}, {"f2"}, {"f3"}, {"f4"}]
    assert quality.first_rank(ranked, ["f3"]) == 3
    assert quality.first_rank(ranked, ["f1"]) == 1
    assert quality.first_rank(ranked, ["f4", "f2"]) == 2  # several answers: the first found


def test_first_rank_is_none_when_no_answer_is_returned() -> None:
    assert quality.first_rank([{"f1"}, {"f2"}], ["f9"]) is None
    assert quality.first_rank([], ["f1"]) is None


def test_a_merged_memory_answers_for_each_of_its_facts() -> None:
    ranked = [{"f1"}, {"f2", "f3"}, set()]
    assert quality.first_rank(ranked, ["f3"]) == 2


# -- hit@k and MRR ---------------------------------------------------------------------
RANKS = [1, 3, 5, 6, 10, None, 2, None]


def test_hit_at_k_counts_answers_within_the_first_k() -> None:
    assert quality.hit_at(RANKS, 1) == pytest.approx(1 / 8)
    assert quality.hit_at(RANKS, 5) == pytest.approx(4 / 8)  # 1, 3, 5, 2
    assert quality.hit_at(RANKS, 10) == pytest.approx(6 / 8)  # and 6, 10


def test_mrr_averages_reciprocal_ranks_over_all_questions() -> None:
    expected = (1 + 1 / 3 + 1 / 5 + 1 / 6 + 1 / 10 + 0 + 1 / 2 + 0) / 8
    assert quality.mrr(RANKS) == pytest.approx(expected)


def test_metrics_of_nothing_are_zero() -> None:
    assert quality.hit_at([], 5) == 0.0
    assert quality.mrr([]) == 0.0
    assert quality.hit_at([None, None], 10) == 0.0
    assert quality.mrr([None]) == 0.0


def test_perfect_ranking_scores_one() -> None:
    s = quality.scores([1, 1, 1])
    assert (s.questions, s.hit5, s.hit10, s.mrr) == (3, 1.0, 1.0, 1.0)


def test_chance_is_the_expectation_of_a_random_order() -> None:
    hit5, hit10, rr = quality.chance(10, 1)
    assert (hit5, hit10) == (pytest.approx(0.5), pytest.approx(1.0))
    assert rr == pytest.approx(sum(1 / r for r in range(1, 11)) / 10)
    assert quality.chance(9, 1)[0] == pytest.approx(5 / 9)
    assert quality.chance(9, 3)[0] == pytest.approx(1 - math.comb(6, 5) / math.comb(9, 5))
    assert quality.chance(20, 1)[1] == pytest.approx(0.5)  # only 10 of 20 are returned


def test_chance_scores_average_over_the_questions_per_split() -> None:
    qs = quality.subset(qd.load(), 3)
    baseline = quality.chance_scores(qs)
    assert baseline["all"].questions == len(qs.questions)
    assert baseline["overlap"].questions + baseline["no_overlap"].questions == len(qs.questions)
    expected = [
        quality.chance(len(qs.facts_by_user[q.user_id]), len(q.answers))[0] for q in qs.questions
    ]
    assert baseline["all"].hit5 == pytest.approx(sum(expected) / len(expected))


# -- the overlap split -----------------------------------------------------------------
def _question(qid: str, overlap: bool) -> Any:
    return qd.Question(id=qid, user_id="u01", text="?", answers=("u01-f01",), overlap=overlap)


def test_split_scores_by_the_overlap_flag() -> None:
    questions = [
        _question("u01-q01", True),
        _question("u01-q02", True),
        _question("u01-q03", False),
        _question("u01-q04", False),
        _question("u01-q05", False),
    ]
    ranks = {"u01-q01": 1, "u01-q02": 7, "u01-q03": None, "u01-q04": 2, "u01-q05": 4}
    split = quality.split_scores(questions, ranks)
    assert set(split) == {"all", "overlap", "no_overlap"}
    assert split["all"] == quality.scores([1, 7, None, 2, 4])
    assert split["overlap"] == quality.scores([1, 7])
    assert split["no_overlap"] == quality.scores([None, 2, 4])
    assert split["overlap"].hit5 == 0.5
    assert split["no_overlap"].hit5 == pytest.approx(2 / 3)
    assert split["overlap"].mrr == pytest.approx((1 + 1 / 7) / 2)
    assert split["no_overlap"].mrr == pytest.approx((0 + 1 / 2 + 1 / 4) / 3)


def test_split_of_a_set_without_overlap_questions_has_an_empty_group() -> None:
    split = quality.split_scores([_question("u01-q01", False)], {"u01-q01": 1})
    assert split["overlap"] == quality.scores([])
    assert split["no_overlap"].hit5 == 1.0


# -- the subset, the modes -------------------------------------------------------------
def test_subset_keeps_the_first_users_whole() -> None:
    qs = qd.load()
    two = quality.subset(qs, 2)
    assert two.users == qs.users[:2]
    assert len(two.facts) == sum(len(qs.facts_by_user[u]) for u in qs.users[:2])
    assert {q.user_id for q in two.questions} == set(qs.users[:2])
    assert quality.subset(qs, None) is qs


def test_the_modes_differ_only_in_their_weights() -> None:
    from kern.learn import Hybrid

    modes = quality.MODES
    assert list(modes) == ["lexical", "vector", "hybrid"]
    assert modes["lexical"] == Hybrid(vector=0.0)
    assert modes["vector"] == Hybrid(lexical=0.0)
    assert modes["hybrid"] == Hybrid()


# -- reporting -------------------------------------------------------------------------
def _result(backend: str, hit5: dict[str, float]) -> Any:
    modes = {}
    for mode, value in hit5.items():
        s = quality.Scores(10, value, value, value / 2)
        modes[mode] = quality.ModeResult(
            scores={split: s for split in quality.SPLITS}, search_ms=1.5, ranks={}
        )
    return quality.BackendResult(
        backend=backend,
        users=2,
        facts=20,
        questions=10,
        load_s=0.1,
        modes=modes,
        no_embedder_ms=0.5,
        no_embedder_differs=0,
    )


def test_beats_gives_hybrids_margin_over_the_other_modes() -> None:
    result = _result("sqlite", {"lexical": 0.5, "vector": 0.7, "hybrid": 0.6})
    margins = result.beats()
    assert margins == {"lexical": pytest.approx(0.1), "vector": pytest.approx(-0.1)}
    assert "+10.0 pts vs lexical, -10.0 pts vs vector" in quality.summary([result])


def test_table_and_chart_cover_every_backend_and_mode() -> None:
    results = [
        _result("sqlite", {"lexical": 0.5, "vector": 0.7, "hybrid": 0.8}),
        _result("redis", {"lexical": 0.4, "vector": 0.6, "hybrid": 0.9}),
    ]
    text = quality.table(results)
    assert len(text.splitlines()) == 2 + 6
    assert "| redis | hybrid | 0.900 | 0.900 | 0.450 |" in text
    svg = ET.fromstring(quality.svg_chart(results))
    bars = [r for r in svg.iter("{http://www.w3.org/2000/svg}rect") if r.find("*") is not None]
    assert len(bars) == 3 * 2 * 3  # panels x backends x modes
    tallest = max(float(bar.get("height", 0)) for bar in bars)
    assert tallest == pytest.approx(0.9 * 180)
    baseline = {split: quality.Scores(10, 0.5, 1.0, 0.3) for split in quality.SPLITS}
    with_chance = ET.fromstring(quality.svg_chart(results, baseline))
    dashed = [
        line
        for line in with_chance.iter("{http://www.w3.org/2000/svg}line")
        if line.get("stroke-dasharray")
    ]
    assert len(dashed) == 3 + 1  # one per panel, and the legend's


# -- end to end ------------------------------------------------------------------------
@needs_wordllama
@needs_sqlite_vectors
def test_a_tiny_run_on_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, plot = tmp_path / "quality.json", tmp_path / "quality.svg"
    args = ["--backends", "sqlite", "--users", "2", "--sets", "everyday", "--json", str(out)]
    code = quality.main([*args, "--plot-dir", str(tmp_path)])
    assert code == 0
    data = json.loads(out.read_text())
    assert set(data) == {"everyday"}
    (result,) = data["everyday"]["results"]
    qs = quality.subset(qd.load(), 2)
    assert result["backend"] == "sqlite"
    assert (result["users"], result["facts"], result["questions"]) == (
        2,
        len(qs.facts),
        len(qs.questions),
    )
    assert set(result["modes"]) == {"lexical", "vector", "hybrid"}
    for mode in result["modes"].values():
        assert set(mode["ranks"]) == {q.id for q in qs.questions}
        for split in quality.SPLITS:
            s = mode["scores"][split]
            assert 0.0 <= s["mrr"] <= s["hit10"] <= 1.0
            assert s["hit5"] <= s["hit10"]
        assert mode["scores"]["all"]["questions"] == len(qs.questions)
        assert mode["search_ms"] > 0
    # Words alone find most questions that share a word with their answer, and vectors
    # find some of those that share none (which words alone cannot rank at all).
    assert result["modes"]["lexical"]["scores"]["overlap"]["hit10"] > 0.5
    assert result["modes"]["vector"]["scores"]["no_overlap"]["hit10"] > 0.0
    assert result["no_embedder_differs"] == 0
    ET.fromstring(plot.read_text())
    printed = capsys.readouterr().out
    assert "| sqlite | hybrid |" in printed


def test_complementarity_counts_what_each_ranking_finds_alone() -> None:
    result = _result("sqlite", {"lexical": 0.5, "vector": 0.7, "hybrid": 0.6})
    result.modes["lexical"].ranks = {"q1": 1, "q2": None, "q3": 7, "q4": 2}
    result.modes["vector"].ranks = {"q1": 3, "q2": 2, "q3": None, "q4": 9}
    split = quality.complementarity(result)
    assert split == {"words only": 1, "vectors only": 1, "both": 1, "neither": 1}
    assert "by words only 1, by vectors only 1" in quality.summary([result])
