"""kern's learning acceptance suite on DuckDB, sync and async, a fresh file per test."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("kern.testing.learning")

from kern.testing.learning import LearningAcceptance  # noqa: E402


class TestDuckDbLearning(LearningAcceptance):
    def db_factory(self, tmp_path):
        return "kern.db.duckdb:DuckDb", {"db_file": str(tmp_path / "kern.duckdb")}


class TestAsyncDuckDbLearning(LearningAcceptance):
    def db_factory(self, tmp_path):
        return "kern.db.duckdb:AsyncDuckDb", {"db_file": str(tmp_path / "kern.duckdb")}
