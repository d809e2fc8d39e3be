"""Records to rows and back.

Column names are the record field names, so a row maps onto its model directly. Enums are
written as their plain string value: some drivers (psycopg) would otherwise adapt an
``Enum`` by its member name.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel

from kern.records import Learning, Memory, Run, Session

R = TypeVar("R", bound=BaseModel)


def to_row(record: BaseModel, *, exclude: set[str] | None = None) -> dict[str, Any]:
    """The record's fields as bind values (datetimes stay datetimes, JSON stays Python)."""
    row = record.model_dump(exclude=exclude)
    for key, value in row.items():
        if isinstance(value, Enum):
            row[key] = value.value
    return row


def from_row(model: type[R], row: Mapping[str, Any]) -> R:
    """Validate a stored row back into its record."""
    return model.model_validate(dict(row))


def session_from(row: Mapping[str, Any]) -> Session:
    return from_row(Session, row)


def run_from(row: Mapping[str, Any]) -> Run:
    return from_row(Run, row)


def memory_from(row: Mapping[str, Any]) -> Memory:
    return from_row(Memory, row)


def learning_from(row: Mapping[str, Any]) -> Learning:
    return from_row(Learning, row)
