"""kern's learning acceptance suite on Redis, sync and async, a fresh key prefix per test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

pytest.register_assert_rewrite("kern.testing.learning")

from kern.testing.learning import LearningAcceptance  # noqa: E402


class _OnRedis:
    db_class: ClassVar[str]

    @pytest.fixture(autouse=True)
    def _isolated(self, redis_space: Callable[[str], tuple[str, str]]) -> None:
        self.url, self.key_prefix = redis_space("redis_url")

    def db_factory(self, tmp_path: Path) -> tuple[str, dict[str, Any]]:
        return self.db_class, {"db_url": self.url, "key_prefix": self.key_prefix}


class TestRedisLearning(_OnRedis, LearningAcceptance):
    db_class = "kern.db.redis:RedisDb"


class TestAsyncRedisLearning(_OnRedis, LearningAcceptance):
    db_class = "kern.db.redis:AsyncRedisDb"
