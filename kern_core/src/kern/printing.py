"""Terminal output for ``print_response``, with rich.

The model's text is shown as ``Text`` (or rendered ``Markdown`` when asked for): never
parsed as rich markup, so an answer containing ``[bold]`` or ``[/]`` prints as written.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable

from rich.console import Console, RenderableType
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.text import Text

from kern.run import RunEvent, RunOutput

console = Console()


def _panels(message: str, answer: str, markdown: bool) -> RenderableType:
    from rich.console import Group

    body: RenderableType = Markdown(answer) if markdown else Text(answer)
    return Group(
        Panel(Text(message), title="Message", title_align="left", border_style="cyan"),
        Panel(body, title="Response", title_align="left", border_style="blue"),
    )


def print_run(message: str, output: RunOutput, markdown: bool = False) -> None:
    console.print(_panels(message, output.content or "", markdown))


def print_stream(message: str, events: Iterable[RunEvent], markdown: bool = False) -> RunOutput:
    """Show the answer growing as it streams; return the run's output."""
    text = ""
    output: RunOutput | None = None
    with Live(_panels(message, text, markdown), console=console, refresh_per_second=15) as live:
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
    with Live(_panels(message, text, markdown), console=console, refresh_per_second=15) as live:
        async for event in events:
            if event.event == "content" and event.content:
                text += event.content
                live.update(_panels(message, text, markdown))
            elif event.event == "completed":
                output = event.output
    assert output is not None, "a run stream always ends with a completed event"
    return output
