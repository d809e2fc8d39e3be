"""A relative file path in a configuration file means "next to that file".

``db_url = "sqlite:///agents.db"`` in a ``kern.toml`` found in a parent folder must name the
same file whichever subfolder the program starts in, so the loader resolves a relative
SQLite/DuckDB path from the folder of the file that holds it. A URL given in code or in
``KERN_DB_URL`` keeps the working directory, as the backends document.
"""

from __future__ import annotations

from pathlib import Path

#: Schemes (before any ``+driver``) whose URL path is a local file.
FILE_SCHEMES = ("sqlite", "duckdb")


def resolve_from(url: str, folder: Path) -> str:
    """``url`` with a relative file path made absolute from ``folder``; others unchanged.

    ``sqlite:///a.db`` (three slashes) is relative, ``sqlite:////tmp/a.db`` (four) absolute;
    ``:memory:`` and an empty path stay as they are.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0].lower() not in FILE_SCHEMES:
        return url
    if not rest.startswith("/") or rest.startswith("//"):
        return url  # a host part, or already absolute
    path, query_sep, query = rest[1:].partition("?")
    if not path or path.startswith(":memory:") or Path(path).is_absolute():
        return url
    return f"{scheme}:///{(folder.resolve() / path)}{query_sep}{query}"
