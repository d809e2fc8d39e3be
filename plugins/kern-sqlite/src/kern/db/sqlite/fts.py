"""Ranked text search on SQLite with FTS5.

Each searchable table gets an external-content FTS5 table that stores only the index, not
a second copy of the text: ``kern_learnings_fts`` over the JSON ``content``, and
``kern_memories_fts`` over ``content`` and ``topics`` plus a ``user_key`` column (below),
read from the view ``kern_memories_fts_source``. Triggers on the base table keep the index
in step with every insert, update and delete, whoever writes (``forget_user`` included);
upserts use ``ON CONFLICT DO UPDATE``, which fires them (``INSERT OR REPLACE`` would not).
Results are ranked with ``bm25`` and joined back to the base table by rowid, where the
``user_id`` and other filters apply, so another user's rows are never returned.

Why a user key: a memory search is always for one user, but the words of a query match
rows of every user, and FTS5 would read and rank them all before the join drops them.
Each memory's index entry therefore holds one token naming its user (``k<hex of
user_id>0``: only letters and digits, so it is one token, and the final digit keeps the
porter stemmer off it), and the search asks for ``user_key:"<token>" AND {content
topics}:(<words>)``: FTS5 then reads only that user's postings. The token is computed in
SQL (``hex()``) by the triggers and by the query alike, so both always agree; the
``user_id`` filter of the join stays, so correctness never rests on the token. bm25 gives
the key column weight 0, so scores are those of the words alone.

User text never reaches FTS5's query syntax: it is cut into word tokens, each quoted as a
string, joined with ``OR`` (bm25 ranks the rows that match more and rarer words first).

Forgetting. FTS5 does not remove a deleted row's words from its index segments: a delete
adds a marker, and the words stay in ``*_fts_data`` / ``*_fts_idx`` until a merge of every
segment drops them. Where the runtime SQLite is 3.44 or newer, both indexes run with FTS5's
``secure-delete`` option (set at start-up, ``fts_expectations``): a delete then rewrites the
index pages without the row's words, at once, for ``delete_memory`` and ``delete_learning``
too. Such an index can no longer be opened by an SQLite older than 3.42. On an older SQLite,
``forget_user`` merges the index of each table it deleted from into one segment
(``'optimize'``), which leaves none of the forgotten words behind
(``SqliteDialect.purge_deleted``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import (
    ColumnClause,
    ColumnElement,
    Connection,
    Select,
    String,
    Table,
    bindparam,
    column,
    func,
    literal,
    literal_column,
    select,
    table,
)
from sqlalchemy.exc import DBAPIError

from kern.db.sql.dialect import Scored
from kern.db.sql.migrations import Migration, Plan
from kern.db.sql.prepared import Link, Prepared
from kern.db.sql.schema import Tables
from kern.db.sql.search import query_terms
from kern.db.sql.verify import Expectations, Expected
from kern.errors import ConfigurationError

#: Porter stemming over Unicode words, accents folded: "prefers" finds "preferred", "cafe"
#: finds "café".
TOKENIZE = "porter unicode61 remove_diacritics 2"
#: The FTS column that holds each row's user token.
USER_KEY = "user_key"


def match_expression(text: str) -> str | None:
    """``text`` as a safe FTS5 query: quoted word tokens joined by OR, or None if no words."""
    terms = query_terms(text)
    if not terms:
        return None
    return " OR ".join(f'"{term}"' for term in terms)  # \w+ tokens hold no quote to escape


def user_token_sql(user_id: str) -> str:
    """The SQL that computes the user token from ``user_id`` (SQL too: a column, a ``?``)."""
    return f"'k' || hex({user_id}) || '0'"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class FtsSpec:
    """One FTS table: its base table, its columns, and where their values come from.

    ``source`` is the content table FTS5 reads (the base table, or a view over it),
    ``values`` the SQL of each FTS column over a trigger's row (``{row}`` is ``new`` or
    ``old``) and ``watched`` the base columns whose update changes the index.
    """

    base: str
    columns: tuple[str, ...]
    source: str
    values: tuple[str, ...]
    watched: tuple[str, ...]
    #: The update trigger fires only when a watched column's value changed (sessions: a
    #: state write sets every column, and leaves name and summary as they were).
    changed_only: bool = False

    @property
    def name(self) -> str:
        return f"{self.base}_fts"

    def row(self, alias: str) -> str:
        return ", ".join(value.format(row=alias) for value in self.values)


def plain_spec(base: str, columns: Sequence[str]) -> FtsSpec:
    """An index of ``columns``, read straight from ``base``."""
    values = tuple(f"{{row}}.{c}" for c in columns)
    return FtsSpec(base, tuple(columns), base, values, tuple(columns))


def keyed_spec(base: str, columns: Sequence[str]) -> FtsSpec:
    """An index of ``columns`` after the ``user_key`` column, read from a view over ``base``."""
    values = (user_token_sql("{row}.user_id"), *(f"{{row}}.{c}" for c in columns))
    watched = ("user_id", *columns)
    return FtsSpec(base, (USER_KEY, *columns), f"{base}_fts_source", values, watched)


def source_view_ddl(spec: FtsSpec) -> list[str]:
    """The view a keyed index reads its columns from (for 'rebuild' and 'integrity-check')."""
    if spec.source == spec.base:
        return []
    columns = ", ".join(
        f"{value.format(row=_q(spec.base))} AS {name}"
        for name, value in zip(spec.columns, spec.values, strict=True)
    )
    return [
        f"CREATE VIEW IF NOT EXISTS {_q(spec.source)} AS SELECT rowid AS rowid, {columns} "
        f"FROM {_q(spec.base)}"
    ]


def fts_ddl(spec: FtsSpec) -> list[str]:
    """The FTS table of ``spec``, its source view if any, three triggers, and a first fill."""
    fts, base = spec.name, spec.base
    cols = ", ".join(spec.columns)
    add = f"INSERT INTO {_q(fts)}(rowid, {cols}) VALUES (new.rowid, {spec.row('new')});"
    remove = (
        f"INSERT INTO {_q(fts)}({_q(fts)}, rowid, {cols}) "
        f"VALUES ('delete', old.rowid, {spec.row('old')});"
    )
    watched = ", ".join(spec.watched)
    when = ""
    if spec.changed_only:
        when = "WHEN " + " OR ".join(f"old.{c} IS NOT new.{c}" for c in spec.watched) + " "
    return [
        *source_view_ddl(spec),
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {_q(fts)} USING fts5({cols}, "
        f"content='{spec.source}', content_rowid='rowid', tokenize='{TOKENIZE}')",
        f"CREATE TRIGGER IF NOT EXISTS {_q(fts + '_ai')} AFTER INSERT ON {_q(base)} "
        f"BEGIN {add} END",
        f"CREATE TRIGGER IF NOT EXISTS {_q(fts + '_ad')} AFTER DELETE ON {_q(base)} "
        f"BEGIN {remove} END",
        f"CREATE TRIGGER IF NOT EXISTS {_q(fts + '_au')} AFTER UPDATE OF {watched} "
        f"ON {_q(base)} {when}BEGIN {remove} {add} END",
        # Index rows written before the FTS table existed (a no-op on a new database).
        f"INSERT INTO {_q(fts)}({_q(fts)}) VALUES ('rebuild')",
    ]


def drop_ddl(spec: FtsSpec) -> list[str]:
    """Remove the FTS table of ``spec`` and its triggers (its shadow tables go with it)."""
    fts = spec.name
    triggers = [f"DROP TRIGGER IF EXISTS {_q(fts + suffix)}" for suffix in ("_ai", "_ad", "_au")]
    return [*triggers, f"DROP TABLE IF EXISTS {_q(fts)}"]


def _run(statements: list[str]) -> Callable[[Connection], None]:
    def apply(conn: Connection) -> None:
        for sql in statements:
            conn.exec_driver_sql(sql)

    return apply


MEMORY_COLUMNS = ("content", "topics")
LEARNING_COLUMNS = ("content",)
#: What ``search_sessions`` reads: a session's name and its rolling summary.
SESSION_COLUMNS = ("name", "summary")


def fts_plan(tables: Tables) -> Plan:
    """Migrations of the two FTS tables, versioned under their own names.

    Version 2 of the memories' index rebuilds it with the user key (see the module
    docstring): a database of version 1 is re-indexed once, under the migration lock.
    """
    memories, learnings = tables.memories.name, tables.learnings.name
    old, keyed = plain_spec(memories, MEMORY_COLUMNS), keyed_spec(memories, MEMORY_COLUMNS)
    return {
        old.name: [
            Migration(1, f"FTS5 index of {memories}", _run(fts_ddl(old))),
            Migration(
                2, f"FTS5 index of {memories} keyed by user", _run(drop_ddl(old) + fts_ddl(keyed))
            ),
        ],
        f"{learnings}_fts": [
            Migration(
                1,
                f"FTS5 index of {learnings}",
                _run(fts_ddl(plain_spec(learnings, LEARNING_COLUMNS))),
            )
        ],
        # Sessions searched by name and summary (kern.past_sessions), keyed by user like the
        # memories; a database made before it gets the index with its sessions in it.
        f"{tables.sessions.name}_fts": [
            Migration(
                1,
                f"FTS5 index of {tables.sessions.name} keyed by user",
                _run(fts_ddl(session_spec(tables))),
            )
        ],
    }


def session_spec(tables: Tables) -> FtsSpec:
    """The sessions' index: name and summary, after the user key; updated only when one of
    them (or the user) changed, not on every state write."""
    return replace(keyed_spec(tables.sessions.name, SESSION_COLUMNS), changed_only=True)


def all_fts_specs(tables: Tables) -> tuple[FtsSpec, ...]:
    """Every index kern keeps: the memories', the learnings' and the sessions'."""
    return (*fts_specs(tables), session_spec(tables))


#: The FTS5 option that removes a deleted row's words from the index at once.
SECURE_DELETE = "secure-delete"
#: SQLite versions from which kern turns it on (available since 3.42; 3.44 is the first
#: release with its fixes).
SECURE_DELETE_SINCE = (3, 44, 0)
#: The shadow tables of an external-content FTS5 table (no ``_content``: the base holds it).
SHADOW_TABLES = ("data", "idx", "docsize", "config")
TRIGGERS = ("ai", "ad", "au")


def fts_specs(tables: Tables) -> tuple[FtsSpec, FtsSpec]:
    """The current specs of the two indexes: memories keyed by user, learnings plain."""
    return (
        keyed_spec(tables.memories.name, MEMORY_COLUMNS),
        plain_spec(tables.learnings.name, LEARNING_COLUMNS),
    )


def setting_name(spec: FtsSpec) -> str:
    """The pseudo-object naming "secure-delete is on" for ``spec``'s index."""
    return f"{spec.name}:{SECURE_DELETE}"


def fts_objects(spec: FtsSpec, *, secure_delete: bool) -> tuple[str, ...]:
    """What the index of ``spec`` is made of: the table, its shadow tables, its triggers,
    its source view (keyed index), and its secure-delete setting where kern uses it."""
    fts = spec.name
    objects = [
        fts,
        *(f"{fts}_{shadow}" for shadow in SHADOW_TABLES),
        *(f"{fts}_{trigger}" for trigger in TRIGGERS),
    ]
    if spec.source != spec.base:
        objects.append(spec.source)
    if secure_delete:
        objects.append(setting_name(spec))
    return tuple(objects)


def secure_delete_ddl(spec: FtsSpec) -> list[str]:
    """Turn secure-delete on, and merge the index once: that drops the words of rows
    deleted before it was on."""
    fts = _q(spec.name)
    return [f"INSERT INTO {fts}({fts}, rank) VALUES ('{SECURE_DELETE}', 1)", optimize_ddl(spec)]


def secure_delete_on(conn: Connection, spec: FtsSpec) -> bool:
    """True if the index of ``spec`` has secure-delete on (its ``_config`` row says so)."""
    config = _q(f"{spec.name}_config")
    row = conn.exec_driver_sql(f"SELECT v FROM {config} WHERE k = '{SECURE_DELETE}'").first()
    return row is not None and str(row[0]) == "1"


def fts_expectations(tables: Tables, *, secure_delete: bool) -> Expectations:
    """The two indexes as the start-up check sees them (``kern.db.sql.verify``).

    A missing piece (the FTS table dropped, a shadow table or trigger gone) is restored by
    building that index again from its base table: drop what is left, create, 'rebuild'.
    """

    def restore_for(spec: FtsSpec) -> Callable[[Connection, frozenset[str]], None]:
        def restore(conn: Connection, missing: frozenset[str]) -> None:
            if missing - {setting_name(spec)}:
                try:
                    _run(drop_ddl(spec))(conn)
                except DBAPIError as exc:
                    raise damaged_index(spec, missing, conn, exc) from exc
                _run(fts_ddl(spec))(conn)
            if secure_delete:
                _run(secure_delete_ddl(spec))(conn)

        return restore

    return {
        spec.name: Expected(fts_objects(spec, secure_delete=secure_delete), restore_for(spec))
        for spec in all_fts_specs(tables)
    }


def damaged_index(
    spec: FtsSpec, missing: frozenset[str], conn: Connection, exc: DBAPIError
) -> ConfigurationError:
    """The error for an index SQLite can neither open nor drop (a shadow table is gone)."""
    fts = spec.name
    where = conn.engine.url.database or "the database file"
    return ConfigurationError(
        f"the SQLite full-text index {fts} in {where} is damaged: "
        f"{', '.join(sorted(missing))} missing (dropped by hand?), and SQLite cannot open the "
        f"index to drop and rebuild it ({exc.orig}). To repair it, stop every program using "
        f"the file, then in the sqlite3 shell run: PRAGMA writable_schema = ON; DELETE FROM "
        f"sqlite_master WHERE name = '{fts}'; PRAGMA writable_schema = OFF; and, in a new "
        f"session, DROP TABLE each table named {fts}_... that is left. kern rebuilds the index "
        f"from {spec.base} the next time it opens the file; no stored row is lost."
    )


def optimize_ddl(spec: FtsSpec) -> str:
    """Merge every segment of the index into one: deleted rows' words are left out."""
    fts = _q(spec.name)
    return f"INSERT INTO {fts}({fts}) VALUES ('optimize')"


class FtsIndex:
    """Ranked queries over one base table through its FTS table.

    With ``key_columns`` (the FTS columns after the user key, for a keyed index) and a
    ``user_id`` filter, the match is narrowed to that user's postings inside FTS5.
    """

    def __init__(
        self,
        base: Table,
        prepare: Callable[[Select[Any]], Prepared],
        *,
        key_columns: Sequence[str] = (),
    ) -> None:
        self.base = base
        self._prepare = prepare
        self._key_columns = tuple(key_columns)
        name = f"{base.name}_fts"
        fts = table(name, column("rowid"))
        self._fts_ref: ColumnClause[Any] = literal_column(_q(name))
        # A keyed index weighs its key column 0: the user token adds nothing to a score.
        weights: list[ColumnClause[Any]] = [
            literal_column(w) for w in ("0.0", *("1.0" for _ in key_columns))
        ]
        self._rank = func.bm25(self._fts_ref, *(weights if key_columns else ()))
        rowid: ColumnClause[Any] = literal_column(f"{_q(base.name)}.rowid")
        self._from = fts.join(base, rowid == fts.c.rowid)
        self._cache: dict[tuple[str, ...], Prepared] = {}

    def _match(self, filters: tuple[str, ...]) -> ColumnElement[Any]:
        """The MATCH operand: the words, behind the user key when there is one to use."""
        words: ColumnElement[Any] = bindparam("match", type_=String)
        if not self._key_columns:
            return words
        columns = " ".join(self._key_columns)
        words = literal(f"{{{columns}}}:(", String) + words + literal(")", String)
        if "user_id" not in filters:
            return words
        token = func.hex(bindparam("user_id", type_=String))
        key = literal(f'{USER_KEY}:"k', String) + token + literal('0" AND ', String)
        return key + words

    def statement(self, filters: tuple[str, ...]) -> Prepared:
        """The ranked query with ``base.<name> = :<name>`` for each name in ``filters``."""
        prepared = self._cache.get(filters)
        if prepared is None:
            where: list[ColumnElement[bool]] = [self._fts_ref.op("MATCH")(self._match(filters))]
            # ``+column``: SQLite's way to say "no index for this term". Without it, SQLite
            # 3.51's planner may drive the join from the base table's user_id index and run
            # the MATCH once per row of that user (measured: 0.9 s for a user with 10,000
            # memories, against 3 ms when the FTS index drives, as 3.40 plans it). The key
            # token already narrows the match to the user; these terms are the backstop.
            table_name = _q(self.base.name)
            where += [
                literal_column(f"+{table_name}.{_q(name)}", type_=self.base.c[name].type)
                == bindparam(name)
                for name in filters
            ]
            stmt = (
                select(*self.base.c, (-self._rank).label("_score"))
                .select_from(self._from)
                .where(*where)
                .order_by(self._rank)
                .limit(bindparam("limit"))
            )
            prepared = self._cache[filters] = self._prepare(stmt)
        return prepared

    def search(self, link: Link, text: str, filters: dict[str, Any], limit: int) -> list[Scored]:
        match = match_expression(text)
        if match is None or limit <= 0:
            return []
        given = {k: getattr(v, "value", v) for k, v in filters.items() if v is not None}
        query = self.statement(tuple(sorted(given)))
        hits: list[Scored] = []
        for row in link.all(query, {**given, "match": match, "limit": limit}):
            score = float(row.pop("_score"))
            hits.append((row, score))
        return hits
