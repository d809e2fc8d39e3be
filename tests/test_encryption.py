"""Encryption at rest on the five backends: what a raw look at the database finds, and what
reading it back with the right, a wrong, or no key gives (kern.crypto, docs/lifecycle.md).

Each backend gets agent turns with session state, a memory and a learning written through
an encrypted Db; then its tables or keys are read raw (SQL ``SELECT *``, pymongo ``find``,
Redis ``SCAN`` + reads by type) and none of the plaintext may be there.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from kern.agent import Agent
from kern.crypto import Keyring, encrypt, generate_key
from kern.db import connect
from kern.db.base import AsyncBaseDb, BaseDb
from kern.errors import ConfigurationError, EncryptionKeyError
from kern.records import Learning, Memory, Run, Session
from kern.testing.learning import extract, memories, system_text
from kern.testing.raw_storage import raw_dump
from kern.testing.scripted_server import Reply, ToolCallReply

BACKENDS = ["sqlite", "duckdb", "postgres", "mongo", "redis"]


class Secrets:
    """Unique plaintext for one test: each must never be found in the raw database."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.input = f"plainquestion{tag} about my tax number"
        self.state = f"plainstate{tag}"
        self.answer = f"plainanswer{tag}"
        self.memory = f"plainmemory{tag} likes green tea"
        self.topic = f"plaintopic{tag}"
        self.learning = f"plainlearning{tag}"
        self.summary = f"plainsummary{tag}"

    def all(self) -> list[str]:
        return [
            self.input,
            self.state,
            self.answer,
            self.memory,
            self.topic,
            self.learning,
            self.summary,
        ]


def _open(url: str) -> BaseDb:
    db = connect(url, is_async=False)
    assert isinstance(db, BaseDb)
    return db


def _write(scripted: Any, model: Any, db: BaseDb, secrets: Secrets) -> None:
    """Two agent turns (the first writes session state through a tool), a memory, a learning."""

    def remember(value: str, session_state: dict) -> str:
        """Remember a value."""
        session_state["secret"] = value
        return "remembered"

    scripted.script(
        Reply.tool_calls(ToolCallReply(name="remember", arguments={"value": secrets.state})),
        Reply.text(secrets.answer),
        Reply.text("second answer"),
    )
    agent = Agent(model=model, db=db, tools=[remember], add_history_to_context=True)
    agent.run(secrets.input, session_id="s1", user_id="u1")
    agent.run("and again?", session_id="s1", user_id="u1")  # reads the sealed history
    session = db.get_session("s1")
    assert session is not None
    db.upsert_session(
        session.model_copy(update={"summary": secrets.summary}), expected_version=session.version
    )
    db.upsert_memory(
        Memory(memory_id="m1", user_id="u1", content=secrets.memory, topics=[secrets.topic])
    )
    db.upsert_learning(
        Learning(learning_id="l1", kind="insight", user_id="u1", content={"text": secrets.learning})
    )


def _folded(text: str) -> str:
    return text.lower()


def assert_no_plaintext(dump: str, secrets: Secrets) -> None:
    haystack = _folded(dump)
    for secret in secrets.all():
        for word in secret.split()[:1]:  # the unique word: as stored, indexed or tokenised
            assert _folded(word) not in haystack, f"{word!r} is stored in clear"


# -- the tests -------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_raw_scan_finds_no_plaintext_and_the_key_reads_it_back(
    backend: str, backend_url: Callable[[str], str], scripted: Any, model: Any
) -> None:
    url = backend_url(backend)
    key = generate_key("k1")
    secrets = Secrets()
    db = encrypt(_open(url), key=key, memories=True)
    try:
        _write(scripted, model, db, secrets)
    finally:
        db.close()

    dump = raw_dump(backend, url)
    assert "kern:enc:v1:k1:" in dump  # the rows are there, sealed
    assert_no_plaintext(dump, secrets)

    reader = encrypt(_open(url), key=key, memories=True)
    try:
        session = reader.get_session("s1")
        assert session is not None
        assert session.state["secret"] == secrets.state
        assert session.summary == secrets.summary
        runs = reader.get_last_runs("s1", 10)
        assert [run.input for run in runs] == [secrets.input, "and again?"]
        assert runs[0].output == secrets.answer
        assert [m.role for m in runs[0].messages][:1] == ["user"]
        assert any(m.content == secrets.answer for m in runs[0].messages)
        memory = reader.get_memory("m1")
        assert memory is not None and memory.content == secrets.memory
        assert memory.topics == [secrets.topic]
        learning = reader.get_learning("l1")
        assert learning is not None and learning.content == {"text": secrets.learning}
        # Searches run over the decrypted newest rows, not the backend's text index.
        found = reader.search_memories("u1", "green tea", limit=3)
        assert [hit.memory.memory_id for hit in found] == ["m1"]
        learned = reader.search_learnings(secrets.learning, user_id="u1")
        assert [hit.learning.learning_id for hit in learned] == ["l1"]
        ranked, newest = reader.recall_memories("u1", "tea", limit=3, recent=2)
        assert [hit.memory.content for hit in ranked] == [secrets.memory]
        assert [m.memory_id for m in newest] == ["m1"]
    finally:
        reader.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_wrong_or_missing_key_is_an_error_naming_the_key(
    backend: str,
    backend_url: Callable[[str], str],
    scripted: Any,
    model: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = backend_url(backend)
    monkeypatch.delenv("KERN_ENCRYPTION_KEY", raising=False)
    db = encrypt(_open(url), key=generate_key("k1"), memories=True)
    try:
        _write(scripted, model, db, Secrets())
    finally:
        db.close()

    for setting in (generate_key("k1"), generate_key("k2"), None):
        reader = _open(url)
        if setting is not None:
            encrypt(reader, key=setting)
        try:
            reads: list[tuple[str, tuple[Any, ...]]] = [
                ("get_session", ("s1",)),
                ("get_last_runs", ("s1", 5)),
                ("get_memory", ("m1",)),
                ("get_learning", ("l1",)),
            ]
            for method, args in reads:
                with pytest.raises(EncryptionKeyError, match="'k1'") as caught:
                    getattr(reader, method)(*args)
                assert caught.value.key_id == "k1"
        finally:
            reader.close()


def test_the_environment_key_turns_encryption_on(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("KERN_ENCRYPTION_KEY", generate_key("envkey"))
    db = _open(url)
    db.append_run(Run(session_id="s1", input="plainenvinput"))
    db.upsert_session(Session(session_id="s1", state={"k": "plainenvstate"}), expected_version=None)
    assert db.get_last_runs("s1", 1)[0].input == "plainenvinput"
    db.close()
    dump = raw_dump("sqlite", url)
    assert "plainenvinput" not in dump and "plainenvstate" not in dump
    assert "kern:enc:v1:envkey:" in dump
    monkeypatch.delenv("KERN_ENCRYPTION_KEY")
    with pytest.raises(EncryptionKeyError, match="'envkey'"):
        _open(url).get_session("s1")


def test_plaintext_written_before_encryption_stays_readable(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    plain = _open(url)
    plain.append_run(Run(run_id="r1", session_id="s1", input="written in clear"))
    sealed = encrypt(_open(url), key=generate_key("k1"))
    sealed.append_run(Run(run_id="r2", session_id="s1", input="written sealed"))
    assert [run.input for run in sealed.get_last_runs("s1", 5)] == [
        "written in clear",
        "written sealed",
    ]


def test_the_callers_records_are_not_changed(tmp_path: Any) -> None:
    db = encrypt(_open(f"sqlite:///{tmp_path / 'a.db'}"), key=generate_key("k1"))
    session = Session(session_id="s1", state={"a": 1}, summary="short")
    stored = db.upsert_session(session, expected_version=None)
    assert session.state == {"a": 1} and session.summary == "short"
    assert stored.state == {"a": 1} and stored.version == 1


async def test_async_backends_encrypt_alike(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'async.db'}"
    key = generate_key("k1")
    db = connect(url, is_async=True)
    assert isinstance(db, AsyncBaseDb)
    encrypt(db, key=key, memories=True)
    await db.append_run(Run(session_id="s1", input="plainasyncinput"))
    await db.upsert_memory(Memory(memory_id="m1", user_id="u1", content="plainasyncmemory"))
    assert (await db.get_last_runs("s1", 1))[0].input == "plainasyncinput"
    hits = await db.search_memories("u1", "plainasyncmemory")
    assert [hit.memory.memory_id for hit in hits] == ["m1"]
    await db.close()
    dump = raw_dump("sqlite", url)
    assert "plainasyncinput" not in dump and "plainasyncmemory" not in dump


def test_bad_keys_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="kid:base64key") as caught:
        Keyring.parse("c2VjcmV0LWtleS1tYXRlcmlhbA")  # a key pasted without its id
    assert "c2Vj" not in str(caught.value)  # a key is never echoed
    with pytest.raises(ConfigurationError, match="16, 24 or 32 bytes"):
        Keyring.parse("k1:c2hvcnQ=")
    with pytest.raises(ConfigurationError, match="twice"):
        Keyring.parse(f"{generate_key('k1')},{generate_key('k1')}")
    ring = Keyring.parse(f"{generate_key('new')}, {generate_key('old')}")
    assert ring.primary.kid == "new" and ring.kids == ["new", "old"]
    assert "old" in repr(ring) and generate_key("x").split(":")[1] not in repr(ring)


def test_sealed_values_are_json_faithful(tmp_path: Any) -> None:
    db = encrypt(_open(f"sqlite:///{tmp_path / 'j.db'}"), key=generate_key("k1"))
    value = {"n": 1, "f": 1.5, "l": [None, True, "ü"], "nested": {"x": "y"}}
    db.append_run(Run(run_id="r1", session_id="s1", input=value, output=["a", 2]))
    run = db.get_run("r1")
    assert run is not None and run.input == value and run.output == ["a", 2]
    assert json.dumps(run.input, sort_keys=True) == json.dumps(value, sort_keys=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_learned_memories_are_sealed_and_recalled_in_the_next_turn(
    backend: str, backend_url: Callable[[str], str], scripted: Any, model: Any
) -> None:
    url = backend_url(backend)
    word = f"plainbee{uuid.uuid4().hex[:8]}"
    fact = f"Ada keeps bees named {word}."
    db = encrypt(_open(url), key=generate_key("k1"), memories=True)
    try:
        agent = Agent(model=model, db=db, learning=True, user_id="ada")
        scripted.script(
            Reply.text("Lovely."),
            extract(memories(fact), ToolCallReply("update_user_profile", {"name": "Ada"})),
        )
        agent.run(f"My bees are called {word}.", session_id="s1")
        assert [m.content for m in db.list_memories("ada")] == [fact]
        agent.run(f"What are my {word} bees called?", session_id="s2")
        # The next turn's model call carried the memory, decrypted, in its context.
        assert any(fact in system_text(body) for body in scripted.chat_requests()[2:])
    finally:
        db.close()
    dump = raw_dump(backend, url)
    assert word not in dump.lower()
    assert "kern:enc:v1:k1:" in dump


def test_without_the_cryptography_package_the_error_names_the_extra(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kern.crypto import cipher

    cipher._aead.cache_clear()
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    db = encrypt(_open(f"sqlite:///{tmp_path / 'n.db'}"), key=generate_key("k1"))
    with pytest.raises(ConfigurationError, match=r"pip install 'kern-memory\[encryption\]'"):
        db.append_run(Run(session_id="s1", input="never stored in clear"))
    assert db.get_last_runs("s1", 5) == []  # refused before anything was written
    cipher._aead.cache_clear()
