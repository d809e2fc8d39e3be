"""``kern rotate-key`` on the five backends: after it, every record is readable with the new
key alone, none with the old one alone, and nothing is in clear; a killed rotation resumes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kern.crypto import encrypt, generate_key
from kern.crypto.rotate import RotationCheckpoint, rotate_keys
from kern.db import connect
from kern.db.base import BaseDb
from kern.errors import EncryptionKeyError
from kern.records import Embedding, Learning, Memory, Message, Run, RunStatus, Session
from kern.testing.raw_storage import raw_dump

BACKENDS = ["sqlite", "duckdb", "postgres", "mongo", "redis"]
OLD, NEW = generate_key("old1"), generate_key("new2")


def _open(url: str, key: str | None = None, *, memories: bool = False) -> BaseDb:
    db = connect(url, is_async=False)
    assert isinstance(db, BaseDb)
    return encrypt(db, key=key, memories=memories) if key else db


def _seed(url: str) -> None:
    """Under the old key: 3 sessions with state and 4 runs each, memories, learnings; and
    one run written in clear before encryption was turned on."""
    plain = _open(url)
    plain.append_run(Run(run_id="clear", session_id="s0", input="plainbefore question"))
    plain.close()
    db = _open(url, OLD, memories=True)
    for s in range(3):
        db.upsert_session(
            Session(session_id=f"s{s}", user_id="u1", state={"plainstate": f"v{s}"}),
            expected_version=None,
        )
        for r in range(4):
            db.append_run(
                Run(
                    run_id=f"r{s}-{r}",
                    session_id=f"s{s}",
                    user_id="u1",
                    input=f"plainquestion {s}-{r}",
                    messages=[Message(role="user", content=f"plainmessage {s}-{r}")],
                    output=f"plainanswer {s}-{r}",
                )
            )
    vector = Embedding(model="test-embedder", vector=[0.1, 0.2, 0.3])
    for m in range(3):
        db.upsert_memory(
            Memory(memory_id=f"m{m}", user_id="u1", content=f"plainmemory {m} likes tea"),
            embedding=vector,
        )
        db.upsert_learning(
            Learning(learning_id=f"l{m}", kind="insight", content={"text": f"plainlearning {m}"})
        )
    db.close()


def _read_all(db: BaseDb) -> dict[str, Any]:
    session = db.get_session("s1")
    runs = db.get_last_runs("s1", 10)
    memory = db.get_memory("m2")
    learning = db.get_learning("l0")
    clear = db.get_run("clear")
    assert session and memory and learning and clear
    return {
        "state": session.state,
        "inputs": [run.input for run in runs],
        "messages": [m.content for run in runs for m in run.messages],
        "outputs": [run.output for run in runs],
        "memory": memory.content,
        "learning": learning.content,
        "clear": clear.input,
    }


EXPECTED = {
    "state": {"plainstate": "v1"},
    "inputs": [f"plainquestion 1-{r}" for r in range(4)],
    "messages": [f"plainmessage 1-{r}" for r in range(4)],
    "outputs": [f"plainanswer 1-{r}" for r in range(4)],
    "memory": "plainmemory 2 likes tea",
    "learning": {"text": "plainlearning 0"},
    "clear": "plainbefore question",
}


@pytest.mark.parametrize("backend", BACKENDS)
def test_rotation_leaves_everything_readable_with_the_new_key_only(
    backend: str, backend_url: Callable[[str], str], kern_cli: Any, tmp_path: Path
) -> None:
    url = backend_url(backend)
    _seed(url)
    keys = f"{NEW},{OLD}"
    done = kern_cli(
        "rotate-key",
        "--db",
        url,
        "--batch",
        "2",
        "--json",
        "--checkpoint",
        str(tmp_path / "rotate.json"),
        env={"KERN_ENCRYPTION_KEY": keys},
    )
    assert done.code == 0, done.stderr
    report = done.json
    assert report["key_id"] == "new2" and report["verified"] is True
    assert report["read"] == {"sessions": 3, "runs": 13, "memories": 3, "learnings": 3}
    assert report["rewritten"] == report["read"]  # the clear run is encrypted too
    assert not (tmp_path / "rotate.json").exists()  # a complete rotation leaves no checkpoint

    dump = raw_dump(backend, url, files=False)
    assert "kern:enc:v1:new2:" in dump and "kern:enc:v1:old1:" not in dump
    assert "plain" not in dump.lower()

    new_only = _open(url, NEW)
    assert _read_all(new_only) == EXPECTED  # the old key removed: still readable
    hits = new_only.search_memories_by_vector(
        "u1", Embedding(model="test-embedder", vector=[0.1, 0.2, 0.3])
    )
    assert len(hits) == 3  # vectors kept with their rows
    new_only.append_run(Run(session_id="s1", input="after"))
    assert [run.seq for run in new_only.get_last_runs("s1", 10)] == [1, 2, 3, 4, 5]
    new_only.close()

    old_only = _open(url, OLD)
    with pytest.raises(EncryptionKeyError, match="'new2'") as caught:
        old_only.get_session("s1")
    assert caught.value.key_id == "new2"
    old_only.close()

    again = kern_cli("rotate-key", "--db", url, "--json", env={"KERN_ENCRYPTION_KEY": NEW})
    assert again.code == 0, again.stderr
    assert again.json["rewritten"] == dict.fromkeys(report["read"], 0)  # nothing left to do


def test_a_killed_rotation_resumes_from_its_checkpoint(
    backend_url: Callable[[str], str], kern_cli: Any, tmp_path: Path
) -> None:
    url = backend_url("sqlite")
    _seed(url)
    path = tmp_path / "rotate.json"
    db = _open(url, f"{NEW},{OLD}")

    class Killed(Exception):
        pass

    seen: list[str] = []

    def kill_after_three_pages(kind: str, count: int) -> None:
        seen.append(kind)
        if len(seen) == 3:
            raise Killed

    checkpoint = RotationCheckpoint.load(path, db.storage_target(), "new2")
    with pytest.raises(Killed):
        rotate_keys(db, checkpoint=checkpoint, limit=2, on_page=kill_after_three_pages)
    db.close()
    saved = json.loads(path.read_text())
    assert saved["done"] == ["sessions"] and "runs" in saved["cursors"]

    # Half rotated: readable with both keys (as during any rotation), not with the new alone.
    with pytest.raises(EncryptionKeyError, match="'old1'"):
        _read_all(_open(url, NEW))

    resumed = kern_cli(
        "rotate-key",
        "--db",
        url,
        "--json",
        "--checkpoint",
        str(path),
        env={"KERN_ENCRYPTION_KEY": f"{NEW},{OLD}"},
    )
    assert resumed.code == 0, resumed.stderr
    assert resumed.json["resumed"] is True and resumed.json["verified"] is True
    assert resumed.json["read"]["sessions"] == 0  # done before the kill: not read again
    assert _read_all(_open(url, NEW)) == EXPECTED


def test_rotate_key_without_keys_names_the_variable(
    backend_url: Callable[[str], str], kern_cli: Any
) -> None:
    done = kern_cli("rotate-key", "--db", backend_url("sqlite"), env={"KERN_ENCRYPTION_KEY": ""})
    assert done.code == 2
    assert "KERN_ENCRYPTION_KEY" in done.stderr


def test_a_checkpoint_of_another_rotation_is_refused(
    backend_url: Callable[[str], str], kern_cli: Any, tmp_path: Path
) -> None:
    path = tmp_path / "rotate.json"
    path.write_text(json.dumps({"target": "elsewhere", "kid": "x"}))
    done = kern_cli(
        "rotate-key",
        "--db",
        backend_url("sqlite"),
        "--checkpoint",
        str(path),
        env={"KERN_ENCRYPTION_KEY": NEW},
    )
    assert done.code == 2
    assert "--restart" in done.stderr


def test_a_session_written_during_the_rotation_is_not_rolled_back(
    backend_url: Callable[[str], str],
) -> None:
    url = backend_url("sqlite")
    _seed(url)
    db = _open(url, f"{NEW},{OLD}")
    writer = _open(url, f"{NEW},{OLD}")  # an application turn, already on the new key
    original = db.upsert_session

    def turn_meanwhile(session: Session, *, expected_version: int | None) -> Session:
        if session.session_id == "s1":
            stored = writer.get_session("s1")
            assert stored is not None
            writer.upsert_session(
                stored.model_copy(update={"state": {"plainstate": "newer"}}),
                expected_version=stored.version,
            )
        return original(session, expected_version=expected_version)

    db.upsert_session = turn_meanwhile  # type: ignore[method-assign]
    report = rotate_keys(db)
    assert report.skipped["sessions"] == 1 and report.rewritten["sessions"] == 2
    assert report.verified is True  # the turn sealed it with the new key itself
    session = _open(url, NEW).get_session("s1")
    assert session is not None and session.state == {"plainstate": "newer"}


def test_a_run_still_being_written_is_left_for_the_next_rotation(
    backend_url: Callable[[str], str],
) -> None:
    url = backend_url("sqlite")
    _seed(url)
    old = _open(url, OLD)
    old.append_run(Run(run_id="busy", session_id="s2", status=RunStatus.RUNNING, input="plainbusy"))
    both = _open(url, f"{NEW},{OLD}")
    first = rotate_keys(both)
    assert first.skipped["runs"] == 1 and first.stale is not None and first.stale["runs"] == 1
    assert first.verified is False  # keep the old key: one run still needs it
    both.update_run("busy", status=RunStatus.COMPLETED, output="plaindone")
    second = rotate_keys(both)
    assert second.rewritten["runs"] == 1 and second.verified is True
    busy = _open(url, NEW).get_run("busy")
    assert busy is not None and (busy.input, busy.output) == ("plainbusy", "plaindone")
