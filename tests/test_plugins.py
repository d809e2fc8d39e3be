"""The plugin manager, the registries its hooks fill, and backend selection by URL."""

from __future__ import annotations

import subprocess
import sys
import types

import pluggy
import pytest

import kern.db
from kern import plugins
from kern.db.registry import backend_class, configured_url, connect
from kern.db.sqlite import AsyncSqliteDb, SqliteDb
from kern.errors import BackendNotInstalledError, ConfigurationError
from kern.hookspecs import hookimpl
from kern.models import get_model
from kern.models.openai import OpenAIChat
from kern.plugins import Backend


def test_sqlite_and_openai_are_registered_through_the_hooks():
    reg = plugins.registry()
    assert reg.backends["sqlite"].name == "sqlite"
    assert "openai" in reg.models
    assert "sqlite" in plugins.plugin_names()  # the entry point, by its backend name


def test_connect_picks_the_class_by_scheme(tmp_path):
    db = connect(f"sqlite:///{tmp_path}/a.db")
    assert isinstance(db, SqliteDb)
    assert isinstance(connect(f"sqlite:///{tmp_path}/b.db", is_async=True), AsyncSqliteDb)
    assert isinstance(kern.db.connect("sqlite:///:memory:"), SqliteDb)


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        ("postgresql://u:p@localhost/app", "postgres"),
        ("postgresql+psycopg_async://u:p@localhost/app", "postgres"),
        ("mongodb://localhost:27017", "mongo"),
        ("redis://localhost:6379/0", "redis"),
        ("duckdb:///tmp/x.duckdb", "duckdb"),
    ],
)
def test_a_first_party_scheme_without_its_plugin_names_the_extra(url, extra, sqlite_only):
    with pytest.raises(BackendNotInstalledError, match=rf"pip install 'kern-memory\[{extra}\]'"):
        connect(url)


@pytest.fixture
def sqlite_only(monkeypatch):
    """Only the SQLite entry point installed, as on a machine with the plain install (not
    KERN_LOAD_PLUGINS, which reports the others as installed but not loaded)."""
    import importlib.metadata

    every = importlib.metadata.entry_points

    def sqlite_entry_point_only(**select):
        found = every(**select)
        if select.get("group") != plugins.ENTRY_POINT_GROUP:
            return found
        return [ep for ep in found if ep.name == "sqlite"]

    monkeypatch.setattr(importlib.metadata, "entry_points", sqlite_entry_point_only)
    plugins.reset()
    yield
    monkeypatch.undo()
    plugins.reset()


def test_an_unknown_scheme_lists_the_installed_ones():
    with pytest.raises(ConfigurationError, match=r"no installed kern backend.*'oracle'.*sqlite"):
        connect("oracle://scott:tiger@db/orcl")
    with pytest.raises(ConfigurationError, match="not a database URL"):
        connect("just-a-path.db")


def test_connect_reads_the_configuration(tmp_path, monkeypatch):
    monkeypatch.delenv("KERN_DB_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match="no database configured"):
        connect()
    (tmp_path / "pyproject.toml").write_text(f'[tool.kern]\ndb_url = "sqlite:///{tmp_path}/p.db"\n')
    assert configured_url() == f"sqlite:///{tmp_path}/p.db"
    (tmp_path / "kern.toml").write_text(f'db_url = "sqlite:///{tmp_path}/k.db"\n')
    assert configured_url() == f"sqlite:///{tmp_path}/k.db"
    monkeypatch.setenv("KERN_DB_URL", f"sqlite:///{tmp_path}/env.db")
    db = connect()
    assert isinstance(db, SqliteDb)
    db.create_tables()
    assert (tmp_path / "env.db").exists()


class FakeDb(SqliteDb):
    """A third-party backend for the test: SQLite underneath, its own scheme."""

    backend_name = "fake"

    def __init__(self, db_url: str) -> None:
        super().__init__(db_url="sqlite:///:memory:")
        self.url = db_url


def test_a_plugin_registered_by_a_test_serves_its_scheme_for_that_test_only():
    plugin = types.SimpleNamespace()

    @hookimpl
    def register_backends(register):
        register(Backend(name="fake", schemes=("fake",), sync=FakeDb))

    plugin.register_backends = register_backends
    with plugins.registered(plugin, name="fake-plugin"):
        db = connect("fake://anything")
        assert isinstance(db, FakeDb) and db.url == "fake://anything"
        assert backend_class("fake://x") is FakeDb
    with pytest.raises(ConfigurationError, match="'fake'"):
        connect("fake://anything")


def test_a_plugin_may_override_a_built_in_model_provider():
    class MyChat(OpenAIChat):
        pass

    plugin = types.SimpleNamespace(
        register_models=hookimpl(lambda register: register("openai", MyChat))
    )
    with plugins.registered(plugin, name="my-models"):
        assert type(get_model("openai:x")) is MyChat
    assert type(get_model("openai:x")) is OpenAIChat


def test_a_hook_name_that_matches_no_spec_is_rejected():
    plugin = types.SimpleNamespace(register_backend=hookimpl(lambda register: None))  # typo
    with pytest.raises(pluggy.PluginValidationError), plugins.registered(plugin, name="typo"):
        pass
    assert "typo" not in plugins.plugin_names()


def test_model_strings_need_a_known_provider():
    with pytest.raises(ConfigurationError, match="provider:model-id"):
        get_model("gpt-4.1-mini")
    with pytest.raises(ConfigurationError, match="no model provider 'nope'"):
        get_model("nope:model")


def _loaded_plugins(env: dict[str, str]) -> list[str]:
    code = "from kern.plugins import plugin_names; print(','.join(plugin_names()))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip().split(",")


def test_environment_allow_and_deny_lists(monkeypatch):
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("KERN_")}
    assert "sqlite" in _loaded_plugins(base)
    assert "sqlite" not in _loaded_plugins({**base, "KERN_DISABLE_PLUGINS": "sqlite"})
    assert "sqlite" not in _loaded_plugins({**base, "KERN_LOAD_PLUGINS": ""})
    assert "sqlite" in _loaded_plugins({**base, "KERN_LOAD_PLUGINS": "sqlite,other"})
    # Built-ins are not entry points: they always load.
    assert "kern.models.openai._plugin" in _loaded_plugins({**base, "KERN_LOAD_PLUGINS": ""})


def test_kern_plugins_lists_learning_stores_and_backends_own_implementations():
    done = subprocess.run(
        [sys.executable, "-m", "kern.cli", "plugins"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    listed = " ".join(done.stdout.split())  # rich wraps long lines
    assert "learning stores: decision_log, entity_memory, learned_knowledge, session_context, " in (
        listed
    )
    assert "user_memory (own: duckdb, postgres, redis, sqlite), user_profile" in listed
