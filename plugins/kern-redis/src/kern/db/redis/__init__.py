"""Redis storage for kern: ``RedisDb`` and ``AsyncRedisDb`` (redis-py; standalone or Cluster).

The classes are imported on first use, so loading the plugin does not import the driver.
"""

from typing import TYPE_CHECKING

from kern.plugins import lazy_exports

if TYPE_CHECKING:
    from kern.db.redis.db import AsyncRedisDb, RedisDb

__all__ = ["AsyncRedisDb", "RedisDb"]
__getattr__ = lazy_exports(__name__, dict.fromkeys(__all__, "kern.db.redis.db"))
