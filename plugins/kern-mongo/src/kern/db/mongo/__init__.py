"""MongoDB storage for kern: ``MongoDb`` (pymongo) and ``AsyncMongoDb`` (pymongo's async client).

The classes are imported on first use, so loading the plugin does not import the driver.
"""

from typing import TYPE_CHECKING

from kern.plugins import lazy_exports

if TYPE_CHECKING:
    from kern.db.mongo.codec import DocumentTooLargeError
    from kern.db.mongo.db import AsyncMongoDb, MongoDb

__all__ = ["AsyncMongoDb", "DocumentTooLargeError", "MongoDb"]
__getattr__ = lazy_exports(
    __name__,
    {
        "AsyncMongoDb": "kern.db.mongo.db",
        "MongoDb": "kern.db.mongo.db",
        "DocumentTooLargeError": "kern.db.mongo.codec",
    },
)
