"""``export_records`` / ``import_records`` on one connection, for every SQL database.

Export. Each kind is read by keyset in the order of an index: sessions, memories and
learnings by primary key, runs by their unique ``(session_id, seq)``. A page is one
statement, ``WHERE key > :after ORDER BY key LIMIT :limit + 1`` (a row-value comparison for
runs, which SQLite, Postgres and DuckDB all read through the index); the extra row says
whether anything follows, so the last page already comes without a cursor. The cursor is
the last row's key as JSON headed by its kind (``["runs","<session_id>",7]``): one of
another kind is refused, not misread. ``user_id`` adds the WHERE of ``forget_user``'s
deletes (``SqlOps._forget``), so the pages hold exactly what it would delete. Memories and
learnings are read with their vector columns, which become ``RecordPage.embeddings``;
records are decoded as every read decodes them (``kern.db.sql.codec``).

Import. One transaction (the caller's write) and one bulk write per page: an upsert by
primary key run through ``executemany`` (SQLite loops in C, psycopg pipelines), every
column as given, so ids, seq, version and timestamps stay, and a page without a row's
vector clears the stored one. A dialect with a faster path overrides ``write`` (DuckDB).
Runs are checked first, with a few statements per page (``stored_runs``): a run whose
``(session_id, seq)`` another run holds, or a stored run the page would move to another
seq, raises ``ValueError`` before anything is written. The seq of later appends follows
from the rows (``max(seq) + 1``); search structures follow from the rows too (SQLite's
triggers, Postgres's generated columns).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ARRAY,
    ClauseElement,
    ColumnElement,
    Dialect,
    Integer,
    Select,
    String,
    Table,
    and_,
    bindparam,
    cast,
    func,
    or_,
    select,
    tuple_,
    union_all,
)

from kern.db.sql.codec import learning_from, memory_from, run_from, session_from, to_row
from kern.db.sql.dialect import SqlDialect
from kern.db.sql.prepared import Link, Prepared
from kern.db.sql.schema import EMBEDDING, EMBEDDING_MODEL, Tables
from kern.db.sql.vectors import padded_size, vector_columns
from kern.db.transfer import (
    ID_FIELDS,
    RecordKind,
    RecordPage,
    TransferRecord,
    key_cursor,
    read_key_cursor,
)
from kern.records import Embedding, Run

#: The key each kind is exported in the order of (and its cursor holds).
ORDER_KEYS: dict[RecordKind, tuple[str, ...]] = {
    "sessions": ("session_id",),
    "runs": ("session_id", "seq"),
    "memories": ("memory_id",),
    "learnings": ("learning_id",),
}
#: Runs per statement of the pre-check of an import (3 parameters each: under 999).
CHECK_CHUNK = 256

_DECODERS: dict[RecordKind, Callable[[Mapping[str, Any]], TransferRecord]] = {
    "sessions": session_from,
    "runs": run_from,
    "memories": memory_from,
    "learnings": learning_from,
}


# -- errors ---------------------------------------------------------------------------------
def seq_taken(session_id: str, seq: int, held_by: str, run_id: str) -> ValueError:
    return ValueError(
        f"import_records(): run {run_id!r} cannot be imported at seq {seq} of session "
        f"{session_id!r}: run {held_by!r} holds that seq. A session's seqs are unique; "
        "nothing of this page was written (import into a database without that session, "
        f"or delete run {held_by!r}'s session first)."
    )


def seq_moved(run_id: str, stored: tuple[str, int], given: tuple[str, int]) -> ValueError:
    return ValueError(
        f"import_records(): run {run_id!r} is stored at seq {stored[1]} of session "
        f"{stored[0]!r}, and the page has it at seq {given[1]} of session {given[0]!r}: a "
        "run keeps its seq. Nothing of this page was written."
    )


class SqlTransfer:
    """The two transfer operations for one set of tables and one dialect."""

    def __init__(self, tables: Tables, dialect: SqlDialect, sql_dialect: Dialect) -> None:
        self.tables = tables
        self.dialect = dialect
        self.sql_dialect = sql_dialect
        self._shapes: dict[Hashable, Prepared] = {}

    def _shape(self, key: Hashable, build: Callable[[], ClauseElement]) -> Prepared:
        """The prepared statement of one shape, built the first time it is asked for."""
        prepared = self._shapes.get(key)
        if prepared is None:
            prepared = self._shapes[key] = Prepared(build(), self.sql_dialect)
        return prepared

    def source(self, kind: RecordKind) -> Table:
        """The table a kind is read from: memories and learnings with their vector columns."""
        t = self.tables
        return {
            "sessions": t.sessions,
            "runs": t.runs,
            "memories": t.vectors.memories,
            "learnings": t.vectors.learnings,
        }[kind]

    # -- export ---------------------------------------------------------------------------
    def _owned(self, kind: RecordKind, table: Table) -> ColumnElement[bool]:
        """The rows of ``kind`` that ``forget_user(:user_id)`` deletes."""
        s = self.tables.sessions
        uid = bindparam("user_id", type_=String)
        if kind in ("sessions", "memories"):
            return table.c.user_id == uid
        user_sessions = select(s.c.session_id).where(s.c.user_id == uid)
        return or_(table.c.user_id == uid, table.c.session_id.in_(user_sessions))

    def _page(self, kind: RecordKind, after: bool, user: bool) -> Prepared:
        def build() -> Select[Any]:
            table = self.source(kind)
            keys = [table.c[name] for name in ORDER_KEYS[kind]]
            stmt = select(table)
            if user:
                stmt = stmt.where(self._owned(kind, table))
            if after:
                bound = [bindparam(f"a{i}", type_=key.type) for i, key in enumerate(keys)]
                stmt = stmt.where(
                    keys[0] > bound[0] if len(keys) == 1 else tuple_(*keys) > tuple_(*bound)
                )
            return stmt.order_by(*keys).limit(bindparam("limit"))

        return self._shape(("page", kind, after, user), build)

    def export(
        self,
        link: Link,
        kind: RecordKind,
        *,
        after: str | None,
        limit: int,
        user_id: str | None,
    ) -> RecordPage:
        params: dict[str, Any] = {"limit": limit + 1}
        if after is not None:
            params.update({f"a{i}": v for i, v in enumerate(read_key_cursor(kind, after))})
        if user_id is not None:
            params["user_id"] = user_id
        rows = link.all(self._page(kind, after is not None, user_id is not None), params)
        more = len(rows) > limit
        del rows[limit:]
        decode = _DECODERS[kind]
        records: list[TransferRecord] = []
        embeddings: dict[str, Embedding] = {}
        for row in rows:
            if kind in ("memories", "learnings"):
                model, vector = row.pop(EMBEDDING_MODEL), row.pop(EMBEDDING)
                if model is not None and vector:
                    embeddings[row[ID_FIELDS[kind]]] = Embedding.from_float32(model, bytes(vector))
            records.append(decode(row))
        cursor = None
        if more:
            cursor = key_cursor(kind, [rows[-1][name] for name in ORDER_KEYS[kind]])
        return RecordPage(kind=kind, records=records, embeddings=embeddings, cursor=cursor)

    # -- import ---------------------------------------------------------------------------
    def import_page(self, link: Link, batch: RecordPage) -> int:
        """Write ``batch`` inside the caller's transaction; the number of records in it."""
        kind = batch.kind
        id_field = ID_FIELDS[kind]
        # A row given twice is written once, as given last (as two upserts would leave it).
        records = list({getattr(r, id_field): r for r in batch.records}.values())
        if kind == "runs":
            self.check_runs(link, [r for r in records if isinstance(r, Run)])
        rows = [self.row(kind, record, batch.embeddings) for record in records]
        self.write(link, kind, rows)
        return len(batch.records)

    def row(
        self, kind: RecordKind, record: TransferRecord, embeddings: Mapping[str, Embedding]
    ) -> dict[str, Any]:
        """The stored row of ``record``, as the write methods make it."""
        if isinstance(record, Run):
            row = to_row(record, exclude={"messages"})
            # Unset optional message fields are left out, as append_run stores them.
            row["messages"] = [m.model_dump(exclude_none=True) for m in record.messages]
            return row
        row = to_row(record)
        if kind in ("memories", "learnings"):
            row.update(self.vector_values(embeddings.get(row[ID_FIELDS[kind]])))
        return row

    def vector_values(self, embedding: Embedding | None) -> dict[str, Any]:
        """The vector columns of a row (a dialect with more of them adds them)."""
        return vector_columns(embedding)

    def write(self, link: Link, kind: RecordKind, rows: list[dict[str, Any]]) -> None:
        """Upsert ``rows`` (distinct ids) by primary key, every column as given."""
        table = self.source(kind)
        upsert = self._shape(("upsert", kind), lambda: self.dialect.upsert(table, ID_FIELDS[kind]))
        link.execute_many(upsert, rows)

    def check_runs(self, link: Link, runs: list[Run]) -> None:
        """``ValueError`` if a run of the page would take a seq another run holds (stored or
        in the page), or would move a stored run to another seq."""
        wanted: dict[tuple[str, int], str] = {}
        for run in runs:
            assert run.seq is not None  # checked at the door
            held = wanted.setdefault((run.session_id, run.seq), run.run_id)
            if held != run.run_id:
                raise seq_taken(run.session_id, run.seq, held, run.run_id)
        given = {run_id: place for place, run_id in wanted.items()}
        for stored in self.stored_runs(link, runs):
            run_id, place = stored["run_id"], (stored["session_id"], int(stored["seq"]))
            if run_id in given and given[run_id] != place:
                raise seq_moved(run_id, place, given[run_id])
            holder = wanted.get(place)
            if holder is not None and holder != run_id:
                raise seq_taken(place[0], place[1], run_id, holder)

    def stored_runs(self, link: Link, runs: Sequence[Run]) -> list[dict[str, Any]]:
        """``run_id``, ``session_id`` and ``seq`` of the stored runs that have the id of one
        of ``runs`` or hold its ``(session_id, seq)`` (a row may come twice). Each key is
        looked up through the primary key or the unique index: in one statement of arrays
        where the dialect has ``array_parameters``, else one per ``CHECK_CHUNK`` runs."""
        if self.dialect.array_parameters:
            arrays = {
                "ids": [run.run_id for run in runs],
                "sids": [run.session_id for run in runs],
                "seqs": [run.seq for run in runs],
            }
            return link.all(self._shape("stored runs", self._held_in_arrays), arrays)
        found: list[dict[str, Any]] = []
        for start in range(0, len(runs), CHECK_CHUNK):
            chunk = list(runs[start : start + CHECK_CHUNK])
            size = padded_size(len(chunk))
            chunk += [chunk[-1]] * (size - len(chunk))
            params: dict[str, Any] = {}
            for i, run in enumerate(chunk):
                params.update({f"k{i}": run.run_id, f"s{i}": run.session_id, f"q{i}": run.seq})
            query = self._shape(("stored runs", size), functools.partial(self._held, size))
            found += link.all(query, params)
        return found

    def _held(self, size: int) -> Select[Any]:
        r = self.tables.runs
        by_seq = [
            and_(r.c.session_id == bindparam(f"s{i}"), r.c.seq == bindparam(f"q{i}"))
            for i in range(size)
        ]
        by_id = r.c.run_id.in_([bindparam(f"k{i}") for i in range(size)])
        return select(r.c.run_id, r.c.session_id, r.c.seq).where(or_(by_id, *by_seq))

    def _held_in_arrays(self) -> Select[Any]:
        """``_held`` for ``:ids``, ``:sids`` and ``:seqs`` given as arrays. Two semi-joins,
        not one OR, which Postgres would answer with a scan of the table."""
        r = self.tables.runs
        columns = (r.c.run_id, r.c.session_id, r.c.seq)

        def unnest(name: str, item: Any) -> Any:
            return func.unnest(cast(bindparam(name, type_=ARRAY(item)), ARRAY(item)))

        by_id = select(*columns).where(r.c.run_id.in_(select(unnest("ids", String))))
        places = select(unnest("sids", String), unnest("seqs", Integer))
        by_seq = select(*columns).where(tuple_(r.c.session_id, r.c.seq).in_(places))
        return select(union_all(by_id, by_seq).subquery("stored"))


__all__ = ["ORDER_KEYS", "SqlTransfer", "seq_moved", "seq_taken"]
