"""Redis storage for kern: ``RedisDb`` and ``AsyncRedisDb`` (redis-py; standalone or Cluster)."""

from kern.db.redis.db import AsyncRedisDb, RedisDb

__all__ = ["AsyncRedisDb", "RedisDb"]
