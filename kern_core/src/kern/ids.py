"""The rules for ids and stored text, checked once in kern-core for every backend.

Every id that crosses the storage contract (session, user, run, memory, learning, agent and
component, entity ids, the namespace and kind of a learning) must be a non-empty ``str`` of
at most ``MAX_ID_LENGTH`` characters, with no NUL and no lone surrogate (so it is valid
UTF-8). Anything else raises ``InvalidIdError`` before a driver sees it: a dict never becomes
a Mongo operator, ``None`` never means "every user", and no driver error reaches the user.

Stored text (messages, memory and learning content, session state) follows one rule on all
backends: NUL and lone surrogates are refused with ``InvalidTextError``. Postgres cannot hold
NUL in text or JSON, and no backend can encode a lone surrogate as UTF-8; refusing both
everywhere keeps the five backends identical.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kern.errors import InvalidIdError, InvalidTextError

#: The longest id accepted, in characters (a uuid4 hex is 32).
MAX_ID_LENGTH = 255

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
    """Raise ``InvalidTextError`` if any string in a JSON-like ``value`` (keys included)
    holds NUL or a lone surrogate. Walks dicts, lists and tuples; other values pass."""
    if isinstance(value, str):
        bad = _UNSTORABLE.search(value)
        if bad is not None:
            raise InvalidTextError(
                f"{field} contains {_unstorable_rule(bad.group(), negate=False)} at position "
                f"{bad.start()}, which kern does not store (Postgres cannot hold NUL and no "
                "backend can encode a lone surrogate as UTF-8). Remove or replace it "
                "(for example text.replace('\\x00', '')); nothing was written."
            )
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_text(f"{field} key", key)
            check_text(f"{field}[{key!r}]", item)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_text(f"{field}[{index}]", item)


def check_input(value: Any) -> None:
    """A turn's input: a string of storable text, checked before the model is called."""
    if not isinstance(value, str):
        raise InvalidTextError(
            f"the input of a turn must be a string, got {type(value).__name__}: pass the "
            "user's message as text (json.dumps(...) for structured data); nothing was stored."
        )
    check_text("input", value)


def _unstorable_rule(char: str, *, negate: bool = True) -> str:
    if char == "\x00":
        return "free of NUL characters (\\x00)" if negate else "a NUL character (\\x00)"
    what = f"a lone surrogate ({char!r})"
    return f"valid UTF-8, without {what}" if negate else what
