"""The table prefix: its default and its check.

Kept apart from ``kern.db.sql.schema`` (which builds the tables with SQLAlchemy) so that a
Db class can name the default in its signature without importing SQLAlchemy: see
docs/benchmarks.md#cold-start.
"""

from __future__ import annotations

import re

from kern.errors import ConfigurationError

DEFAULT_PREFIX = "kern_"

_PREFIX_RE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]{0,39})?$")


def check_prefix(prefix: str) -> str:
    """Refuse prefixes that are not plain identifiers (they end up in DDL text)."""
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise ConfigurationError(
            f"table_prefix {prefix!r} is not usable: use letters, digits and underscores, "
            "starting with a letter or underscore (at most 40 characters), e.g. 'kern_'."
        )
    return prefix


__all__ = ["DEFAULT_PREFIX", "check_prefix"]
