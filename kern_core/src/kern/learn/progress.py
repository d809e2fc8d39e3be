"""A progress line in the terminal for long maintenance runs (``lm.reembed(progress=True)``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Report = Callable[[str, int], None]


@contextmanager
def progress_line(show: bool) -> Iterator[Report | None]:
    """A ``report(table, count)`` callback drawing a rich spinner line, or None if not
    ``show``: the count of rows done per table, since the total is not known up front."""
    if not show:
        yield None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), transient=False) as bar:
        task = bar.add_task("re-embedding", total=None)

        def report(table: str, count: int) -> None:
            bar.update(task, description=f"re-embedded {count} {table}")

        yield report


__all__ = ["progress_line"]
