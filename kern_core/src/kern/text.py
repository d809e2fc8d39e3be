"""The one word tokenizer: how kern cuts text into words, for every backend's search.

A word is a run of Unicode word characters (``\\w+``: letters, digits, ``_``), so no
character a search syntax reads as an operator (quotes, ``-``, ``*``, parentheses) can be
part of one. Backends index and query with their own normalisation after this step
(lowercasing, accent folding, stemming), but they all cut text the same way. This module
imports nothing of kern, so a plugin can use it without loading the learning machinery.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str | None) -> list[str]:
    """The words of ``text`` in order, repeats kept and case as written (``[]`` for none).

    >>> words("What's the user's *favourite* café?")
    ['What', 's', 'the', 'user', 's', 'favourite', 'café']
    """
    return _WORD.findall(text) if text else []
