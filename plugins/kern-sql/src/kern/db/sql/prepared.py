"""Core statements compiled once, then run straight on a DBAPI cursor.

An agent turn is a handful of tiny indexed statements, so per-call overhead is what it
costs: SQLAlchemy's per-execution work (cache key, execution context, result set-up) costs
several times what SQLite spends running the statement. ``Prepared`` compiles a statement
once per parameter shape with the engine's dialect and keeps, for each bind and result
column, the type's own processor (``TypeEngine.bind_processor`` / ``result_processor``), so
values are converted exactly as SQLAlchemy would convert them. ``Link`` runs the SQL text on
a DBAPI cursor, or through ``Connection.exec_driver_sql`` when someone listens to the
engine's statement events (a tracer, a test's counter), so that they still see every one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement, Insert, Select, Update

Processor = Callable[[Any], Any] | None
Params = Mapping[str, Any]


@dataclass(frozen=True)
class Form:
    """One compiled shape of a statement: SQL text, how to bind, how to read rows."""

    sql: str
    #: (name, processor, fixed value or ``_GIVEN``) per placeholder, in order if positional.
    slots: tuple[tuple[str, Processor, Any], ...]
    positional: bool
    columns: tuple[str, ...]
    results: tuple[Processor, ...]

    def bind(self, given: Params) -> tuple[Any, ...] | dict[str, Any]:
        values = []
        for name, process, fixed in self.slots:
            if fixed is _GIVEN:
                value = given[name]
                if process is not None and value is not None:
                    value = process(value)
            else:
                value = fixed
            values.append(value)
        if self.positional:
            return tuple(values)
        return {slot[0]: value for slot, value in zip(self.slots, values, strict=True)}

    def row(self, raw: Any) -> dict[str, Any]:
        return {
            name: (value if process is None or value is None else process(value))
            for name, process, value in zip(self.columns, self.results, raw, strict=True)
        }


class _Given:
    def __repr__(self) -> str:
        return "<given at call>"


_GIVEN: Any = _Given()


class Prepared:
    """A Core statement with its compiled forms for one dialect, built on first use.

    INSERT and UPDATE statements without explicit values take their columns from the
    parameters, so they get one form per set of parameter names.
    """

    __slots__ = ("_forms", "_keyed", "dialect", "statement")

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        self.statement = statement
        self.dialect = dialect
        self._keyed = isinstance(statement, Insert | Update)
        self._forms: dict[tuple[str, ...] | None, Form] = {}

    def form(self, params: Params) -> Form:
        key = tuple(params) if self._keyed else None
        form = self._forms.get(key)
        if form is None:
            form = self._forms[key] = self._compile(key)
        return form

    def _compile(self, column_keys: tuple[str, ...] | None) -> Form:
        dialect = self.dialect
        compiled = self.statement.compile(
            dialect=dialect, column_keys=list(column_keys) if column_keys else None
        )
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        positional = bool(compiled.positional)
        names = list(compiled.positiontup or ()) if positional else list(by_name)
        slots = []
        for name in names:
            bind = by_name[name]
            if bind.expanding or bind.literal_execute:  # rendered per call: not preparable
                raise ValueError(f"parameter {name!r} is rendered per call: cannot prepare it")
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                slots.append((name, process, _GIVEN))
            else:  # a literal of the statement itself (a constant in an expression)
                value = bind.effective_value
                slots.append((name, None, process(value) if process else value))
        columns: tuple[str, ...] = ()
        results: tuple[Processor, ...] = ()
        if isinstance(self.statement, Select):
            selected = list(self.statement.selected_columns)
            columns = tuple(str(c.key) for c in selected)
            results = tuple(
                c.type.dialect_impl(dialect).result_processor(dialect, None) for c in selected
            )
        return Form(compiled.string, tuple(slots), positional, columns, results)


class Link:
    """One checked-out connection as the operations see it: prepared statements in, dicts out.

    ``dbapi_connection`` runs the statements unless ``observed`` (a SQLAlchemy
    ``Connection`` on the same DBAPI connection) is given: then they go through
    ``exec_driver_sql``, which fires the engine's statement events. Driver errors come out
    as SQLAlchemy's (``sqlalchemy.exc.IntegrityError``...) either way.
    """

    __slots__ = ("dbapi_connection", "dialect", "observed")

    def __init__(
        self, dbapi_connection: Any, dialect: Dialect, observed: Connection | None = None
    ) -> None:
        self.dbapi_connection = dbapi_connection
        self.dialect = dialect
        self.observed = observed

    def _run(self, sql: str, bound: Any) -> Any:
        if self.observed is not None:
            return self.observed.exec_driver_sql(sql, bound)
        cursor = self.dbapi_connection.cursor()
        try:
            cursor.execute(sql, bound)
        except self.dialect.loaded_dbapi.Error as exc:
            cursor.close()
            raise self.wrap(exc, sql, bound) from exc
        return cursor

    def wrap(self, exc: Exception, sql: str | None = None, bound: Any = None) -> DBAPIError:
        """A driver error as SQLAlchemy reports it, noting whether the connection is lost."""
        lost = self.dialect.is_disconnect(exc, self.dbapi_connection, None)  # type: ignore[arg-type]
        return DBAPIError.instance(  # type: ignore[return-value]
            sql,
            bound,
            exc,
            self.dialect.loaded_dbapi.Error,
            connection_invalidated=lost,
            dialect=self.dialect,
        )

    def sql(self, statement: str) -> None:
        """Run a bare statement (``BEGIN IMMEDIATE``), observed like the others."""
        self._run(statement, ()).close()

    def commit(self) -> None:
        if self.observed is not None:
            self.observed.commit()
            return
        try:
            self.dbapi_connection.commit()
        except self.dialect.loaded_dbapi.Error as exc:
            raise self.wrap(exc, "COMMIT") from exc

    def rollback(self) -> None:
        if self.observed is not None:
            self.observed.rollback()
        else:
            self.dbapi_connection.rollback()

    def all(self, query: Prepared, params: Params) -> list[dict[str, Any]]:
        form = query.form(params)
        cursor = self._run(form.sql, form.bind(params))
        rows = cursor.fetchall()
        cursor.close()
        return [form.row(raw) for raw in rows]

    def first(self, query: Prepared, params: Params) -> dict[str, Any] | None:
        form = query.form(params)
        cursor = self._run(form.sql, form.bind(params))
        raw = cursor.fetchone()
        cursor.close()
        return None if raw is None else form.row(raw)

    def scalar(self, query: Prepared, params: Params) -> Any:
        row = self.first(query, params)
        return None if row is None else next(iter(row.values()))

    def execute(self, query: Prepared, params: Params) -> int:
        """Run a statement that returns no rows; the number of rows it changed."""
        form = query.form(params)
        cursor = self._run(form.sql, form.bind(params))
        count = int(cursor.rowcount)
        cursor.close()
        return count
