"""Core statements compiled once, then run straight on a DBAPI cursor.

An agent turn is a handful of tiny indexed statements, so per-call overhead is what it
costs: SQLAlchemy's per-execution work (cache key, execution context, result set-up) costs
several times what SQLite spends running the statement. ``Prepared`` compiles a statement
once per parameter shape with the engine's dialect and keeps, for each bind and result
column, the type's own processor (``TypeEngine.bind_processor`` / ``result_processor``), so
values are converted exactly as SQLAlchemy would convert them. ``Link`` runs the SQL text on
a DBAPI cursor, or through ``Connection.exec_driver_sql`` when someone listens to the
engine's statement events (a tracer, a test's counter), so that they still see every one.
On SQLite a primary-key read costs about 18 us this way against about 60 us observed.

SQLAlchemy internals this relies on, and how they are kept honest. Skipping
``Connection.execute`` means doing three of its jobs here, without public API for them:

* Binding (``Prepared._compile``, once per statement shape, never per call): which
  placeholder takes which parameter, in which order, is read from ``SQLCompiler.bind_names``
  and ``SQLCompiler.positiontup`` (documented, but under "Core Internals"). The public
  ``SQLCompiler.construct_expanded_state()`` cannot replace them: it wants a value for every
  parameter and does not say which placeholders are the caller's and which are constants of
  the statement. It does say what SQLAlchemy would bind, so each new shape is checked against
  it, and a disagreement raises ``SqlAlchemyChanged`` at first use instead of sending values
  to the wrong placeholders.
* Observing (``has_statement_listeners``, every operation): the cursor path is taken only
  when nobody listens to statement events, read from the flags SQLAlchemy itself checks:
  ``_has_events`` on the engine, on the ``Connection`` class and on the dialect (then the
  dialect's per-statement hooks, so a ``do_connect`` listener alone keeps the fast path).
  Public API can only ask about one known listener (``event.contains``). An engine or
  dialect flag that is gone reads as "listened to": every statement is still seen, slower.
* Errors (``Link.wrap``): ``DBAPIError.instance``, SQLAlchemy's own factory from a driver
  error to ``IntegrityError``, ``OperationalError``... (public name, undocumented).

These move inside 2.0.x (the ``Connection`` class got its flag, and listeners on the class
started to count, in 2.0.56), so SQLAlchemy is pinned to ``>=2.0.30,<2.1`` in
plugins/kern-sql/pyproject.toml and, for its async bridge ``sqlalchemy.util.greenlet_spawn``,
plugins/kern-postgres/pyproject.toml, and ``plugins/kern-sql/tests/
test_sqlalchemy_internals.py`` checks each one's behaviour on the installed version, naming
the internal and what to do when it fails. Run it, and the SQL backends' suites, on a new
SQLAlchemy before widening the range.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy
from sqlalchemy import BindParameter, Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.sql import ClauseElement, Insert, Select, Update
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any] | None
Params = Mapping[str, Any]

#: Dialect events fired per statement (``do_connect`` is not: the pool fires it either way).
_STATEMENT_HOOKS = (
    "do_execute",
    "do_execute_no_params",
    "do_executemany",
    "do_setinputsizes",
    "handle_error",
)


class SqlAlchemyChanged(RuntimeError):
    """The installed SQLAlchemy no longer works as the internals kern-sql reads assume."""


def has_statement_listeners(engine: Engine) -> bool:
    """True if SQLAlchemy would call listeners for statements on ``engine``'s connections.

    Then ``SqlDb`` runs statements through a ``Connection``, so that the listeners see them.
    """
    try:
        # The Connection class's flag exists, and counts, since 2.0.56.
        if engine._has_events or getattr(Connection, "_has_events", False):
            return True
        dialect = engine.dialect
        if not dialect._has_events:
            return False
        dispatch = dialect.dispatch
        return any(getattr(dispatch, hook) for hook in _STATEMENT_HOOKS)
    except AttributeError:  # a flag SQLAlchemy no longer has: see every statement, slower
        return True


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


class _Probe:
    """Stands for a caller's value, to see where SQLAlchemy would bind it."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name} given at call>"


def _check_binding(compiled: Any, names: list[str], by_name: dict[str, BindParameter[Any]]) -> None:
    """Raise ``SqlAlchemyChanged`` unless SQLAlchemy's public ``construct_expanded_state``
    binds the statement as ``names`` and ``by_name`` (read from its internals) say."""
    probes = {name: _Probe(name) for name in names if by_name[name].required}
    ours = [
        (name, probes[name] if name in probes else by_name[name].effective_value) for name in names
    ]
    try:
        state = compiled.construct_expanded_state(probes)
        given = state.parameters
        order = state.positiontup if compiled.positional else list(given)
        theirs = [(name, given.get(name, "<missing>")) for name in order]
        same_sql = state.statement == compiled.string
    except (SQLAlchemyError, AttributeError, TypeError) as exc:
        theirs, same_sql = [("<error>", repr(exc))], False
    if ours != theirs or not same_sql:  # each probe is only equal to itself
        raise SqlAlchemyChanged(
            f"SQLAlchemy {sqlalchemy.__version__} binds {compiled.string!r} as {theirs}, but "
            f"kern-sql, reading SQLCompiler.bind_names / positiontup, would bind {ours}. Those "
            "internals changed: run plugins/kern-sql/tests/test_sqlalchemy_internals.py, then "
            "adapt kern.db.sql.prepared.Prepared._compile or keep SQLAlchemy below this "
            "version (plugins/kern-sql/pyproject.toml)."
        )


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
        # Prepared statements are queries and DML, which the dialect's SQLCompiler compiles
        # (SQLAlchemy types their ``compile()`` so). Its binding internals read below are
        # checked by ``_check_binding`` (see the module docstring).
        compiled = cast(
            SQLCompiler,
            self.statement.compile(
                dialect=dialect, column_keys=list(column_keys) if column_keys else None
            ),
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
        _check_binding(compiled, names, by_name)
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

    def execute_many(self, query: Prepared, rows: Sequence[Params]) -> None:
        """Run a statement that returns no rows once per item of ``rows``, in one driver call
        (``executemany``: SQLite loops in C, psycopg sends them in one pipeline). Every item
        has the same parameter names (an INSERT's form follows them)."""
        if not rows:
            return
        form = query.form(rows[0])
        bound = [form.bind(row) for row in rows]
        if self.observed is not None:
            self.observed.exec_driver_sql(form.sql, bound)  # a list: SQLAlchemy's executemany
            return
        cursor = self.dbapi_connection.cursor()
        try:
            cursor.executemany(form.sql, bound)
        except self.dialect.loaded_dbapi.Error as exc:
            raise self.wrap(exc, form.sql, bound[:1]) from exc
        finally:
            cursor.close()
