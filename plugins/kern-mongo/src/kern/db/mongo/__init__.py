"""MongoDB storage for kern: ``MongoDb`` (pymongo) and ``AsyncMongoDb`` (pymongo's async client).

The classes are imported on first use, so that loading the plugin (``_plugin``) to learn its
URL schemes does not import pymongo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kern.db.mongo.db import AsyncMongoDb, MongoDb

__all__ = ["AsyncMongoDb", "MongoDb"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from kern.db.mongo import db

        return getattr(db, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
