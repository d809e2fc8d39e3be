"""MongoDB storage for kern: ``MongoDb`` (pymongo) and ``AsyncMongoDb`` (pymongo's async client).

The classes are imported on first use, so loading the plugin does not import the driver.
"""

from typing import TYPE_CHECKING

from kern.plugins import lazy_exports

if TYPE_CHECKING:
    from kern.db.mongo.db import AsyncMongoDb, MongoDb

__all__ = ["AsyncMongoDb", "MongoDb"]
__getattr__ = lazy_exports(__name__, dict.fromkeys(__all__, "kern.db.mongo.db"))
