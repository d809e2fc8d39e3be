"""The per-turn-against-session-length chart of a ``benchmarks/per_turn.py`` results file.

matplotlib is in the ``bench`` dependency group only (``uv run --group bench ...``): the
benchmark imports this module only when asked for a chart.

    uv run --group bench python benchmarks/per_turn_chart.py tmp/per_turn.json docs/per_turn.svg
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SIDES = (
    ("kern", "kern", "tab:blue", "o"),
    ("floor", "floor (bare SDK + driver)", "tab:gray", "s"),
    ("agno", "Agno", "tab:orange", "^"),
)


def draw(results: dict[str, Any], out: Path) -> None:
    """One panel per backend: median ms per turn of kern, the floor and Agno against the
    number of runs already in the session (evenly spaced sizes; Agno on a log scale would
    hide kern's flat line, so each panel shares one linear axis and says Agno's figure)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: a small, diffable file
    import matplotlib.pyplot as plt

    backends = list(dict.fromkeys(row["backend"] for row in results["rows"]))
    columns = min(3, len(backends))
    lines = (len(backends) + columns - 1) // columns
    fig, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.4 * lines), squeeze=False)
    for index, backend in enumerate(backends):
        ax = axes[index // columns][index % columns]
        rows = sorted((r for r in results["rows"] if r["backend"] == backend), key=_size)
        xs = list(range(len(rows)))
        for key, label, color, marker in SIDES:
            points = [(x, r[key]) for x, r in zip(xs, rows, strict=True) if r.get(key)]
            if points:
                ax.plot(*zip(*points, strict=True), marker=marker, color=color, label=label)
        ax.set_xticks(xs, [f"{r['size']:,}" for r in rows])
        ax.set_yscale("log")
        ax.set_xlabel("runs already in the session")
        ax.set_ylabel("ms per turn (median)")
        ax.set_title(backend)
        ax.grid(True, which="both", alpha=0.3)
    for extra in range(len(backends), lines * columns):
        axes[extra // columns][extra % columns].axis("off")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("One persisted turn (last 3 runs as history) against session length")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Date": None})
    plt.close(fig)


def _size(row: dict[str, Any]) -> int:
    return int(row["size"])


if __name__ == "__main__":
    draw(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
