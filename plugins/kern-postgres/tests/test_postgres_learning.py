"""kern's learning acceptance suite on Postgres, sync and async, a fresh schema per test."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

pytest.register_assert_rewrite("kern.testing.learning")

from kern.testing.learning import LearningAcceptance  # noqa: E402


class _OnTheTestServer:
    db_class: ClassVar[str]

    @pytest.fixture(autouse=True)
    def _on_the_test_server(self, pg_database: Any, fresh_schema: str) -> None:
        self.database = pg_database
        self.schema = fresh_schema

    def db_factory(self, tmp_path: Path) -> tuple[str, dict[str, Any]]:
        url = self.database.async_url if "Async" in self.db_class else self.database.url
        return self.db_class, {"db_url": str(url), "schema": self.schema}


class TestPostgresLearning(_OnTheTestServer, LearningAcceptance):
    db_class = "kern.db.postgres:PostgresDb"


class TestAsyncPostgresLearning(_OnTheTestServer, LearningAcceptance):
    db_class = "kern.db.postgres:AsyncPostgresDb"
