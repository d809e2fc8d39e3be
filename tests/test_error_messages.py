"""The first line a person sees when something is wrong: short, true, and naming the fix.

Each test runs what a user would run (the ``kern`` command, or a short script) in a new
process with kern's variables cleared, and checks the first line of its error output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(code_or_args: str | list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "KERN_"))}
    argv = (
        [sys.executable, "-m", "kern.cli", *code_or_args]
        if isinstance(code_or_args, list)
        else [sys.executable, "-c", code_or_args]
    )
    return subprocess.run(
        argv, cwd=tmp_path, env=clean | env, capture_output=True, text=True, timeout=120
    )


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_kern_demo_with_the_model_down_prints_one_line_and_no_traceback(tmp_path):
    done = run(["demo", "--base-url", "http://127.0.0.1:9"], tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    assert "CalledProcessError" not in done.stderr + done.stdout
    first = done.stderr.strip().splitlines()[0]
    assert first.startswith(
        "kern demo: could not connect to the model server at http://127.0.0.1:9"
    )
    assert "check that the server is running" in first
    assert len(done.stderr.strip().splitlines()) <= 2


def test_kern_demo_with_debug_shows_the_traceback(tmp_path):
    done = run(["--debug", "demo", "--base-url", "http://127.0.0.1:9"], tmp_path)
    assert done.returncode != 0
    assert "Traceback" in done.stderr
    assert "ModelProviderError: could not connect to the model server" in done.stderr


def test_bare_kern_prints_the_help(tmp_path):
    done = run([], tmp_path)
    assert done.returncode == 0
    assert done.stdout.startswith("usage: kern")
    assert "demo" in done.stdout and "--debug" in done.stdout


@pytest.mark.parametrize(
    ("option", "shown"),
    [
        ("--db", "(default: tmp/kern-demo.db)"),
        ("--model", "(default: gpt-4.1-mini"),
        ("--base-url", "(default: OPENAI_BASE_URL"),
        ("--session-id", "(default: a new"),
    ],
)
def test_every_demo_option_has_help_and_its_default(option, shown, tmp_path):
    done = run(["demo", "--help"], tmp_path)
    help_text = " ".join(done.stdout.split())
    assert option in help_text and shown in help_text


def test_a_disabled_plugin_is_reported_as_disabled_naming_the_variable(tmp_path):
    done = run(
        "import kern.db; kern.db.connect('postgresql://app@db.example/app')",
        tmp_path,
        KERN_DISABLE_PLUGINS="postgres",
    )
    assert last_line(done.stderr) == (
        "kern.errors.ConfigurationError: URL scheme 'postgresql' needs the kern-postgres "
        "plugin, which is installed but disabled by KERN_DISABLE_PLUGINS=postgres: remove "
        "'postgres' from KERN_DISABLE_PLUGINS."
    )
    assert "not installed" not in done.stderr


def test_an_unknown_name_in_kern_load_plugins_is_a_warning_naming_the_installed(tmp_path):
    done = run(
        "import kern.db; kern.db.connect('sqlite:///x.db')", tmp_path, KERN_LOAD_PLUGINS="nosuch"
    )
    warning = next(line for line in done.stderr.splitlines() if "PluginSettingsWarning" in line)
    assert "KERN_LOAD_PLUGINS names 'nosuch', which is not an installed kern plugin" in warning
    assert "installed: " in warning and "sqlite" in warning and "postgres" in warning
    assert "installed but not loaded: KERN_LOAD_PLUGINS=nosuch does not name it" in last_line(
        done.stderr
    )


def test_a_loaded_plugin_gives_no_warning(tmp_path):
    done = run(
        "import kern.db; kern.db.connect('sqlite:///x.db')", tmp_path, KERN_LOAD_PLUGINS="sqlite"
    )
    assert done.returncode == 0, done.stderr
    assert "PluginSettingsWarning" not in done.stderr


def test_a_refused_postgres_login_names_user_and_host_never_the_password(postgres_server):
    from kern.db.postgres import PostgresDb
    from kern.errors import StorageLoginError

    url = postgres_server.url.set(username="kern_nosuch_role", password="s3cret-pw")
    db = PostgresDb(db_url=url.render_as_string(hide_password=False))
    with pytest.raises(StorageLoginError) as caught:
        db.list_sessions(user_id="ada")
    first = str(caught.value).splitlines()[0]
    host = f"{url.host}:{url.port or 5432}"
    assert first.startswith(
        f"the postgres server at {host} refused the login of user 'kern_nosuch_role': "
        "fix the user name or password in the URL"
    )
    assert "s3cret-pw" not in str(caught.value)
    assert caught.value.__cause__ is not None  # the driver's error stays chained


def test_a_refused_redis_login_names_user_and_host_never_the_password(redis_server):
    from urllib.parse import urlsplit

    from kern.db.redis import RedisDb
    from kern.errors import StorageLoginError

    parts = urlsplit(redis_server.url)
    url = f"redis://kern_nosuch_user:s3cret-pw@{parts.hostname}:{parts.port}/0"
    with pytest.raises(StorageLoginError) as caught:
        RedisDb(db_url=url).list_sessions(user_id="ada")
    assert str(caught.value).startswith(
        f"the redis server at {parts.hostname}:{parts.port} refused the login of user "
        "'kern_nosuch_user': fix the user name or password in the URL"
    )
    assert "s3cret-pw" not in str(caught.value)
    assert caught.value.__cause__ is not None
