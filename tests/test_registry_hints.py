"""A backend class given another backend's URL names the class and extra to use instead, and
that knowledge lives in ``kern.db.registry`` alone (docs/architecture.md, "Plugins")."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from kern import plugins
from kern.db.registry import FIRST_PARTY, wrong_backend_hint
from kern.errors import ConfigurationError
from kern.hookspecs import hookimpl
from kern.plugins import Backend

REPO = Path(__file__).resolve().parents[1]

#: Every first-party class, by backend name.
CLASSES = {
    "sqlite": ("kern.db.sqlite", ("SqliteDb", "AsyncSqliteDb")),
    "postgres": ("kern.db.postgres", ("PostgresDb", "AsyncPostgresDb")),
    "duckdb": ("kern.db.duckdb", ("DuckDb", "AsyncDuckDb")),
    "mongo": ("kern.db.mongo", ("MongoDb", "AsyncMongoDb")),
    "redis": ("kern.db.redis", ("RedisDb", "AsyncRedisDb")),
}
#: A URL of each backend (with a password where it takes one) and the class it selects.
URLS = {
    "sqlite": [("sqlite:///agent.db", "SqliteDb"), ("sqlite+aiosqlite:///a.db", "AsyncSqliteDb")],
    "postgres": [
        ("postgresql://kern:s3cret@localhost:5432/app", "PostgresDb"),
        ("postgres://kern:s3cret@localhost/app", "PostgresDb"),
        ("postgresql+psycopg_async://kern:s3cret@localhost/app", "AsyncPostgresDb"),
    ],
    "duckdb": [("duckdb:///agent.duckdb", "DuckDb")],
    "mongo": [
        ("mongodb://kern:s3cret@localhost:27017/app", "MongoDb"),
        ("mongodb+srv://kern:s3cret@cluster.example.com/app", "MongoDb"),
    ],
    "redis": [
        ("redis://:s3cret@localhost:6379/0", "RedisDb"),
        ("rediss://kern:s3cret@redis.example.com:6380/0", "RedisDb"),
    ],
}
CASES = [
    pytest.param(owner, cls, url, expected, other, id=f"{cls}-{url.split(':', 1)[0]}")
    for owner, (_, names) in CLASSES.items()
    for cls in names
    for other, urls in URLS.items()
    if other != owner
    for url, expected in urls
]


def backend_class(owner: str, name: str) -> type:
    return getattr(importlib.import_module(CLASSES[owner][0]), name)


def refusal(owner: str, cls: str, url: str) -> str:
    with pytest.raises(ConfigurationError) as error:
        backend_class(owner, cls)(db_url=url)
    return str(error.value)


@pytest.mark.parametrize(("owner", "cls", "url", "expected", "other"), CASES)
def test_another_backends_url_names_its_class_and_extra(owner, cls, url, expected, other):
    message = refusal(owner, cls, url)
    assert f"use {expected} " in message
    assert f"from {CLASSES[other][0]} " in message
    assert f"pip install 'kern-memory[{other}]'" in message
    assert "kern.db.connect(url)" in message
    assert "s3cret" not in message


@pytest.fixture
def fake_backend():
    """A third-party backend no plugin can know of: only the registry learns of it."""

    class FakePlugin:
        @hookimpl
        def register_backends(self, register):
            register(
                Backend(
                    name="fakedb",
                    schemes=("fakedb",),
                    sync="acme_kern.fakedb:FakeDb",
                    async_="acme_kern.fakedb:AsyncFakeDb",
                )
            )

    with plugins.registered(FakePlugin(), name="fakedb"):
        yield


@pytest.mark.parametrize(
    ("owner", "cls"), [(owner, cls) for owner, (_, names) in CLASSES.items() for cls in names]
)
def test_every_class_asks_the_registry(owner, cls, fake_backend):
    message = refusal(owner, cls, "fakedb://somewhere/db")
    assert "use FakeDb (AsyncFakeDb in async code) from acme_kern.fakedb," in message
    assert "pip install" not in message  # kern does not know a third party's distribution


@pytest.fixture
def sqlite_only(monkeypatch):
    """Load only the SQLite entry point, as on a machine with the plain install."""
    monkeypatch.setenv("KERN_LOAD_PLUGINS", "sqlite")
    plugins.reset()
    yield
    monkeypatch.delenv("KERN_LOAD_PLUGINS")
    plugins.reset()


@pytest.mark.parametrize(
    ("url", "expected", "extra"),
    [
        ("postgresql+psycopg_async://u@localhost/app", "AsyncPostgresDb", "postgres"),
        ("mongodb://localhost:27017", "MongoDb", "mongo"),
        ("redis://localhost:6379/0", "RedisDb", "redis"),
        ("duckdb:///x.duckdb", "DuckDb", "duckdb"),
    ],
)
def test_a_backend_that_is_not_installed_is_still_named(url, expected, extra, sqlite_only):
    assert "postgres" not in plugins.registry().backends
    message = refusal("sqlite", "SqliteDb", url)
    assert f"use {expected} " in message
    assert f"pip install 'kern-memory[{extra}]'" in message


def test_the_exact_scheme_decides_first_then_its_base():
    assert "use AsyncPostgresDb (PostgresDb in sync code)" in wrong_backend_hint(
        "postgresql+psycopg_async", backend="redis"
    )
    # Not a registered scheme: its base, postgresql, selects the sync class.
    assert "use PostgresDb (AsyncPostgresDb in async code)" in wrong_backend_hint(
        "postgresql+asyncpg", backend="redis"
    )
    assert "use SqliteDb " in wrong_backend_hint("SQLite", backend="redis")


def test_no_backend_or_the_callers_own_gets_the_generic_hint():
    generic = "kern.db.connect(url) picks the backend that serves a URL's scheme"
    assert wrong_backend_hint("mysql", backend="sqlite") == generic
    assert wrong_backend_hint("mongodb+weird", backend="mongo") == generic
    assert "for MongoDB use MongoDb" in wrong_backend_hint("mongodb+weird", backend="redis")


def test_a_broken_plugin_does_not_hide_the_hint(monkeypatch):
    def broken():
        raise ImportError("a plugin that does not import")

    monkeypatch.setattr("kern.db.registry.registry", broken)
    assert "use DuckDb " in wrong_backend_hint("duckdb", backend="sqlite")


def _literal_groups(path: Path) -> list[tuple[int, list[str]]]:
    """The string constants of each dict (its keys), set, tuple and list literal."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Dict):
            items = node.keys
        elif isinstance(node, ast.Set | ast.Tuple | ast.List):
            items = node.elts
        else:
            continue
        strings = [i.value for i in items if isinstance(i, ast.Constant)]
        found.append((node.lineno, [s for s in strings if isinstance(s, str)]))
    return found


@pytest.mark.parametrize("plugin", sorted((REPO / "plugins").glob("kern-*")), ids=lambda p: p.name)
def test_no_plugin_keeps_a_table_of_other_backends(plugin):
    """A literal naming the schemes of two other backends is a copy of the registry's table."""
    own = {"sqlite", "postgres", "duckdb"} if plugin.name == "kern-sql" else {plugin.name[5:]}
    others = {
        scheme: known.name
        for known in FIRST_PARTY
        if known.name not in own
        for scheme in (*known.schemes, *known.async_schemes)
    }
    for path in sorted((plugin / "src").rglob("*.py")):
        for line, strings in _literal_groups(path):
            named = {others[s] for s in strings if s in others}
            assert len(named) < 2, f"{path.relative_to(REPO)}:{line} lists {sorted(named)}"
