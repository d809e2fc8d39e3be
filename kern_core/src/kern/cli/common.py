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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from rich.console import Console

from kern.db.base import BaseDb

OK = 0
FAILED = 1
BAD_INPUT = 2

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
