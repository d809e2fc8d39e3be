"""The storage contract as typed effects: one ``DbCall`` factory per ``BaseDb`` method.

Logic written for the drivers (``kern.effects``) reaches the database through these::

    from kern import storage

    session = yield from storage.get_session(session_id)  # Session | None

Each factory takes exactly the arguments of the ``BaseDb`` method of the same name (a type
checker reads them from ``BaseDb`` itself, so they cannot drift) and returns a
``DbCall[R]``, ``R`` being that method's result type. A misspelt method is an attribute
error of this module, found by the type checker, not a failure at run time.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from kern.db.base import BaseDb
from kern.effects import DbCall

P = ParamSpec("P")
R = TypeVar("R")


def _call_of(method: Callable[Concatenate[BaseDb, P], R]) -> Callable[P, DbCall[R]]:
    """The factory of ``DbCall``\\ s for ``method``, with its parameters and result type."""
    name = method.__name__

    def call(*args: P.args, **kwargs: P.kwargs) -> DbCall[R]:
        return DbCall(name, args, kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = method.__doc__
    contract = inspect.signature(method)
    parameters = list(contract.parameters.values())[1:]  # without self
    call.__signature__ = contract.replace(  # type: ignore[attr-defined]
        parameters=parameters, return_annotation=f"DbCall[{contract.return_annotation}]"
    )
    return call


create_tables = _call_of(BaseDb.create_tables)
forget_user = _call_of(BaseDb.forget_user)
apply_retention = _call_of(BaseDb.apply_retention)
retention_batch = _call_of(BaseDb.retention_batch)

get_session = _call_of(BaseDb.get_session)
upsert_session = _call_of(BaseDb.upsert_session)
list_sessions = _call_of(BaseDb.list_sessions)
search_sessions = _call_of(BaseDb.search_sessions)
delete_session = _call_of(BaseDb.delete_session)
fork_session = _call_of(BaseDb.fork_session)

commit_turn = _call_of(BaseDb.commit_turn)
append_run = _call_of(BaseDb.append_run)
get_run = _call_of(BaseDb.get_run)
get_last_runs = _call_of(BaseDb.get_last_runs)
read_turn = _call_of(BaseDb.read_turn)
update_run = _call_of(BaseDb.update_run)

upsert_memory = _call_of(BaseDb.upsert_memory)
get_memory = _call_of(BaseDb.get_memory)
list_memories = _call_of(BaseDb.list_memories)
search_memories = _call_of(BaseDb.search_memories)
recall_memories = _call_of(BaseDb.recall_memories)
delete_memory = _call_of(BaseDb.delete_memory)

upsert_learning = _call_of(BaseDb.upsert_learning)
get_learning = _call_of(BaseDb.get_learning)
query_learnings = _call_of(BaseDb.query_learnings)
search_learnings = _call_of(BaseDb.search_learnings)
delete_learning = _call_of(BaseDb.delete_learning)

search_memories_by_vector = _call_of(BaseDb.search_memories_by_vector)
search_learnings_by_vector = _call_of(BaseDb.search_learnings_by_vector)
set_embeddings = _call_of(BaseDb.set_embeddings)
memories_without_embedding = _call_of(BaseDb.memories_without_embedding)
learnings_without_embedding = _call_of(BaseDb.learnings_without_embedding)

export_records = _call_of(BaseDb.export_records)
import_records = _call_of(BaseDb.import_records)
storage_report = _call_of(BaseDb.storage_report)
