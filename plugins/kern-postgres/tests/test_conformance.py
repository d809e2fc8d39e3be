"""kern's backend conformance suite against a real Postgres, run exactly as a third party would.

Each test gets a fresh schema in the session's database, so first-use races really race on
an empty schema. The read counter is Postgres's own: every SELECT the read issues (seen
through SQLAlchemy's ``before_cursor_execute`` event) is also run under
``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` on the same connection, and the rows each plan
node produced or filtered away are summed: the rows the server examined (the
``examined_rows`` fixture of conftest.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

pytest.register_assert_rewrite("kern.testing.conformance")

from kern.testing.conformance import AsyncBackendConformance, BackendConformance  # noqa: E402


class _OnTheTestServer:
    """Points the recipe at this test session's database, in a schema of the test's own."""

    db_class: ClassVar[str]

    @pytest.fixture(autouse=True)
    def _on_the_test_server(
        self, pg_database: Any, fresh_schema: str, examined_rows: Callable[..., Any]
    ) -> None:
        self.database = pg_database
        self.schema = fresh_schema
        self.examined_rows = examined_rows

    def db_factory(self, tmp_path: Path) -> tuple[str, dict[str, Any]]:
        url = self.database.async_url if "Async" in self.db_class else self.database.url
        return self.db_class, {"db_url": url, "schema": self.schema}


class TestPostgresConformance(_OnTheTestServer, BackendConformance):
    db_class = "kern.db.postgres:PostgresDb"

    def count_reads(self, db: Any, fn: Callable[[], Any]) -> int:
        with self.examined_rows(db.engine) as count:
            fn()
        return count[0]


class TestAsyncPostgresConformance(_OnTheTestServer, AsyncBackendConformance):
    # seed_concurrency stays 1: the seed appends to ONE session, whose appends the advisory
    # lock serialises anyway; contention is what other cases (and the 4 x 200 test) test.
    db_class = "kern.db.postgres:AsyncPostgresDb"

    async def count_reads(self, db: Any, fn: Callable[[], Awaitable[Any]]) -> int:
        with self.examined_rows(db.engine.sync_engine) as count:
            await fn()
        return count[0]
