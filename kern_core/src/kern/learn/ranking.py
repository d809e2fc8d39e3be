"""Hybrid ranking: lexical and vector candidates fused into one list.

Two fusions, chosen by ``Hybrid.method``:

- ``"scores"`` (the default): a weighted sum of the two rankings' *normalised scores*
  (convex combination, as analysed by Bruch, Gai and Ingber, 2023). Each ranking's scores
  are mapped to [0, 1] over its own candidates: the best candidate gets 1; the vector
  ranking's worst gets 0 (cosine similarities of one query sit in a narrow band, whose
  width is what tells the candidates apart), while the lexical ranking's floor is 0 itself
  (a text match score is never negative, so one lone weak match is not promoted to the
  top of the scale of a ranking that had nothing better). An item missing from a ranking
  gets 0 from it. Unlike rank fusion, a narrow vector win and a lexical match of a
  distractor are not worth the same: the score keeps how far apart the candidates were.
- ``"rrf"``: reciprocal rank fusion (Cormack, Clarke and Büttcher, 2009): the sum of
  ``weight / (k + rank)`` over the rankings an item appears in. Scale-free, and it rewards
  items both rankings hold, which is what hurts when one ranking is noise (a text match
  on a word the question shares with an unrelated memory).

Measured on kern's labelled sets with the offline embedder (``nox -s quality``,
docs/benchmarks.md): ``"scores"`` ranks the answer higher than ``"rrf"`` on both sets
(MRR), with the same or better hit@5.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

T = TypeVar("T")

#: A ranking to fuse: ``(weight, [(item, score), ...] best first)``.
Ranking = tuple[float, Sequence[tuple[T, float]]]


@dataclass(frozen=True)
class Hybrid:
    """How recall fuses its rankings: the weight of each, the method, and RRF's ``k``.

    ``candidates`` is how many of each ranking are read per result wanted (a recall of 5
    reads the 15 best of each): fusion can only promote what a ranking returned. A weight
    of 0 leaves that ranking out (``Hybrid(vector=0.0)``: words only).
    """

    lexical: float = 1.0
    vector: float = 1.0
    method: Literal["scores", "rrf"] = "scores"
    k: int = 60
    candidates: int = 3

    def __post_init__(self) -> None:
        if self.lexical < 0 or self.vector < 0 or self.lexical + self.vector == 0:
            raise ValueError("Hybrid weights must be >= 0 and not both 0")
        if self.k < 1 or self.candidates < 1:
            raise ValueError("Hybrid k and candidates must be at least 1")
        if self.method not in ("scores", "rrf"):
            raise ValueError(f"Hybrid method must be 'scores' or 'rrf', not {self.method!r}")

    def fuse(
        self,
        lexical: Sequence[tuple[T, float]],
        vector: Sequence[tuple[T, float]],
        key: Callable[[T], str],
        limit: int,
    ) -> list[tuple[T, float]]:
        """The two scored rankings (best first) fused by this setting, best first."""
        rankings: list[Ranking[T]] = [(self.lexical, lexical), (self.vector, vector)]
        if self.method == "rrf":
            return fuse(
                [(w, [item for item, _ in r]) for w, r in rankings], key, k=self.k, limit=limit
            )
        floors = (0.0, None)  # lexical: 0 is the floor; vector: the worst candidate
        return fuse_scores(rankings, key, floors=floors, limit=limit)


def normalised(scores: Sequence[float], floor: float | None) -> list[float]:
    """``scores`` mapped to [0, 1]: the best to 1, ``floor`` (None: the worst) to 0."""
    if not scores:
        return []
    top = max(scores)
    low = min(scores) if floor is None else min(floor, min(scores))
    span = top - low
    if span <= 0:
        return [1.0] * len(scores)
    return [(score - low) / span for score in scores]


def fuse_scores(
    rankings: Sequence[Ranking[T]],
    key: Callable[[T], str],
    *,
    floors: Sequence[float | None],
    limit: int,
) -> list[tuple[T, float]]:
    """The items of ``rankings`` fused by the weighted sum of their normalised scores
    (``floors[i]``: the score ranking ``i`` maps to 0, None for its worst), best first, at
    most ``limit``. Where an item is in several rankings, the first ranking's copy is kept;
    ties keep the order of first appearance."""
    fused: dict[str, float] = {}
    items: dict[str, T] = {}
    for (weight, ranking), floor in zip(rankings, floors, strict=True):
        if weight == 0:
            continue
        values = normalised([score for _, score in ranking], floor)
        for (item, _), value in zip(ranking, values, strict=True):
            name = key(item)
            items.setdefault(name, item)
            fused[name] = fused.get(name, 0.0) + weight * value
    order = sorted(fused, key=lambda name: -fused[name])
    return [(items[name], fused[name]) for name in order[: max(limit, 0)]]


def fuse(
    rankings: Sequence[tuple[float, Sequence[T]]],
    key: Callable[[T], str],
    *,
    k: int = 60,
    limit: int,
) -> list[tuple[T, float]]:
    """Reciprocal rank fusion of ``rankings`` (``(weight, items best first)``), best first,
    at most ``limit``, as ``(item, fused score)``. An item is identified by ``key``; where it
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


__all__ = ["Hybrid", "fuse", "fuse_scores", "normalised"]
