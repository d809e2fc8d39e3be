"""Encryption at rest: what an encrypted Db gives the backend, and what it gives back.

The layer is kern's (``kern.crypto``, at the contract's door), so a backend passes these
scenarios by storing what it is given and returning it unchanged: no write path may bypass
the contract (a sealed field reaching storage in clear), no read path may drop or rewrite a
sealed field, and the searches over encrypted text find by words still. ``raw_scan``
(the subclass contract) shows that none of the plaintext reached storage.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from kern.errors import EncryptionKeyError
from kern.records import Learning, Memory, Message, Run, RunStatus, Session
from kern.testing.capabilities import requires
from kern.testing.conformance.base import ScenarioBase, Store
from kern.testing.conformance.common import _uid
from kern.testing.isolation import _holding, _raw_scan

__all__ = ["EncryptionScenarios"]


def _keys() -> tuple[str, str]:
    pytest.importorskip("cryptography", reason="encryption at rest needs kern-core[encryption]")
    from kern.crypto import generate_key

    return generate_key("conf1"), generate_key("conf1")  # one id, two different keys


def _encrypt(db: Any, key: str | None) -> None:
    from kern.crypto import encrypt
    from kern.crypto.layer import ATTRIBUTE

    if key is None:
        for target in (db, getattr(db, "sync_db", None)):
            if target is not None:
                target.__dict__.pop(ATTRIBUTE, None)
        return
    encrypt(db, key=key, memories=True)


class EncryptionScenarios(ScenarioBase):
    """Sealed in, opened out, through every contract path that carries user text."""

    async def _write(self, store: Store, marker: str) -> dict[str, str]:
        user, sid, other = _uid("u"), _uid("s"), _uid("s")
        await store.upsert_session(
            Session(
                session_id=sid,
                user_id=user,
                state={"note": f"{marker} state"},
                summary=f"talked about {marker}",
            ),
            expected_version=None,
        )
        await store.append_run(
            Run(
                session_id=sid,
                user_id=user,
                input=f"{marker} question",
                messages=[Message(role="user", content=f"{marker} question")],
                output={"answer": f"{marker} answer"},
            )
        )
        stored = await store.get_session(sid)
        assert stored is not None
        await store.commit_turn(
            Run(session_id=sid, user_id=user, input=f"{marker} turn"),
            stored.model_copy(update={"state": {"note": f"{marker} state 2"}}),
            expected_version=stored.version,
        )
        running = await store.append_run(
            Run(session_id=other, user_id=user, status=RunStatus.RUNNING, input="start")
        )
        await store.update_run(
            running.run_id,
            status=RunStatus.COMPLETED,
            output=f"{marker} finished",
            messages=[Message(role="assistant", content=f"{marker} finished")],
        )
        memory = await store.upsert_memory(
            Memory(user_id=user, content=f"{marker} likes pistachio", topics=[marker])
        )
        learning = await store.upsert_learning(
            Learning(kind=_uid("k"), user_id=user, content={"fact": f"{marker} fact"})
        )
        return {
            "user": user,
            "session": sid,
            "running": running.run_id,
            "memory": memory.memory_id,
            "learning": learning.learning_id,
            "kind": learning.kind,
        }

    @requires("raw_storage_scan")
    async def test_encrypted_text_never_reaches_storage_and_reads_back(
        self, db: Any, store: Store
    ) -> None:
        """With ``kern.crypto.encrypt(db, memories=True)``, no raw row, document or key holds
        the text of a session's state or summary, a run's input, messages or output (appended,
        committed or updated), a memory or a learning; every read returns it as written."""
        key, _ = _keys()
        _encrypt(db, key)
        marker = f"qx{uuid.uuid4().hex[:12]}9"
        ids = await self._write(store, marker)

        scan = await _raw_scan(self, db)
        assert _holding(scan, ["kern:enc:v1:conf1:"]), "nothing sealed was stored"
        leaked = _holding(scan, [marker])
        assert not leaked, f"stored in clear: {leaked[:3]}"

        session, runs = await store.read_turn(ids["session"], 10)
        assert session is not None and session.state == {"note": f"{marker} state 2"}
        assert session.summary == f"talked about {marker}"
        assert [run.input for run in runs] == [f"{marker} question", f"{marker} turn"]
        assert runs[0].messages == [Message(role="user", content=f"{marker} question")]
        assert runs[0].output == {"answer": f"{marker} answer"}
        finished = await store.get_run(ids["running"])
        assert finished is not None and finished.output == f"{marker} finished"
        assert [m.content for m in finished.messages] == [f"{marker} finished"]
        memory = await store.get_memory(ids["memory"])
        assert memory is not None and memory.content == f"{marker} likes pistachio"
        assert memory.topics == [marker]
        learning = await store.get_learning(ids["learning"])
        assert learning is not None and learning.content == {"fact": f"{marker} fact"}

        listed = await store.list_sessions(user_id=ids["user"])
        assert {s.summary for s in listed} >= {f"talked about {marker}"}
        found = await store.search_sessions(ids["user"], marker)
        assert [s.session_id for s in found] == [ids["session"]]
        hits = await store.search_memories(ids["user"], f"{marker} pistachio")
        assert [hit.memory.memory_id for hit in hits] == [ids["memory"]]
        ranked, newest = await store.recall_memories(ids["user"], marker, recent=1)
        assert [hit.memory.content for hit in ranked] == [memory.content]
        assert [m.memory_id for m in newest] == [ids["memory"]]
        learned = await store.search_learnings(marker, kind=ids["kind"])
        assert [hit.learning.learning_id for hit in learned] == [ids["learning"]]

    async def test_a_wrong_or_missing_key_is_an_error_naming_it(
        self, db: Any, store: Store
    ) -> None:
        """Data sealed with one key read with another key under the same id, or with no key,
        raises ``EncryptionKeyError`` naming the key id: never ciphertext, never garbage."""
        key, impostor = _keys()
        _encrypt(db, key)
        ids = await self._write(store, f"qx{uuid.uuid4().hex[:12]}8")
        for setting in (impostor, None):
            _encrypt(db, setting)
            with pytest.raises(EncryptionKeyError, match="'conf1'"):
                await store.get_session(ids["session"])
            with pytest.raises(EncryptionKeyError, match="'conf1'"):
                await store.read_turn(ids["session"], 5)
            with pytest.raises(EncryptionKeyError, match="'conf1'"):
                await store.get_memory(ids["memory"])
            with pytest.raises(EncryptionKeyError, match="'conf1'"):
                await store.get_learning(ids["learning"])
        _encrypt(db, key)
        session = await store.get_session(ids["session"])
        assert session is not None and "state 2" in str(session.state["note"])
