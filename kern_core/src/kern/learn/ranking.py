"""Hybrid ranking: lexical and vector candidates fused into one list.

Reciprocal rank fusion (Cormack, Clarke and Büttcher, 2009): an item's fused score is the
sum, over the rankings it appears in, of ``weight / (k + rank)``. It needs no calibration
between the two scores (BM25-like text scores and cosine similarities live on different
scales), rewards items both rankings agree on, and keeps an item found by one ranking
only. ``k`` damps the head of each list; 60 is the paper's value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Hybrid:
    """How recall fuses its rankings: the weight of each, and RRF's ``k``.

    ``candidates`` is how many of each ranking are read per result wanted (a recall of 5
    reads the 15 best of each): fusion can only promote what a ranking returned.
    """

    lexical: float = 1.0
    vector: float = 1.0
    k: int = 60
    candidates: int = 3

    def __post_init__(self) -> None:
        if self.lexical < 0 or self.vector < 0 or self.lexical + self.vector == 0:
            raise ValueError("Hybrid weights must be >= 0 and not both 0")
        if self.k < 1 or self.candidates < 1:
            raise ValueError("Hybrid k and candidates must be at least 1")


def fuse(
    rankings: Sequence[tuple[float, Sequence[T]]],
    key: Callable[[T], str],
    *,
    k: int = 60,
    limit: int,
) -> list[tuple[T, float]]:
    """The items of ``rankings`` (``(weight, items best first)``), fused, best first, at
    most ``limit``, as ``(item, fused score)``. An item is identified by ``key``; where it
    appears in several rankings, the first ranking's copy is kept. Ties keep the order of
    first appearance."""
    scores: dict[str, float] = {}
    items: dict[str, T] = {}
    for weight, ranking in rankings:
        if weight == 0:
            continue
        for rank, item in enumerate(ranking, 1):
            name = key(item)
            items.setdefault(name, item)
            scores[name] = scores.get(name, 0.0) + weight / (k + rank)
    order = sorted(scores, key=lambda name: -scores[name])
    return [(items[name], scores[name]) for name in order[: max(limit, 0)]]


__all__ = ["Hybrid", "fuse"]
