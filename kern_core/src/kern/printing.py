"""Terminal output for ``print_response``, with rich.

The model's text is shown as ``Text`` (or rendered ``Markdown`` when asked for): never
parsed as rich markup, so an answer containing ``[bold]`` or ``[/]`` prints as written.

rich is imported on first print, not here: ``kern.agent`` imports this module, and rich's
console and markdown cost more than a tenth of a second (docs/benchmarks.md#cold-start).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING, Any

from kern.run import RunEvent, RunOutput

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

#: The console everything prints on, made on first use (tests replace it).
console: Console


def __getattr__(name: str) -> Any:
    """``console``, made on first use (PEP 562)."""
    if name == "console":
        return _console()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _console() -> Console:
    """``console`` as set (a test may replace it), or a new one: rich loads on first print."""
    found: Console | None = globals().get("console")
    if found is None:
        from rich.console import Console

        found = globals()["console"] = Console()
    return found


def _live(renderable: RenderableType) -> Live:
    from rich.live import Live

    return Live(renderable, console=_console(), refresh_per_second=15)


def _panels(message: str, answer: str, markdown: bool) -> RenderableType:
    from rich.console import Group
    from rich.markdown import Markdown
    from rich.panel import Panel
    from rich.text import Text

    body: RenderableType = Markdown(answer) if markdown else Text(answer)
    return Group(
        Panel(Text(message), title="Message", title_align="left", border_style="cyan"),
        Panel(body, title="Response", title_align="left", border_style="blue"),
    )


def print_run(message: str, output: RunOutput, markdown: bool = False) -> None:
    _console().print(_panels(message, output.content or "", markdown))


def print_stream(message: str, events: Iterable[RunEvent], markdown: bool = False) -> RunOutput:
    """Show the answer growing as it streams; return the run's output."""
    text = ""
    output: RunOutput | None = None
    with _live(_panels(message, text, markdown)) as live:
        for event in events:
            if event.event == "content" and event.content:
                text += event.content
                live.update(_panels(message, text, markdown))
            elif event.event == "completed":
                output = event.output
    assert output is not None, "a run stream always ends with a completed event"
    return output


async def aprint_stream(
    message: str, events: AsyncIterable[RunEvent], markdown: bool = False
) -> RunOutput:
    text = ""
    output: RunOutput | None = None
    with _live(_panels(message, text, markdown)) as live:
        async for event in events:
            if event.event == "content" and event.content:
                text += event.content
                live.update(_panels(message, text, markdown))
            elif event.event == "completed":
                output = event.output
    assert output is not None, "a run stream always ends with a completed event"
    return output
