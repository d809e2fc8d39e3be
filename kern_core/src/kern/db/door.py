"""The storage contract's door: every id and every stored text is checked here, once.

``ContractMeta`` is the metaclass of ``BaseDb`` and ``AsyncBaseDb``. Whenever a class of
either family gets a contract method (written in its body, inherited from a mixin, or
assigned after the class was made), the method is wrapped in a guard that checks its
arguments with ``kern.ids`` before the backend runs. So every backend, ours and third-party,
gets the same checks without writing them: a bad id raises ``InvalidIdError`` and bad text
``InvalidTextError``, and no driver ever sees either.

Which argument is an id, and whether ``None`` is allowed, is read from the contract's own
signatures: a parameter named like an id (``session_id``, ``user_id``, ``kind``...) whose
default is ``None`` is an optional filter; one without a default is required.
"""

from __future__ import annotations

import abc
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kern.crypto import layer as crypto_layer
from kern.db.fork import check_at_seq, check_new_session_id
from kern.db.login_errors import login_error, login_refused
from kern.db.transfer import check_batch, check_cursor, check_page_limit, check_record_kind
from kern.errors import InvalidIdError, InvalidTextError, StorageUnavailableError
from kern.ids import check_id, check_text
from kern.records import Embedding, Learning, Memory, Message, Run, Session
from kern.retention.rules import check_batch_limit, check_rule

#: Contract parameters that carry an id.
ID_PARAMETERS = frozenset(
    {
        "session_id",
        "user_id",
        "run_id",
        "memory_id",
        "learning_id",
        "agent_id",
        "component_id",
        "entity_id",
        "kind",
        "namespace",
    }
)

#: Contract parameters that carry text to store or search with.
TEXT_PARAMETERS = frozenset({"query", "output", "messages", "metrics"})

Check = Callable[[str, Any], None]


def _ids(*required: str, optional: Iterable[str] = ()) -> list[tuple[str, bool]]:
    return [(name, False) for name in required] + [(name, True) for name in optional]


#: For each record type: its id fields (name, optional) and its text fields.
RECORD_FIELDS: dict[type, tuple[list[tuple[str, bool]], tuple[str, ...]]] = {
    Session: (
        _ids("session_id", optional=("component_id", "user_id")),
        ("name", "state", "summary", "metadata"),
    ),
    Run: (
        _ids("run_id", "session_id", optional=("parent_run_id", "component_id", "user_id")),
        ("input", "output", "metrics"),
    ),
    Memory: (
        _ids("memory_id", "user_id", optional=("agent_id", "source_run_id")),
        ("content", "topics"),
    ),
    Learning: (
        _ids(
            "learning_id",
            "kind",
            "namespace",
            optional=("user_id", "session_id", "entity_id", "source_run_id"),
        ),
        ("content",),
    ),
}


def check_messages(field: str, messages: Any) -> None:
    """The text of chat messages (content, tool calls), for ``Run.messages`` and ``update_run``."""
    if not isinstance(messages, list | tuple):
        return
    for index, message in enumerate(messages):
        if not isinstance(message, Message):
            check_text(f"{field}[{index}]", message)
            continue
        where = f"{field}[{index}]"
        check_text(f"{where}.content", message.content)
        check_text(f"{where}.name", message.name)
        check_text(f"{where}.tool_call_id", message.tool_call_id)
        for call in message.tool_calls or ():
            check_text(f"{where}.tool_calls", [call.id, call.name, call.arguments])


def check_record(argument: str, record: Any) -> None:
    """Ids and text of a record passed to the contract (``upsert_session(session)``...)."""
    fields = RECORD_FIELDS.get(type(record))
    if fields is None:
        return  # not a kern record: the backend's own validation speaks
    id_fields, text_fields = fields
    for name, optional in id_fields:
        check_id(f"{argument}.{name}", getattr(record, name), optional=optional)
    for name in text_fields:
        check_text(f"{argument}.{name}", getattr(record, name))
    if isinstance(record, Run):
        check_messages(f"{argument}.messages", record.messages)


def check_query(argument: str, value: Any) -> None:
    if not isinstance(value, str):
        raise InvalidTextError(
            f"{argument} must be a string, got {type(value).__name__}: pass the search text."
        )
    check_text(argument, value)


def check_embedding(argument: str, value: Any, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, Embedding):
        raise InvalidTextError(
            f"{argument} must be a kern.records.Embedding(model=..., vector=[...]), got "
            f"{type(value).__name__}."
        )


def check_embeddings(argument: str, value: Any) -> None:
    """``{row id: Embedding}`` of ``set_embeddings``."""
    if not isinstance(value, Mapping):
        raise InvalidTextError(f"{argument} must be a mapping of row ids to Embeddings.")
    for row_id, embedding in value.items():
        check_id(f"{argument} key", row_id)
        check_embedding(f"{argument}[{row_id!r}]", embedding)


def check_import_batch(argument: str, value: Any) -> None:
    """A ``RecordPage`` to import: its shape (``kern.db.transfer.check_batch``), then every
    record's ids and text and every vector, as each write method checks its own."""
    check_batch(argument, value)
    for position, record in enumerate(value.records):
        check_record(f"{argument}.records[{position}]", record)
    check_embeddings(f"{argument}.embeddings", value.embeddings)


def check_table(argument: str, value: Any) -> None:
    if value not in VECTOR_TABLES:
        raise InvalidIdError(argument, "'memories' or 'learnings' (the tables with vectors)", value)


def check_kinds(argument: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidIdError(argument, "a list of kinds (or None)", value)
    for index, kind in enumerate(value):
        check_id(f"{argument}[{index}]", kind)


#: The tables whose rows carry vectors (``kern.db.base.VectorTable``).
VECTOR_TABLES = ("memories", "learnings")


def _check_for(parameter: inspect.Parameter) -> Check | None:
    name = parameter.name
    if name == "embedding":
        return functools.partial(check_embedding, optional=parameter.default is None)
    if name == "embeddings":
        return check_embeddings
    if name == "table":
        return check_table
    if name == "record_kind":
        return check_record_kind
    if name == "after":
        return check_cursor
    if name == "batch":
        return check_import_batch
    if name == "kinds":
        return check_kinds
    if name == "at_seq":
        return check_at_seq
    if name == "rule":
        return check_rule
    if name == "new_session_id":
        return check_new_session_id
    if name == "model":
        return functools.partial(_check_id, optional=False)
    if name in ID_PARAMETERS:
        optional = parameter.default is None
        return functools.partial(_check_id, optional=optional)
    if name in ("session", "run", "memory", "learning"):
        return check_record
    if name == "query":
        return check_query
    if name == "messages":
        return check_messages
    if name in TEXT_PARAMETERS:
        return check_text
    return None


def _check_id(argument: str, value: Any, *, optional: bool) -> None:
    check_id(argument, value, optional=optional)


def arguments_check(method: str, contract: Callable[..., Any]) -> Callable[..., None] | None:
    """A function checking ``(args, kwargs)`` of a call to ``method``, or None if it takes
    nothing to check. Positions and names come from the contract's signature."""
    steps: list[tuple[str, int | None, Check]] = []
    parameters = list(inspect.signature(contract).parameters.values())[1:]  # without self
    for position, parameter in enumerate(parameters):
        check = _check_for(parameter)
        if method == "export_records" and parameter.name == "limit":
            check = check_page_limit  # a page, bounded: elsewhere limit is the caller's
        if method == "retention_batch" and parameter.name == "limit":
            check = check_batch_limit  # a batch is bounded too
        if check is None:
            continue
        positional = parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        steps.append((parameter.name, position if positional else None, check))
    if not steps:
        return None

    def check_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        for name, position, check in steps:
            if position is not None and position < len(args):
                value = args[position]
            elif name in kwargs:
                value = kwargs[name]
            else:
                continue  # left to its default
            check(f"{method}(): {name}", value)

    return check_arguments


def unavailable_error(
    db: Any, exc: BaseException, *, secrets: Iterable[str] = ()
) -> StorageUnavailableError:
    """The error for a database ``db`` cannot reach; backends that recognise such faults
    themselves (by error code, not class) raise it too, with ``exc`` chained. ``secrets``
    (a password the driver may echo) are masked in the message."""
    detail = str(exc).strip() or "no detail"
    for secret in secrets:
        if secret:
            detail = detail.replace(secret, "***")
    if login_refused(exc, detail):
        return login_error(db, db.storage_target(), detail)
    return StorageUnavailableError(
        f"the {db.backend_name or type(db).__name__} database at {db.storage_target()} is "
        "unavailable: check that the server is running and reachable and that the URL is "
        "right; a write that failed this way may or may not be stored, and retrying a turn "
        f"with the same run_id stores it at most once. ({type(exc).__name__}: {detail})"
    )


def refused_login(db: Any, exc: BaseException) -> BaseException:
    """``StorageLoginError`` if ``exc`` (one of the backend's ``login_errors``: errors the
    server answers with, such as pymongo's ``OperationFailure``) is a refused login; else
    ``exc`` itself, raised again as it was."""
    if login_refused(exc, str(exc)):
        return login_error(db, db.storage_target(), str(exc).strip())
    raise exc


def _guard(
    method: Callable[..., Any], check: Callable[..., None] | None, is_async: bool, name: str = ""
) -> Any:
    """``method`` with its arguments checked first and unreachable-database errors of the
    driver (``unavailable_errors``) raised as ``StorageUnavailableError``; records pass
    through the encryption layer (``kern.crypto.layer``: sealed in, opened out)."""
    name = name or method.__name__
    if is_async:

        @functools.wraps(method)
        async def guarded_async(self: Any, *args: Any, **kwargs: Any) -> Any:
            if check is not None:
                check(args, kwargs)
            try:
                return await crypto_layer.acall(self, name, method, args, kwargs)
            except self.unavailable_errors as exc:
                raise unavailable_error(self, exc) from exc
            except self.login_errors as exc:  # an answer that may be a refused login
                raise refused_login(self, exc) from exc

        guarded: Any = guarded_async
    else:

        @functools.wraps(method)
        def guarded_sync(self: Any, *args: Any, **kwargs: Any) -> Any:
            if check is not None:
                check(args, kwargs)
            try:
                return crypto_layer.call(self, name, method, args, kwargs)
            except self.unavailable_errors as exc:
                raise unavailable_error(self, exc) from exc
            except self.login_errors as exc:  # an answer that may be a refused login
                raise refused_login(self, exc) from exc

        guarded = guarded_sync
    guarded.__kern_checked__ = True
    return guarded


class ContractMeta(abc.ABCMeta):
    """Wraps each contract method of a Db class in its argument check (see the module doc)."""

    #: Contract method name -> its argument check (None: no argument to check); filled by
    #: ``guard_contract`` from ``BaseDb``.
    checks: dict[str, Callable[..., None] | None] = {}

    def __init__(cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> None:
        super().__init__(name, bases, namespace)
        for method_name in ContractMeta.checks:
            method = getattr(cls, method_name, None)
            if method is not None:
                type.__setattr__(cls, method_name, cls._guarded(method_name, method))

    def __setattr__(cls, name: str, value: Any) -> None:
        if name in ContractMeta.checks:
            value = cls._guarded(name, value)
        super().__setattr__(name, value)

    def _guarded(cls, name: str, method: Any) -> Any:
        if (
            not inspect.isfunction(method)
            or getattr(method, "__kern_checked__", False)
            or getattr(method, "__isabstractmethod__", False)
        ):
            return method
        is_async = bool(getattr(cls, "is_async", False))
        return _guard(method, ContractMeta.checks[name], is_async, name)


#: Contract methods with a default implementation, guarded like the abstract ones.
EXTRA_METHODS = (
    "recall_memories",
    "search_sessions",
    "fork_session",
    "read_turn",
    "export_records",
    "import_records",
    "retention_batch",
)


def guard_contract(contract: type) -> None:
    """Read the argument checks from ``contract`` (``BaseDb``); called once, in db.base."""
    abstract: frozenset[str] = getattr(contract, "__abstractmethods__", frozenset())
    for name in sorted({*abstract, *EXTRA_METHODS}):
        ContractMeta.checks[name] = arguments_check(name, getattr(contract, name))
