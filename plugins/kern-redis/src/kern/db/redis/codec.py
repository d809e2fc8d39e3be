"""Records to the JSON text kern stores in Redis, and back.

Records are stored as pydantic's own JSON (``model_dump_json``), read back with
``model_validate_json``: JSON types round-trip exactly (``2.0`` stays a float, ``True`` is
not ``1``) and timestamps keep their microseconds and UTC offset.

Fields the server must change inside a Lua script are kept where the script can reach them
without re-encoding JSON (Lua's cjson would round big integers and floats):

- a run is ``{"seq":N,`` + the rest: the script that assigns ``seq`` prepends it;
- a memory or learning is ``{"created_at":"…",`` + the rest: an upsert keeps the stored
  ``created_at`` by splicing it back in front;
- a session is a hash (``v`` version, ``c`` created, ``u`` updated, ``rest`` the other
  fields as JSON), so compare-and-set and "move updated_at" are plain hash writes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, JsonValue, TypeAdapter, ValidationError

from kern.errors import UnserializableError
from kern.records import Learning, Memory, Run, Session

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_DATETIME = TypeAdapter(datetime)
_JSON = TypeAdapter(JsonValue)
_METRICS = TypeAdapter(dict[str, JsonValue])


def text(value: Any) -> Any:
    """Bytes from the server as text (clients made with ``decode_responses=True`` give str)."""
    return value.decode() if isinstance(value, bytes) else value


def aware(moment: datetime) -> datetime:
    """A naive datetime is taken to be UTC (as the SQL backends store it)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def micros(moment: datetime) -> int:
    """Microseconds since the epoch: exact in a sorted-set score (a double) until 2255."""
    return (aware(moment) - EPOCH) // _MICRO


def iso(moment: datetime) -> str:
    return _DATETIME.dump_python(moment, mode="json")


def parse_time(value: Any) -> datetime:
    return _DATETIME.validate_python(text(value))


# -- runs --------------------------------------------------------------------------------
def run_body(run: Run) -> str:
    """The run's JSON without ``seq`` and without its opening brace."""
    return run.model_dump_json(exclude={"seq"})[1:]


def run_json(seq: int, body: str) -> str:
    return f'{{"seq":{seq},{body}'


def run_seq(raw: Any) -> int:
    """The seq of a run's stored JSON, read from its head (``{"seq":N,``)."""
    stored = text(raw)
    return int(stored[len('{"seq":') : stored.index(",")])


def run_from(raw: Any) -> Run:
    return Run.model_validate_json(raw)


def checked_json(value: object, what: str, adapter: TypeAdapter[Any] = _JSON) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise UnserializableError(
            f"the run's {what} cannot be stored as JSON ({exc.errors()[0]['msg']}). Pass "
            "strings, numbers, booleans, None, lists and dicts with string keys."
        ) from None


def checked_metrics(value: object) -> Any:
    return checked_json(value, "metrics", _METRICS)


# -- sessions ------------------------------------------------------------------------------
def session_rest(session: Session) -> str:
    """Every field but the three the hash keeps apart (version, created_at, updated_at)."""
    return session.model_dump_json(exclude={"version", "created_at", "updated_at"})


def session_from(version: Any, created: Any, updated: Any, rest: Any) -> Session:
    body = text(rest)
    raw = (
        f'{{"version":{text(version)},"created_at":"{text(created)}",'
        f'"updated_at":"{text(updated)}",{body[1:]}'
    )
    return Session.model_validate_json(raw)


# -- memories and learnings -------------------------------------------------------------
def doc_parts(record: BaseModel) -> tuple[str, str]:
    """``(created_at as text, the rest of the JSON after the opening brace)``."""
    created = iso(record.created_at)  # type: ignore[attr-defined]
    return created, record.model_dump_json(exclude={"created_at"})[1:]


def doc_json(created: str, rest: str) -> str:
    return f'{{"created_at":"{created}",{rest}'


def memory_from(raw: Any) -> Memory:
    return Memory.model_validate_json(raw)


def learning_from(raw: Any) -> Learning:
    return Learning.model_validate_json(raw)
