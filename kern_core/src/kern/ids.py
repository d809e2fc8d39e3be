"""The rules for ids and stored text, checked once in kern-core for every backend.

Every id that crosses the storage contract (session, user, run, memory, learning, agent and
component, entity ids, the namespace and kind of a learning) must be a non-empty ``str`` of
at most ``MAX_ID_LENGTH`` characters, with no NUL and no lone surrogate (so it is valid
UTF-8). Anything else raises ``InvalidIdError`` before a driver sees it: a dict never becomes
a Mongo operator, ``None`` never means "every user", and no driver error reaches the user.

Stored text (messages, memory and learning content, session state) follows one rule on all
backends: NUL and lone surrogates are refused with ``InvalidTextError``. Postgres cannot hold
NUL in text or JSON, and no backend can encode a lone surrogate as UTF-8; refusing both
everywhere keeps the five backends identical. For the same reason NaN and infinities, and
nesting deeper than ``MAX_DEPTH``, are refused with ``UnserializableError``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from kern.errors import InvalidIdError, InvalidTextError, UnserializableError

#: The longest id accepted, in characters (a uuid4 hex is 32).
MAX_ID_LENGTH = 255

#: The deepest nesting of lists and dicts stored (session state, learning content...).
MAX_DEPTH = 64
#: The longest input of a turn, in characters: checked before the model is called, so a
#: turn too big for a backend (MongoDB documents stop at 16 MB) costs no model call.
MAX_INPUT_CHARS = 1_000_000

#: NUL, or a UTF-16 surrogate code point (only ever "lone" in a Python str).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def check_id(argument: str, value: object, *, optional: bool = False) -> None:
    """Raise ``InvalidIdError`` naming ``argument`` unless ``value`` is a usable id.

    ``optional=True`` lets ``None`` through: for filters where ``None`` means "any" and for
    record fields that may be empty; never for the user of a per-user operation.
    """
    if type(value) is str and 0 < len(value) <= MAX_ID_LENGTH and not _UNSTORABLE.search(value):
        return
    if value is None:
        if optional:
            return
        raise InvalidIdError(argument, "a non-empty string (None is not an id here)", value)
    if not isinstance(value, str):
        raise InvalidIdError(argument, "a string", value)
    if not value:
        raise InvalidIdError(argument, "a non-empty string", value)
    if len(value) > MAX_ID_LENGTH:
        raise InvalidIdError(argument, f"at most {MAX_ID_LENGTH} characters long", value)
    bad = _UNSTORABLE.search(value)
    if bad is not None:
        raise InvalidIdError(argument, _unstorable_rule(bad.group()), value)


def check_text(field: str, value: Any) -> None:
    """Raise unless a JSON-like ``value`` can be stored alike on every backend: no string
    (keys included) with NUL or a lone surrogate (``InvalidTextError``), no NaN or infinity
    and no nesting deeper than ``MAX_DEPTH`` (``UnserializableError``)."""
    found = _problem(value, 0)
    if found is None:
        return
    path, problem = found
    where = field + "".join(reversed(path))
    if isinstance(problem, re.Match):
        raise InvalidTextError(
            f"{where} contains {_unstorable_rule(problem.group(), negate=False)} at position "
            f"{problem.start()}, which kern does not store (Postgres cannot hold NUL and no "
            "backend can encode a lone surrogate as UTF-8). Remove or replace it "
            "(for example text.replace('\\x00', '')); nothing was written."
        )
    if isinstance(problem, float):
        raise UnserializableError(
            f"{where} is {problem!r}, which JSON cannot hold (backends would store null, "
            "fail or keep it differently). Store None or a string instead; nothing was "
            "written."
        )
    raise UnserializableError(
        f"{where} is nested more than {MAX_DEPTH} levels deep, more than kern stores (some "
        "backends could not read it back). Flatten it; nothing was written."
    )


def _problem(value: Any, depth: int) -> tuple[list[str], object] | None:
    """The first unstorable part of ``value``: its path (innermost first) and what is wrong.
    The path is built only on the way out of a failure, so a clean value costs one walk."""
    if isinstance(value, str):
        bad = _UNSTORABLE.search(value)
        return None if bad is None else ([], bad)
    if isinstance(value, float):
        return None if math.isfinite(value) else ([], value)
    if isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            return [], _TOO_DEEP
        for key, item in value.items():
            found = _problem(key, depth + 1)
            if found is not None:
                found[0].append(" key")
                return found
            found = _problem(item, depth + 1)
            if found is not None:
                found[0].append(f"[{key!r}]")
                return found
    elif isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            return [], _TOO_DEEP
        for index, item in enumerate(value):
            found = _problem(item, depth + 1)
            if found is not None:
                found[0].append(f"[{index}]")
                return found
    return None


_TOO_DEEP = object()


def check_input(value: Any) -> None:
    """A turn's input: a string of storable text, checked before the model is called."""
    if not isinstance(value, str):
        raise InvalidTextError(
            f"the input of a turn must be a string, got {type(value).__name__}: pass the "
            "user's message as text (json.dumps(...) for structured data); nothing was stored."
        )
    if len(value) > MAX_INPUT_CHARS:
        raise InvalidTextError(
            f"the input of a turn is {len(value):,} characters long, more than kern stores "
            f"in one run ({MAX_INPUT_CHARS:,}; kern.ids.MAX_INPUT_CHARS). Split it, or keep "
            "the document elsewhere and pass a reference; nothing was stored."
        )
    check_text("input", value)


def _unstorable_rule(char: str, *, negate: bool = True) -> str:
    if char == "\x00":
        return "free of NUL characters (\\x00)" if negate else "a NUL character (\\x00)"
    what = f"a lone surrogate ({char!r})"
    return f"valid UTF-8, without {what}" if negate else what
