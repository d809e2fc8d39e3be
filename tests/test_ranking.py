"""Hybrid fusion (``kern.learn.ranking``): how lexical and vector rankings become one."""

from __future__ import annotations

import pytest

from kern.learn import Hybrid
from kern.learn.ranking import fuse, fuse_scores, normalised


def name(item: str) -> str:
    return item


def test_normalised_maps_the_best_to_one_and_the_floor_to_zero() -> None:
    assert normalised([0.3, 0.2, 0.1], None) == pytest.approx([1.0, 0.5, 0.0])
    assert normalised([4.0, 2.0], 0.0) == pytest.approx([1.0, 0.5])
    assert normalised([0.7], None) == [1.0]  # one candidate: nothing to tell apart
    assert normalised([], None) == []
    # a score below the declared floor lowers the floor instead of going negative
    assert normalised([1.0, -1.0], 0.0) == pytest.approx([1.0, 0.0])


def test_scores_keep_how_far_apart_the_candidates_were() -> None:
    """Two near-tied text matches count as nearly equal; a clear win by meaning decides."""
    lexical = [("a", 5.0), ("b", 4.9)]  # the words can hardly tell them apart
    vector = [("b", 0.62), ("c", 0.20), ("a", 0.05)]  # meaning clearly can
    fused = dict(Hybrid().fuse(lexical, vector, name, 3))
    assert fused["b"] == pytest.approx(4.9 / 5.0 + 1.0)
    assert fused["a"] == pytest.approx(1.0 + 0.0)
    assert fused["c"] == pytest.approx((0.20 - 0.05) / (0.62 - 0.05))
    assert list(fused) == ["b", "a", "c"]
    # a lone text match keeps its full weight: an exact word is strong evidence
    assert Hybrid().fuse([("only", 0.3)], [], name, 1) == [("only", 1.0)]


def test_an_exact_word_match_lifts_a_memory_vectors_ranked_low() -> None:
    lexical = [("named", 7.5), ("partial", 1.0)]
    vector = [("near", 0.40), ("also near", 0.39), ("named", 0.30), ("partial", 0.05)]
    fused = Hybrid().fuse(lexical, vector, name, 3)
    assert fused[0][0] == "named"
    assert fused[0][1] == pytest.approx(1.0 + (0.30 - 0.05) / (0.40 - 0.05))


def test_a_zero_weight_leaves_a_ranking_out_and_keeps_the_others_order() -> None:
    lexical = [("a", 3.0), ("b", 2.0)]
    vector = [("c", 0.9), ("b", 0.8), ("a", 0.1)]
    assert [i for i, _ in Hybrid(vector=0.0).fuse(lexical, vector, name, 5)] == ["a", "b"]
    assert [i for i, _ in Hybrid(lexical=0.0).fuse(lexical, vector, name, 5)] == ["c", "b", "a"]


def test_fusion_is_bounded_by_limit_and_keeps_the_first_rankings_copy() -> None:
    lexical = [("x", 1.0)]
    vector = [("x", 0.5), ("y", 0.4), ("z", 0.3)]
    fused = fuse_scores([(1.0, lexical), (1.0, vector)], name, floors=(0.0, None), limit=2)
    assert len(fused) == 2
    assert fused[0] == ("x", pytest.approx(2.0))
    assert fuse_scores([(1.0, lexical)], name, floors=(0.0,), limit=0) == []


def test_rrf_is_still_available() -> None:
    lexical = [("a", 9.0), ("b", 1.0)]
    vector = [("b", 0.9), ("c", 0.8)]
    expected = fuse([(1.0, ["a", "b"]), (1.0, ["b", "c"])], name, k=60, limit=3)
    assert Hybrid(method="rrf").fuse(lexical, vector, name, 3) == expected
    assert expected[0][0] == "b"  # in both rankings


def test_bad_settings_are_refused_with_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="'scores' or 'rrf'"):
        Hybrid(method="bm25")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not both 0"):
        Hybrid(lexical=0.0, vector=0.0)
