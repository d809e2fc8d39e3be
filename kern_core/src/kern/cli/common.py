"""What every ``kern`` command shares: which database, how results are shown, exit codes.

Commands open the database named by ``--db URL``, else ``KERN_DB_URL``, else ``kern.toml`` /
``[tool.kern]`` (``kern.db.connect``'s own order). People get rich tables; scripts pass
``--json`` and get one JSON document (or JSON lines, for streams) on stdout. A command
returns ``OK`` (0); a kern error the user can fix is printed as one line naming the fix and
exits ``FAILED`` (1), or ``BAD_INPUT`` (2) when the input itself was wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from rich.console import Console
from rich.text import Text

from kern.db.base import BaseDb
from kern.errors import InvalidIdError
from kern.ids import check_id

OK = 0
FAILED = 1
BAD_INPUT = 2

N = TypeVar("N", int, float)

#: What a command's handler is: the parsed arguments in, an exit code out.
Handler = Callable[[argparse.Namespace], int]

#: People read stdout; diagnostics and progress go to stderr so that ``--json`` and
#: ``kern export > file`` stay clean.
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class CommandError(Exception):
    """A failure the command explains itself: ``message`` is printed, ``code`` returned."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


def add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help="database URL (default: KERN_DB_URL, else db_url in kern.toml or [tool.kern])",
    )


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print JSON for scripts instead of tables"
    )


@contextmanager
def open_db(url: str | None) -> Iterator[BaseDb]:
    """The sync db for ``url`` (or the configured one), closed afterwards."""
    from kern.db import connect

    db = connect(url, is_async=False)
    try:
        yield db
    finally:
        db.close()


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def print_json(value: Any) -> None:
    """``value`` (records, dicts, lists of them) as indented JSON on stdout."""
    sys.stdout.write(json.dumps(value, default=_default, ensure_ascii=False, indent=2) + "\n")


def short(text: object, width: int = 60) -> str:
    """One line of at most ``width`` characters, for a table cell."""
    line = " ".join(str(text).split()) if text is not None else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def cell(value: object, width: int = 60) -> Text:
    """``short(value)`` as a table cell shown exactly as stored: memories and learnings may
    hold ``[bold]`` or other brackets that rich would otherwise read as markup."""
    return Text(short(value, width))


def compact(content: Mapping[str, object]) -> str:
    """A learning's content on one line (``name: Ada; preferences: tea, quiet``), empty
    fields left out: a table has no room for its JSON."""
    parts = []
    for name, value in content.items():
        if value in (None, "", [], {}):
            continue
        if isinstance(value, list):
            value = ", ".join(
                json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else str(v) for v in value
            )
        elif isinstance(value, dict):
            value = json.dumps(value, ensure_ascii=False)
        parts.append(f"{name}: {value}")
    return "; ".join(parts)


def at_least(minimum: N, kind: Callable[[str], N]) -> Callable[[str], N]:
    """An argparse ``type``: a number of ``kind`` not below ``minimum``. A bad one is
    reported by argparse, naming the option, with exit code 2 (``BAD_INPUT``)."""
    noun = "whole number" if kind is int else "number"

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value != value or value < minimum:  # value != value: NaN
            raise argparse.ArgumentTypeError(
                f"must be a {noun} of at least {minimum}, not {text!r}"
            )
        return value

    return parse


def check_ids(name: str, *values: str | None) -> None:
    """Refuse a malformed id (``BAD_INPUT``) before anything is read, naming the argument
    as the person typed it (``USER_ID``), not as the storage API calls it."""
    for value in values:
        try:
            check_id(name, value, optional=True)
        except InvalidIdError as exc:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:36] + "...'"
            raise CommandError(f"{name} must be {exc.rule}, not {shown}", BAD_INPUT) from None


def confirm(question: str, *, without_terminal: str, declined: str) -> None:
    """Ask ``question`` on the terminal; without one, refuse with ``without_terminal``
    (``BAD_INPUT``): a script must say ``--yes`` itself. Anything but y is ``declined``."""
    if not sys.stdin.isatty():
        raise CommandError(without_terminal, BAD_INPUT)
    try:
        answer = err.input(Text(f"{question} This cannot be undone. [y/N] "))
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise CommandError(declined)
