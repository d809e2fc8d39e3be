"""Exact vector search, written once for every backend that has no vector index to ask.

A backend reads the candidates' vectors (one user's memories, the learnings a filter
selects) and ``nearest`` ranks them by cosine similarity with numpy: one matrix product
over float32 rows. Bytes are how the byte-storing backends keep a vector
(``Embedding.as_float32``: little-endian float32). numpy is imported on the first search,
not with the module: every backend imports this, and most processes never rank a vector.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

K = TypeVar("K")

Vector = bytes | bytearray | memoryview | Sequence[float]


def as_array(vector: Vector) -> npt.NDArray[np.float32]:
    """A stored vector (float32 bytes or a list of numbers) as a float32 array."""
    import numpy as np

    if isinstance(vector, bytes | bytearray | memoryview):
        return np.frombuffer(vector, dtype="<f4")
    return np.asarray(vector, dtype=np.float32)


def nearest(
    query: Sequence[float], candidates: Iterable[tuple[K, Vector]], limit: int
) -> list[tuple[K, float]]:
    """The ``limit`` candidates most similar to ``query`` by cosine similarity, best first,
    as ``(key, score)``. Candidates of another dimension, or of zero length, are skipped."""
    if limit < 1:
        return []
    import numpy as np

    target = np.asarray(query, dtype=np.float32)
    norm = float(np.linalg.norm(target))
    if norm == 0.0:
        return []
    target = target / norm
    keys: list[K] = []
    rows: list[npt.NDArray[np.float32]] = []
    for key, vector in candidates:
        row = as_array(vector)
        if row.shape == target.shape:
            keys.append(key)
            rows.append(row)
    if not rows:
        return []
    matrix = np.vstack(rows)
    norms = np.linalg.norm(matrix, axis=1)
    norms[norms == 0.0] = 1.0
    scores = (matrix @ target) / norms
    count = min(limit, len(keys))
    top = np.argpartition(-scores, count - 1)[:count]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(keys[i], float(scores[i])) for i in top]


__all__ = ["Vector", "as_array", "nearest"]
