"""kern's vectors and transfer conformance topics and learning suite on PostgreSQL 18 + pgvector.

The same suites as ``test_conformance.py`` / ``test_postgres_learning.py``, on the embedded
server of ``pgvector_server`` (conftest.py), where kern takes the pgvector path: every vector
scenario, sync and async, then runs through the HNSW indexes and their SQL. Of the
conformance suite only the vectors and transfer topics run here (imports write vectors, whose
HNSW indexes they must make first; the rest does not touch vectors and runs on the main
server); each test gets a fresh schema of the session's pgvector database.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from kern.testing.conformance import AsyncBackendConformance, BackendConformance, Capabilities
from kern.testing.conformance.transfer import TransferScenarios
from kern.testing.conformance.vectors import VectorScenarios

pytest.register_assert_rewrite("kern.testing.learning")

from kern.testing.learning import LearningAcceptance  # noqa: E402


class _OnPgvector:
    """Points the recipe at the pgvector database, in a schema of the test's own."""

    db_class: ClassVar[str]
    capabilities = Capabilities()

    @pytest.fixture(autouse=True)
    def _on_pgvector(
        self, pgvector_database: Any, fresh_schema: str, raw_rows: Callable[..., list[str]]
    ) -> None:
        self.database = pgvector_database
        self.schema = fresh_schema
        self.raw_rows = raw_rows

    def db_factory(self, tmp_path: Path) -> tuple[str, dict[str, Any]]:
        url = self.database.async_url if "Async" in self.db_class else self.database.url
        return self.db_class, {"db_url": url, "schema": self.schema}

    def raw_scan(self, db: Any) -> list[str]:
        """Every row of the db's tables as text (the pgvector column included)."""
        return self.raw_rows(self.database, db.schema, db.table_prefix)


def only(*topics: type[Any]) -> Callable[[type[Any]], type[Any]]:
    """A decorator leaving ``suite`` only the scenarios of ``topics``: the others are hidden
    (an attribute that is not a function is not collected)."""
    kept = {name for topic in topics for name in vars(topic)}

    def hide(suite: type[Any]) -> type[Any]:
        for name in dir(suite):
            if name.startswith("test_") and name not in kept:
                setattr(suite, name, None)
        return suite

    return hide


#: The vectors topic, and the transfer topic (imported vectors searched through pgvector).
vectors_and_transfer = only(VectorScenarios, TransferScenarios)


@vectors_and_transfer
class TestPgvectorConformance(_OnPgvector, BackendConformance):
    db_class = "kern.db.postgres:PostgresDb"


@vectors_and_transfer
class TestAsyncPgvectorConformance(_OnPgvector, AsyncBackendConformance):
    db_class = "kern.db.postgres:AsyncPostgresDb"


class TestPgvectorLearning(_OnPgvector, LearningAcceptance):
    db_class = "kern.db.postgres:PostgresDb"


class TestAsyncPgvectorLearning(_OnPgvector, LearningAcceptance):
    db_class = "kern.db.postgres:AsyncPostgresDb"
