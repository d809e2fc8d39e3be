"""Which fields of a record are encrypted, and how each is stored so no schema changes.

- ``Run.input`` / ``Run.output``: a token string (``kern:enc:v1:<kid>:...``).
- ``Run.messages``: one placeholder message (role ``system``, name ``kern_encrypted``) whose
  content is the token of the whole list.
- ``Session.state``: ``{"__kern_enc__": token}``; ``Session.summary``: a token string.
- ``Run.metrics["session_state"]`` (the state a turn left, which a fork copies): sealed as
  ``Session.state`` is, so the copy opens as the fork's state.
- with ``memories=True``: ``Memory.content`` a token, ``Memory.topics`` ``[token]``,
  ``Learning.content`` ``{"__kern_enc__": token}``.

Ids, timestamps, status, ``seq``/``version``, session ``name`` and ``metadata``, run
``metrics`` (but the state above) and vectors stay in clear: backends index and filter on
them. Sealing skips a field already sealed and opening passes plaintext through, so both
are idempotent (a Db wrapping another Db seals once) and data written before encryption was
turned on stays readable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from kern.crypto.cipher import is_token, seal, unseal
from kern.crypto.keys import Keyring
from kern.db.fork import STATE_KEY
from kern.db.transfer import RecordPage
from kern.records import Learning, Memory, Message, Run, ScoredLearning, ScoredMemory, Session

#: The key of the one entry a sealed dict field (state, learning content) holds.
SEALED_KEY = "__kern_enc__"
#: The ``name`` of the placeholder message holding a run's sealed messages.
SEALED_MESSAGE = "kern_encrypted"


@dataclass(frozen=True)
class Encryption:
    """What a Db encrypts: runs and sessions always, memories and learnings when asked."""

    keyring: Keyring
    memories: bool = False


# -- one field -------------------------------------------------------------------------


def _sealed_dict(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and is_token(value.get(SEALED_KEY))


def _sealed_messages(value: Any) -> bool:
    if not isinstance(value, list | tuple) or len(value) != 1:
        return False
    message = value[0]
    return (
        isinstance(message, Message)
        and message.name == SEALED_MESSAGE
        and is_token(message.content)
    )


def seal_text(keyring: Keyring, label: str, value: Any) -> Any:
    """A JSON value as a token (``None`` and tokens unchanged)."""
    return value if value is None or is_token(value) else seal(keyring, label, value)


def seal_dict(keyring: Keyring, label: str, value: dict[str, Any]) -> dict[str, Any]:
    if not value or _sealed_dict(value):
        return value
    return {SEALED_KEY: seal(keyring, label, value)}


def seal_messages(keyring: Keyring, value: Sequence[Any]) -> list[Any]:
    if not value or _sealed_messages(value):
        return list(value)
    plain = [m.model_dump(mode="json") if isinstance(m, Message) else m for m in value]
    token = seal(keyring, "run.messages", plain)
    return [Message(role="system", name=SEALED_MESSAGE, content=token)]


def open_text(keyring: Keyring | None, label: str, value: Any) -> Any:
    return unseal(keyring, label, value) if is_token(value) else value


def open_dict(keyring: Keyring | None, label: str, value: Any) -> Any:
    return unseal(keyring, label, value[SEALED_KEY]) if _sealed_dict(value) else value


def open_messages(keyring: Keyring | None, value: list[Message]) -> list[Message]:
    if not _sealed_messages(value):
        return value
    plain = unseal(keyring, "run.messages", value[0].content or "")
    return [Message.model_validate(message) for message in plain]


def seal_state_metric(keyring: Keyring, metrics: dict[str, Any]) -> dict[str, Any]:
    """A run's metrics with the session state the turn left (``kern.db.fork.STATE_KEY``)
    sealed as session state is: a fork copies it, as stored, into the new session's state."""
    state = metrics.get(STATE_KEY)
    if not isinstance(state, dict) or not state or _sealed_dict(state):
        return metrics
    return {**metrics, STATE_KEY: seal_dict(keyring, "session.state", state)}


def open_state_metric(keyring: Keyring | None, metrics: dict[str, Any]) -> dict[str, Any]:
    state = metrics.get(STATE_KEY)
    if not _sealed_dict(state):
        return metrics
    return {**metrics, STATE_KEY: open_dict(keyring, "session.state", state)}


# -- records ---------------------------------------------------------------------------


def seal_record(encryption: Encryption, record: Any) -> Any:
    """A copy of ``record`` with its sensitive fields sealed (the caller's object untouched)."""
    ring = encryption.keyring
    if isinstance(record, Run):
        return record.model_copy(
            update={
                "input": seal_text(ring, "run.input", record.input),
                "output": seal_text(ring, "run.output", record.output),
                "messages": seal_messages(ring, record.messages),
                "metrics": seal_state_metric(ring, record.metrics),
            }
        )
    if isinstance(record, Session):
        return record.model_copy(
            update={
                "state": seal_dict(ring, "session.state", record.state),
                "summary": seal_text(ring, "session.summary", record.summary),
            }
        )
    if not encryption.memories:
        return record
    if isinstance(record, Memory):
        topics = record.topics
        if topics and not (len(topics) == 1 and is_token(topics[0])):
            topics = [seal(ring, "memory.topics", topics)]
        return record.model_copy(
            update={"content": seal_text(ring, "memory.content", record.content), "topics": topics}
        )
    if isinstance(record, Learning):
        return record.model_copy(
            update={"content": seal_dict(ring, "learning.content", record.content)}
        )
    return record


def open_record(keyring: Keyring | None, record: Any) -> Any:
    """``record`` with its sealed fields opened; the same object when none is sealed."""
    if isinstance(record, Run):
        if not (
            is_token(record.input)
            or is_token(record.output)
            or _sealed_messages(record.messages)
            or _sealed_dict(record.metrics.get(STATE_KEY))
        ):
            return record
        return record.model_copy(
            update={
                "input": open_text(keyring, "run.input", record.input),
                "output": open_text(keyring, "run.output", record.output),
                "messages": open_messages(keyring, record.messages),
                "metrics": open_state_metric(keyring, record.metrics),
            }
        )
    if isinstance(record, Session):
        if not (_sealed_dict(record.state) or is_token(record.summary)):
            return record
        return record.model_copy(
            update={
                "state": open_dict(keyring, "session.state", record.state),
                "summary": open_text(keyring, "session.summary", record.summary),
            }
        )
    if isinstance(record, Memory):
        sealed_topics = len(record.topics) == 1 and is_token(record.topics[0])
        if not (is_token(record.content) or sealed_topics):
            return record
        topics = (
            unseal(keyring, "memory.topics", record.topics[0]) if sealed_topics else record.topics
        )
        return record.model_copy(
            update={
                "content": open_text(keyring, "memory.content", record.content),
                "topics": topics,
            }
        )
    if isinstance(record, Learning):
        if not _sealed_dict(record.content):
            return record
        return record.model_copy(
            update={"content": open_dict(keyring, "learning.content", record.content)}
        )
    return record


def open_result(keyring: Keyring | None, value: Any) -> Any:
    """What a contract method returned, with every record in it opened."""
    if isinstance(value, list):
        return [open_result(keyring, item) for item in value]
    if isinstance(value, tuple):
        return tuple(open_result(keyring, item) for item in value)
    if isinstance(value, ScoredMemory):
        memory = open_record(keyring, value.memory)
        return value if memory is value.memory else value.model_copy(update={"memory": memory})
    if isinstance(value, ScoredLearning):
        learning = open_record(keyring, value.learning)
        if learning is value.learning:
            return value
        return value.model_copy(update={"learning": learning})
    if isinstance(value, RecordPage):
        return replace(value, records=[open_record(keyring, r) for r in value.records])
    return open_record(keyring, value)


def seal_arguments(
    encryption: Encryption, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments of a contract call with every record (and ``update_run``'s output and
    messages) sealed."""
    args = tuple(_seal_argument(encryption, value) for value in args)
    kwargs = {name: _seal_argument(encryption, value) for name, value in kwargs.items()}
    if method == "update_run":
        ring = encryption.keyring
        if kwargs.get("output") is not None:
            kwargs["output"] = seal_text(ring, "run.output", kwargs["output"])
        if kwargs.get("messages"):
            kwargs["messages"] = seal_messages(ring, kwargs["messages"])
    return args, kwargs


def _seal_argument(encryption: Encryption, value: Any) -> Any:
    if isinstance(value, Run | Session | Memory | Learning):
        return seal_record(encryption, value)
    if isinstance(value, RecordPage):
        return replace(value, records=[seal_record(encryption, r) for r in value.records])
    return value


__all__ = [
    "SEALED_KEY",
    "SEALED_MESSAGE",
    "Encryption",
    "open_record",
    "open_result",
    "seal_arguments",
    "seal_record",
]
