"""What kern-sql's own tests share: a Postgres database of this test session's own.

kern-sql's tests run the shared SQL code on SQLite, DuckDB and Postgres; the Postgres side
needs a server (``KERN_TEST_POSTGRES_URL``, else one on 127.0.0.1:5432 trusting user
``postgres``). Without one the tests skip, or fail under ``CI=true``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

ENV_URL = "KERN_TEST_POSTGRES_URL"
LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A database of this test session's own, dropped at the end."""
    psycopg = pytest.importorskip("psycopg")
    base = os.environ.get(ENV_URL) or LOCAL_URL
    try:
        admin = psycopg.connect(base, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        message = f"Postgres tests cannot run: {exc}. Set {ENV_URL} or run a local server."
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    name = f"kern_sqltest_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    head, _, _ = base.rpartition("/")
    try:
        yield f"{head}/{name}"
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
