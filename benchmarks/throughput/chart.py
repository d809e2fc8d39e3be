"""The throughput-against-concurrency chart of a ``benchmarks/throughput.py`` results file.

matplotlib is in the ``bench`` dependency group only (``uv run --group bench ...``): the
benchmark imports this module only when asked for a chart.

    uv run --group bench python benchmarks/throughput/chart.py tmp/throughput.json \\
        docs/throughput.svg
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SIDES = (("kern", "kern", "tab:blue", "o"), ("floor", "floor", "tab:gray", "s"))
AGNO = ("agno", "Agno", "tab:orange", "^")


def draw(results: dict[str, Any], out: Path) -> None:
    """One panel per backend: turns/s of kern, the floor and Agno against C (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: a small, diffable file
    import matplotlib.pyplot as plt

    backends = list(dict.fromkeys(row["backend"] for row in results["rows"]))
    columns = min(2, len(backends))
    lines = (len(backends) + columns - 1) // columns
    fig, axes = plt.subplots(
        lines, columns, figsize=(5 * columns, 3.6 * lines), squeeze=False, sharex=True
    )
    for index, backend in enumerate(backends):
        ax = axes[index // columns][index % columns]
        rows = sorted(
            (r for r in results["rows"] if r["backend"] == backend),
            key=lambda r: r["concurrency"],
        )
        xs = [r["concurrency"] for r in rows]
        for key, label, color, marker in (*SIDES, AGNO):
            points = [(x, r[key]) for x, r in zip(xs, rows, strict=True) if r.get(key)]
            if points:
                ax.plot(*zip(*points, strict=True), marker=marker, color=color, label=label)
        for x, r in zip(xs, rows, strict=True):
            ax.annotate(
                f"{r['kern'] / r['floor']:.2f}x",
                (x, r["kern"]),
                textcoords="offset points",
                xytext=(0, -14),
                ha="center",
                fontsize=8,
                color="tab:blue",
            )
        ax.set_xscale("log")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.minorticks_off()
        ax.set_ylim(bottom=0)
        ax.set_title(backend)
        ax.set_ylabel("turns/s")
        ax.grid(alpha=0.3)
        if index == 0:
            ax.legend(fontsize=8)
    for index in range(len(backends), lines * columns):
        axes[index // columns][index % columns].set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("concurrent sessions (C)")
    fig.suptitle(
        f"Async turns/s against concurrency, {results['turns']} turns per session "
        f"(kern / floor under kern's points; model server ceiling "
        f"{min(c['server'] for c in results['ceiling']):,.0f}+ req/s)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out, metadata={"Date": None})
    plt.close(fig)


if __name__ == "__main__":
    draw(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
