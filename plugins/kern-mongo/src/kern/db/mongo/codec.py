"""Records to MongoDB documents and back, exactly.

- Ids are strings and are the documents' ``_id`` (``session_id``, ``run_id``, ...): no
  ObjectId anywhere, so every server, shard key and tool sees plain strings.
- A timestamp is stored twice: as a BSON date (``created_at``: milliseconds, for people,
  tools and TTL indexes) and as integer microseconds since the epoch (``created_at_us``:
  exact, sortable, indexed). kern reads the microseconds back, in UTC.
- JSON values (state, metadata, input, output, metrics, learning content) are stored as
  native BSON when BSON holds them exactly. A value BSON cannot hold as it is (a key with a
  ``.`` or a leading ``$``, an integer beyond 64 bits, text that is not valid UTF-8, very
  deep nesting) is stored as JSON text inside ``{"__kern_json__": "<text>"}`` instead, so
  it still comes back exactly.
- A document is at most 16 MiB (MongoDB's ``maxBsonObjectSize``): ``check_size`` refuses a
  bigger one with ``DocumentTooLargeError`` before anything is written.
- A memory's or learning's vector lives in its document, beside the record's fields:
  ``embedding_model`` (the embedder's id) and ``embedding`` (``vector_fields``). The record
  reads leave both out (``RECORD``, a projection) and the ``*_from`` functions never look
  at them: a record read costs what it did before vectors.
- The ``*_doc`` functions give a record's whole document as it is, ``version`` and both
  timestamps included, for an import (``kern.db.mongo.transfer``), which keeps them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
from pydantic import JsonValue, TypeAdapter, ValidationError

from kern.db.mongo.search import document_terms
from kern.errors import InvalidTextError, UnserializableError
from kern.records import Embedding, Learning, Memory, Message, Run, Session

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
#: The one key of the wrapper that holds a value as JSON text.
JSON_TEXT = "__kern_json__"
#: BSON nests at most 100 levels; stay well clear of it.
_MAX_DEPTH = 64
_INT64 = (-(2**63), 2**63 - 1)

_JSON = TypeAdapter(JsonValue)
_JSON_OBJECT = TypeAdapter(dict[str, JsonValue])

#: The largest document MongoDB stores (``maxBsonObjectSize``), the same on every server.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024

#: What to do about a record too large for one document, per kind of record.
FIX_RUN = (
    "A run is one document holding its input, its messages (the input again, and the "
    "reply), its output and metrics. Send large content by reference (a file path, URL or "
    "id) instead of inline, or split it over several turns."
)
FIX_SESSION = (
    "Keep large data out of the session state and metadata: store it elsewhere and keep a "
    "reference (a path, URL or id) in the state."
)
FIX_CONTENT = "Shorten the content, or store it elsewhere and keep a reference to it here."


class DocumentTooLargeError(InvalidTextError):
    """A record would make a MongoDB document larger than the server stores (16 MiB).

    Raised before anything of the operation is written (or when the server refused the one
    write whole), so nothing was stored. A subclass of ``InvalidTextError``: the content is
    what cannot be stored as it is; the message names the record, its size and the fix.
    """

    def __init__(self, what: str, size: int | None, fix: str) -> None:
        self.size = size
        shown = "larger than that" if size is None else f"{size / 1e6:.1f} MB"
        super().__init__(
            f"{what} would be a MongoDB document of {shown}; MongoDB stores at most "
            f"16 MiB ({MAX_DOCUMENT_BYTES:,} bytes) in one document, so nothing was "
            f"stored. {fix}"
        )


def check_size(doc: Mapping[str, Any], what: str, fix: str) -> None:
    """Raise ``DocumentTooLargeError`` if ``doc`` encodes to more than 16 MiB of BSON."""
    size = len(bson.encode(doc))
    if size > MAX_DOCUMENT_BYTES:
        raise DocumentTooLargeError(what, size, fix)


# -- vectors -------------------------------------------------------------------------------
#: The embedder that made the stored vector (an ``Embedding.model``), and the vector itself.
EMBEDDING_MODEL = "embedding_model"
EMBEDDING = "embedding"
#: The projection of every record read of memories and learnings: all but the vector.
RECORD: dict[str, Any] = {EMBEDDING_MODEL: 0, EMBEDDING: 0}
#: What an upsert without a vector removes (the stored one described the old content).
NO_VECTOR: dict[str, Any] = {EMBEDDING_MODEL: "", EMBEDDING: ""}


def vector_fields(embedding: Embedding) -> dict[str, Any]:
    """The stored fields of ``embedding``. The vector is BSON binary (generic subtype) of
    little-endian float32: 4 bytes a number where an array of doubles takes 13 or 14 for
    a real embedder's (8, a type byte and the element's name, ``"1535"``), and read back
    as ``bytes``, which ``kern.vectors.nearest`` takes as they are. (Subtype 9, BSON's
    "vector", is what Atlas Vector Search indexes, but not every server keeps it: nx-27017
    returns it as subtype 0.)"""
    return {EMBEDDING_MODEL: embedding.model, EMBEDDING: embedding.as_float32()}


def embedding_from(doc: Mapping[str, Any]) -> Embedding | None:
    """The vector stored in a memory's or learning's document, if it has one."""
    if EMBEDDING not in doc or EMBEDDING_MODEL not in doc:
        return None
    return Embedding.from_float32(doc[EMBEDDING_MODEL], bytes(doc[EMBEDDING]))


def with_vector(doc: dict[str, Any], embedding: Embedding | None) -> dict[str, Any]:
    """``doc`` with the vector fields of ``embedding`` (none: left without a vector)."""
    if embedding is not None:
        doc.update(vector_fields(embedding))
    return doc


# -- timestamps ----------------------------------------------------------------------------
def to_us(moment: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // _MICROSECOND


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def stamp(doc: dict[str, Any], name: str, moment: datetime) -> dict[str, Any]:
    """Set ``name`` (BSON date) and ``name_us`` (exact microseconds) in ``doc``."""
    us = to_us(moment)
    doc[name] = from_us(us - us % 1000)  # what BSON keeps anyway: whole milliseconds
    doc[f"{name}_us"] = us
    return doc


def read_stamp(doc: Mapping[str, Any], name: str) -> datetime:
    return from_us(doc[f"{name}_us"])


# -- JSON values ---------------------------------------------------------------------------
def _bson_safe(value: Any, depth: int = 0) -> bool:
    """True if BSON stores ``value`` as it is and every server gives it back unchanged."""
    if value is None or isinstance(value, bool | float):
        return True
    if isinstance(value, int):
        return _INT64[0] <= value <= _INT64[1]
    if isinstance(value, str):
        return value.isascii() or _utf8(value)
    if depth >= _MAX_DEPTH:
        return False
    if isinstance(value, list):
        return all(_bson_safe(item, depth + 1) for item in value)
    if isinstance(value, dict):
        if len(value) == 1 and JSON_TEXT in value:
            return False  # would read back as a wrapper
        return all(
            isinstance(key, str)
            and key
            and key[0] != "$"
            and "." not in key
            and "\x00" not in key
            and _utf8(key)
            and _bson_safe(item, depth + 1)
            for key, item in value.items()
        )
    return False


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def put_json(value: Any) -> Any:
    """``value`` as stored: itself when BSON holds it exactly, else wrapped JSON text."""
    if _bson_safe(value):
        return value
    return {JSON_TEXT: json.dumps(value, ensure_ascii=True, separators=(",", ":"))}


def get_json(stored: Any) -> Any:
    if isinstance(stored, dict) and len(stored) == 1 and JSON_TEXT in stored:
        return json.loads(stored[JSON_TEXT])
    return stored


def checked_json(value: object, what: str, *, obj: bool = False) -> Any:
    """``value`` validated as JSON (an object if ``obj``), or ``UnserializableError``."""
    try:
        return (_JSON_OBJECT if obj else _JSON).validate_python(value)
    except ValidationError as exc:
        raise UnserializableError(
            f"the run's {what} cannot be stored as JSON ({exc.errors()[0]['msg']}). Pass "
            "strings, numbers, booleans, None, lists and dicts with string keys."
        ) from None


def put_messages(messages: Iterable[object]) -> list[Any]:
    """Messages as stored: unset optional fields left out (they read back as defaults)."""
    return [
        put_json(Message.model_validate(m).model_dump(mode="json", exclude_none=True))
        for m in messages
    ]


def _get_messages(stored: list[Any]) -> list[Message]:
    return [Message.model_validate(get_json(m)) for m in stored]


# -- sessions ------------------------------------------------------------------------------
def session_fields(session: Session) -> dict[str, Any]:
    """Every stored field of ``session`` but ``_id``, ``version`` and the timestamps."""
    return {
        "session_type": session.session_type.value,
        "component_id": session.component_id,
        "user_id": session.user_id,
        "name": session.name,
        "state": put_json(session.state),
        "summary": session.summary,
        "metadata": put_json(session.metadata),
        "terms": session_terms(session.name, session.summary),
    }


def session_terms(name: str | None, summary: str | None) -> list[str]:
    """The words a session is found by (``search_sessions``): its name's and summary's."""
    return document_terms([name or "", summary or ""])


def session_doc(session: Session) -> dict[str, Any]:
    """The whole document of ``session``, its ``version`` and timestamps as given."""
    doc = {"_id": session.session_id, **session_fields(session), "version": session.version}
    stamp(doc, "created_at", session.created_at)
    return stamp(doc, "updated_at", session.updated_at)


def session_from(doc: Mapping[str, Any]) -> Session:
    return Session(
        session_id=doc["_id"],
        session_type=doc["session_type"],
        component_id=doc.get("component_id"),
        user_id=doc.get("user_id"),
        name=doc.get("name"),
        state=get_json(doc["state"]),
        summary=doc.get("summary"),
        metadata=get_json(doc["metadata"]),
        version=doc["version"],
        created_at=read_stamp(doc, "created_at"),
        updated_at=read_stamp(doc, "updated_at"),
    )


# -- runs ----------------------------------------------------------------------------------
def run_doc(run: Run, seq: int) -> dict[str, Any]:
    doc = {
        "_id": run.run_id,
        "session_id": run.session_id,
        "seq": seq,
        "parent_run_id": run.parent_run_id,
        "component_id": run.component_id,
        "user_id": run.user_id,
        "status": run.status.value,
        "input": put_json(run.input),
        "messages": put_messages(run.messages),
        "output": put_json(run.output),
        "metrics": put_json(run.metrics),
    }
    return stamp(doc, "created_at", run.created_at)


def run_from(doc: Mapping[str, Any]) -> Run:
    return Run(
        run_id=doc["_id"],
        session_id=doc["session_id"],
        seq=doc["seq"],
        parent_run_id=doc.get("parent_run_id"),
        component_id=doc.get("component_id"),
        user_id=doc.get("user_id"),
        status=doc["status"],
        input=get_json(doc.get("input")),
        messages=_get_messages(doc["messages"]),
        output=get_json(doc.get("output")),
        metrics=get_json(doc["metrics"]),
        created_at=read_stamp(doc, "created_at"),
    )


# -- memories ------------------------------------------------------------------------------
def memory_fields(memory: Memory) -> dict[str, Any]:
    """Every stored field of ``memory`` but ``_id`` and the timestamps; ``terms`` for search."""
    return {
        "user_id": memory.user_id,
        "agent_id": memory.agent_id,
        "content": memory.content,
        "topics": put_json(memory.topics),
        "source_run_id": memory.source_run_id,
        "terms": document_terms([memory.content, *memory.topics]),
    }


def memory_doc(memory: Memory, embedding: Embedding | None) -> dict[str, Any]:
    """The whole document of ``memory`` (timestamps as given), with ``embedding``'s vector."""
    doc = {"_id": memory.memory_id, **memory_fields(memory)}
    stamp(doc, "created_at", memory.created_at)
    return with_vector(stamp(doc, "updated_at", memory.updated_at), embedding)


def memory_from(doc: Mapping[str, Any]) -> Memory:
    return Memory(
        memory_id=doc["_id"],
        user_id=doc["user_id"],
        agent_id=doc.get("agent_id"),
        content=doc["content"],
        topics=get_json(doc["topics"]),
        source_run_id=doc.get("source_run_id"),
        created_at=read_stamp(doc, "created_at"),
        updated_at=read_stamp(doc, "updated_at"),
    )


# -- learnings -----------------------------------------------------------------------------
def _strings(value: Any) -> Iterable[str]:
    """The text in a JSON value: its strings and numbers, nested ones included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def learning_fields(learning: Learning) -> dict[str, Any]:
    """Every stored field of ``learning`` but ``_id`` and the timestamps; ``terms`` for search."""
    return {
        "kind": learning.kind,
        "namespace": learning.namespace,
        "user_id": learning.user_id,
        "session_id": learning.session_id,
        "entity_id": learning.entity_id,
        "content": put_json(learning.content),
        "status": learning.status.value,
        "source_run_id": learning.source_run_id,
        "terms": document_terms(_strings(learning.content)),
    }


def learning_doc(learning: Learning, embedding: Embedding | None) -> dict[str, Any]:
    """The whole document of ``learning`` (timestamps as given), with ``embedding``'s vector."""
    doc = {"_id": learning.learning_id, **learning_fields(learning)}
    stamp(doc, "created_at", learning.created_at)
    return with_vector(stamp(doc, "updated_at", learning.updated_at), embedding)


def learning_from(doc: Mapping[str, Any]) -> Learning:
    return Learning(
        learning_id=doc["_id"],
        kind=doc["kind"],
        namespace=doc["namespace"],
        user_id=doc.get("user_id"),
        session_id=doc.get("session_id"),
        entity_id=doc.get("entity_id"),
        content=get_json(doc["content"]),
        status=doc["status"],
        source_run_id=doc.get("source_run_id"),
        created_at=read_stamp(doc, "created_at"),
        updated_at=read_stamp(doc, "updated_at"),
    )
