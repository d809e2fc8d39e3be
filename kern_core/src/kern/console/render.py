"""Pages rendered on the server: the package's Jinja2 templates, with autoescape on.

Everything a model or a person wrote (messages, memories, learnings, ids) reaches a page
through Jinja2's escaping, so ``<script>`` or ``<img onerror=...>`` in a memory shows as
text. No template marks stored text safe; the filters here return plain strings, which are
escaped like any other value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse

from kern.console.context import console_of
from kern.records import Message, Run

#: Characters of a run id shown in a transcript's labels (the page links the whole id).
SHORT_ID = 8


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def as_text(value: object) -> str:
    """A stored JSON value as text: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=None)


def pretty(value: object) -> str:
    """A JSON value indented, for a ``<pre>``."""
    return json.dumps(value, ensure_ascii=False, indent=2)


def id_path(value: str) -> str:
    """An id as one URL path segment (``/`` and ``%`` quoted too)."""
    return quote(value, safe="")


def field_text(value: object) -> str:
    """A learning's field: lists joined with commas, other JSON as JSON."""
    if isinstance(value, list):
        return ", ".join(as_text(item) for item in value)
    return as_text(value)


@dataclass(frozen=True)
class Line:
    """One line of a transcript: who said it (or what it is) and the text."""

    label: str
    text: str
    kind: str


def run_lines(run: Run) -> tuple[list[Line], list[Line]]:
    """The run's lines before its nested runs, and those after (its final answer and its
    output when that is not the answer already)."""
    lines: list[Line] = []
    if run.input is not None and not any(m.role == "user" for m in run.messages):
        lines.append(Line("input", as_text(run.input), "user"))
    for message in run.messages:
        lines += _message_lines(message)
    last = run.messages[-1] if run.messages else None
    final = last is not None and last.role == "assistant" and not last.tool_calls
    tail = [lines.pop()] if final and lines else []
    if run.output is not None:
        said = [m.content for m in run.messages if m.role == "assistant" and m.content]
        text = as_text(run.output)
        if not said or said[-1] != text:
            tail.append(Line("output", text, "output"))
    return lines, tail


def _message_lines(message: Message) -> list[Line]:
    lines: list[Line] = []
    if message.role == "tool":
        name = message.name or message.tool_call_id or ""
        lines.append(Line(f"tool {name}".strip(), message.content or "", "tool"))
    elif message.content or not message.tool_calls:
        lines.append(Line(message.role, message.content or "", message.role))
    for call in message.tool_calls or []:
        lines.append(Line(f"{message.role} calls", f"{call.name}({call.arguments})", "call"))
    return lines


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("kern.console", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when, as_text=as_text, pretty=pretty, id_path=id_path, field_text=field_text
    )
    env.globals.update(run_lines=run_lines, SHORT_ID=SHORT_ID)
    return env


TEMPLATES = _environment()


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """``templates/<name>`` as an HTML response, with what every page shows: the mode,
    the database, and (for a logged-in browser only) the CSRF value for its forms."""
    console = console_of(request)
    authenticated = getattr(request.state, "auth", None) is not None
    html = TEMPLATES.get_template(name).render(
        read_only=console.read_only,
        csrf=console.keys.csrf if authenticated else "",
        authenticated=authenticated,
        **context,
    )
    return HTMLResponse(html, status_code=status_code)
