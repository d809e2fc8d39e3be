"""kern's learning acceptance suite on SQLite, sync and async."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("kern.testing.learning")

from kern.testing.learning import LearningAcceptance  # noqa: E402


class TestSqliteLearning(LearningAcceptance):
    def db_factory(self, tmp_path):
        return "kern.db.sqlite:SqliteDb", {"db_file": str(tmp_path / "kern.db")}


class TestAsyncSqliteLearning(LearningAcceptance):
    def db_factory(self, tmp_path):
        return "kern.db.sqlite:AsyncSqliteDb", {"db_file": str(tmp_path / "kern.db")}
