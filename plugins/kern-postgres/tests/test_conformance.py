"""kern's backend conformance suite against a real Postgres, run exactly as a third party would.

Each test gets a fresh schema in the session's database, so first-use races really race on
an empty schema. The read counter is Postgres's own: every SELECT the read issues (seen
through SQLAlchemy's ``before_cursor_execute`` event) is also run under
``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` on the same connection, and the rows each plan
node produced or filtered away are summed: the rows the server examined (the
``examined_rows`` fixture of conftest.py).

The raw scan reads every row of every table of the test's schema whose name starts with the
db's table prefix, as Postgres's own text form of the row (``t::text``: the generated
``tsvector`` search columns included), on a plain psycopg connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from psycopg import sql

from kern.testing.conformance import AsyncBackendConformance, BackendConformance, Capabilities


class _OnTheTestServer:
    """Points the recipe at this test session's database, in a schema of the test's own."""

    db_class: ClassVar[str]
    #: Every capability, sync and async: the full contract (kern.testing.capabilities).
    capabilities = Capabilities()

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

    def raw_scan(self, db: Any) -> list[str]:
        """``<table>: <row as text>`` for every row of the db's tables, read with psycopg."""
        rows: list[str] = []
        with self.database.connect() as conn:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = %s AND table_type = 'BASE TABLE' ORDER BY table_name",
                (db.schema,),
            ).fetchall()
            for (name,) in tables:
                if not name.startswith(db.table_prefix):
                    continue
                query = sql.SQL("SELECT t::text FROM {}.{} AS t").format(
                    sql.Identifier(db.schema), sql.Identifier(name)
                )
                rows += [f"{name}: {text}" for (text,) in conn.execute(query)]
        return rows


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
