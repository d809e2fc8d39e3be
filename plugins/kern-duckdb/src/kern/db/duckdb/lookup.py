"""Reading rows by a list of keys, the lookup DuckDB answers from an index at any size.

DuckDB reads an explicit ``key IN (?, ?, ...)`` list through the key's ART index (one index
probe per key), but only when that is the scan's one filter: any other condition on the
same scan (``AND status = ?``) turns it into a sequential scan. So other conditions are
applied to a ``MATERIALIZED`` CTE of the looked-up rows (``fenced``). A single list
parameter (``key = ANY(?)``) is read through the index only up to about fifty keys, so kern
binds one placeholder per key; past 16 keys the list is padded to a power of two with
repeats of its last key, so that a few dozen compiled statements serve every list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, bindparam, select
from sqlalchemy.sql import FromClause

from kern.db.sql.prepared import Link, Prepared

#: Keys per statement; longer lists are read in chunks (DuckDB uses the index up to 2,048).
MAX_KEYS = 1024


def fenced(
    table: Table, lookup: ColumnElement[bool], columns: Sequence[str] | None = None
) -> FromClause:
    """``table``'s rows matching ``lookup`` (one indexed condition), as a CTE that later
    conditions cannot be pushed into: DuckDB reads it through the index, then filters."""
    selected = [table.c[name] for name in columns] if columns else list(table.c)
    return select(*selected).where(lookup).cte("looked_up").prefix_with("MATERIALIZED")


def _size(n: int) -> int:
    size = 1
    while size < n:
        size *= 2
    return size


class InLookup:
    """``SELECT <columns> FROM <table> WHERE <key> IN (...) [AND <filter> ...]``.

    ``filters`` given to ``rows`` are column equalities; a value of ``None`` means
    ``IS NULL``. Rows come back in no particular order.
    """

    def __init__(
        self,
        prepare: Callable[[Select[Any]], Prepared],
        table: Table,
        key: str,
        columns: Sequence[str] | None = None,
    ) -> None:
        self._prepare = prepare
        self.table = table
        self.key = table.c[key]
        self.columns = [table.c[name] for name in columns] if columns else list(table.c)
        self._cache: dict[tuple[int, tuple[tuple[str, bool], ...]], Prepared] = {}

    def _statement(self, size: int, shape: tuple[tuple[str, bool], ...]) -> Prepared:
        prepared = self._cache.get((size, shape))
        if prepared is None:
            lookup = self.key.in_([bindparam(f"k{i}") for i in range(size)])
            if shape:
                names = [c.name for c in self.columns]
                rows = fenced(
                    self.table, lookup, [*names, *(n for n, _ in shape if n not in names)]
                )
                where: list[ColumnElement[bool]] = [
                    rows.c[name].is_(None) if is_null else rows.c[name] == bindparam(f"f_{name}")
                    for name, is_null in shape
                ]
                stmt = select(*(rows.c[name] for name in names)).where(*where)
            else:
                stmt = select(*self.columns).where(lookup)
            prepared = self._cache[(size, shape)] = self._prepare(stmt)
        return prepared

    def rows(
        self, link: Link, keys: Sequence[str], filters: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """The rows whose key is in ``keys`` (and that pass ``filters``)."""
        filters = filters or {}
        shape = tuple(sorted((name, value is None) for name, value in filters.items()))
        params = {f"f_{name}": value for name, value in filters.items() if value is not None}
        unique = list(dict.fromkeys(keys))
        found: list[dict[str, Any]] = []
        for start in range(0, len(unique), MAX_KEYS):
            chunk = unique[start : start + MAX_KEYS]
            size = _size(len(chunk))
            padded = chunk + [chunk[-1]] * (size - len(chunk))
            bound = {f"k{i}": key for i, key in enumerate(padded)}
            found.extend(link.all(self._statement(size, shape), {**bound, **params}))
        return found
