"""kern's learning acceptance suite on MongoDB (nx-27017 here), sync and async, a fresh
database per test."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

pytest.register_assert_rewrite("kern.testing.learning")

from kern.testing.learning import LearningAcceptance  # noqa: E402


class _OnMongo:
    db_class: ClassVar[str]

    @pytest.fixture(autouse=True)
    def _target(self, mongo_kwargs: dict[str, str]) -> None:
        self.kwargs = mongo_kwargs

    def db_factory(self, tmp_path: Path) -> tuple[str, dict[str, Any]]:
        return self.db_class, dict(self.kwargs)


class TestMongoLearning(_OnMongo, LearningAcceptance):
    db_class = "kern.db.mongo:MongoDb"


class TestAsyncMongoLearning(_OnMongo, LearningAcceptance):
    db_class = "kern.db.mongo:AsyncMongoDb"
