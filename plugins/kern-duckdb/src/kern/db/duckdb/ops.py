"""The shared operations, with what DuckDB's tables add (see ``kern.db.duckdb.schema``).

Runs are written with their ``seq_key`` and read back by key; the counter row of a session
goes with it; every memory and learning write keeps the search term tables in step, in the
same transaction; vectors are written to ``embedding_array`` (``kern.db.duckdb.vectors``).
Everything else is ``kern.db.sql.ops.SqlOps`` as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Dialect, Select, String, bindparam, cast, select

from kern.db.base import VectorTable
from kern.db.duckdb.dialect import DuckDialect
from kern.db.duckdb.lookup import MAX_KEYS, InLookup, fenced
from kern.db.duckdb.retention import DuckRetention
from kern.db.duckdb.schema import READ_INDEXES, seq_key
from kern.db.duckdb.vectors import set_vector, vector_values
from kern.db.sql.codec import run_from, to_row
from kern.db.sql.fork import copy_statement
from kern.db.sql.ops import SqlOps
from kern.db.sql.prepared import Link, Prepared
from kern.db.sql.schema import Tables
from kern.db.sql.vectors import KEYS
from kern.records import Embedding, Learning, Memory, Run, RunStatus, Session, utcnow


class DuckOps(SqlOps):
    """``SqlOps`` for DuckDB."""

    dialect: DuckDialect
    #: Retention's reads as DuckDB answers them (``kern.db.duckdb.retention``).
    retention_class = DuckRetention

    def __init__(self, tables: Tables, dialect: DuckDialect, sql_dialect: Dialect) -> None:
        super().__init__(tables, dialect, sql_dialect)
        duck = dialect.duck
        counters, s = duck.counters, tables.sessions
        p = self._prepare
        self._insert_keyed_run = p(duck.runs.insert())
        logical = [column.name for column in tables.runs.c]
        self._runs_by_key = InLookup(p, duck.runs, "seq_key", logical)
        self._drop_counter = p(
            counters.delete().where(counters.c.session_id == bindparam("session_id"))
        )
        user_sessions = select(s.c.session_id).where(s.c.user_id == bindparam("user_id"))
        self._forget_counters = p(counters.delete().where(counters.c.session_id.in_(user_sessions)))
        # The shared upserts and set_embeddings, on the tables with ``embedding_array``.
        vm, vl = duck.vectors.memories, duck.vectors.learnings
        self._upsert_memory = p(dialect.upsert(vm, "memory_id", keep=("created_at",)))
        self._upsert_learning = p(dialect.upsert(vl, "learning_id", keep=("created_at",)))
        self._set_vector = {
            "memories": p(set_vector(vm, KEYS["memories"])),
            "learnings": p(set_vector(vl, KEYS["learnings"])),
        }

    # -- listings -----------------------------------------------------------------------
    def _listing(
        self, name: str, table: Any, given: dict[str, Any]
    ) -> tuple[Prepared, dict[str, Any]]:
        """Newest first, paged, the matching rows looked up through one index.

        DuckDB answers ``ORDER BY ... LIMIT`` with a top-N over a table scan, and reads
        through an index only for a scan's single condition. So the most selective indexed
        filter looks the rows up (``lookup.fenced``) and the other filters, the order and
        the page apply to those. Without an indexed filter (every session, or sessions of
        one type) the shared top-N statement is as good as any.
        """
        filters = {k: getattr(v, "value", v) for k, v in given.items() if v is not None}
        columns = tuple(filters)
        indexed = [c for c in READ_INDEXES.get(name, ()) if c in filters]
        if not indexed:
            return super()._listing(name, table, given)
        key = indexed[0]

        def build() -> Select[Any]:
            rows = fenced(table, table.c[key] == bindparam(f"f_{key}"))
            where = [rows.c[c] == bindparam(f"f_{c}") for c in columns if c != key]
            return (
                select(rows)
                .where(*where)
                .order_by(rows.c.updated_at.desc())
                .limit(bindparam("limit"))
                .offset(bindparam("offset"))
            )

        params = {f"f_{c}": v for c, v in filters.items()}
        return self._shape((name, "by index", columns), build), params

    # -- runs -------------------------------------------------------------------------
    def store_run(self, link: Link, run: Run, seq: int) -> Run:
        row = to_row(run, exclude={"messages"})
        row["seq"] = seq
        row["seq_key"] = seq_key(run.session_id, seq)
        # Unset optional message fields are left out: they come back as their defaults.
        row["messages"] = [m.model_dump(exclude_none=True) for m in run.messages]
        link.execute(self._insert_keyed_run, row)
        return run.model_copy(update={"seq": seq})

    def read_turn(
        self,
        link: Link,
        session_id: str,
        limit: int,
        *,
        top_level_only: bool,
        status: RunStatus | None,
    ) -> tuple[Session | None, list[Run]]:
        """The session, then the runs by key (DuckDB reads through an index only for a
        scan's single condition, so the shared joined statement would scan): one
        connection lease, in-process, so no round trip is added."""
        session = self.get_session(link, session_id)
        runs = self.get_last_runs(
            link, session_id, limit, before_seq=None, top_level_only=top_level_only, status=status
        )
        return session, runs

    def get_last_runs(
        self,
        link: Link,
        session_id: str,
        limit: int,
        *,
        before_seq: int | None,
        top_level_only: bool,
        status: RunStatus | None,
    ) -> list[Run]:
        """The newest runs by key, window by window backwards from the session's last seq.

        Without gaps (``forget_user`` may leave some) one lookup of ``limit`` keys answers.
        ``top_level_only`` and ``status`` are checked here on the rows looked up, which
        costs DuckDB less than a second condition in the statement (that would need a
        fenced lookup, see ``kern.db.duckdb.lookup``); when they skip runs, the next window
        back is twice as wide.
        """
        if limit <= 0:
            return []
        last = self.dialect.last_seq(link, session_id)
        if last is None:
            return []
        high = last if before_seq is None else min(last, before_seq - 1)
        wanted = None if status is None else RunStatus(status).value

        def keep(row: dict[str, Any]) -> bool:
            if top_level_only and row["parent_run_id"] is not None:
                return False
            return wanted is None or row["status"] == wanted

        newest: list[dict[str, Any]] = []
        window = limit
        while high >= 1 and len(newest) < limit:
            low = max(1, high - window + 1)
            keys = [seq_key(session_id, seq) for seq in range(high, low - 1, -1)]
            rows = [row for row in self._runs_by_key.rows(link, keys) if keep(row)]
            newest.extend(sorted(rows, key=lambda row: row["seq"], reverse=True))
            high = low - 1
            window = min(window * 2, MAX_KEYS)
        return [run_from(row) for row in reversed(newest[:limit])]

    # -- forks: the copy writes ``seq_key`` and the fork's counter row ------------------
    def last_seq(self, link: Link, session_id: str) -> int:
        return self.dialect.last_seq(link, session_id) or 0

    def copy_runs(
        self, link: Link, session_id: str, at_seq: int, new_session_id: str, last_copied: int
    ) -> None:
        """One ``INSERT ... SELECT`` (``kern.db.sql.fork``), then the counter row, so the
        fork's next run takes ``last_copied + 1``. DuckDB filters the session's runs with
        a columnar scan of ``kern_runs`` (its indexes serve single-key lookups only)."""
        duck = self.dialect.duck

        def keyed(r: Any, new_sid: Any) -> dict[str, Any]:
            return {"seq_key": new_sid + "/" + cast(r.c.seq, String)}

        copy = self._shape(
            ("fork copy",), lambda: copy_statement(self.tables.runs, duck.runs, keyed)
        )
        params = {"session_id": session_id, "at_seq": at_seq, "new_session_id": new_session_id}
        link.execute(copy, params)
        counter = self._shape(("fork counter",), lambda: duck.counters.insert())
        link.execute(counter, {"session_id": new_session_id, "last_seq": last_copied})

    # -- sessions ---------------------------------------------------------------------
    def delete_session(self, link: Link, session_id: str) -> bool:
        link.execute(self._drop_counter, {"session_id": session_id})
        return super().delete_session(link, session_id)

    # -- memories and learnings: the term tables follow every write --------------------
    # (``SqlOps``'s upserts, with DuckDB's vector columns: see ``vector_values``.)
    def upsert_memory(
        self, link: Link, memory: Memory, embedding: Embedding | None = None
    ) -> Memory:
        now = utcnow()
        row = {**to_row(memory), "updated_at": now, **vector_values(embedding)}
        link.execute(self._upsert_memory, row)
        created = link.scalar(self._memory_created, {"id": memory.memory_id})
        stored = memory.model_copy(update={"updated_at": now, "created_at": created})
        self.dialect.memory_terms.index(link, stored)
        return stored

    def delete_memory(self, link: Link, memory_id: str) -> bool:
        self.dialect.memory_terms.drop(link, memory_id)
        return super().delete_memory(link, memory_id)

    def upsert_learning(
        self, link: Link, learning: Learning, embedding: Embedding | None = None
    ) -> Learning:
        now = utcnow()
        row = {**to_row(learning), "updated_at": now, **vector_values(embedding)}
        link.execute(self._upsert_learning, row)
        created = link.scalar(self._learning_created, {"id": learning.learning_id})
        stored = learning.model_copy(update={"updated_at": now, "created_at": created})
        self.dialect.learning_terms.index(link, stored)
        return stored

    def delete_learning(self, link: Link, learning_id: str) -> bool:
        self.dialect.learning_terms.drop(link, learning_id)
        return super().delete_learning(link, learning_id)

    def set_embeddings(
        self, link: Link, table: VectorTable, embeddings: Mapping[str, Embedding]
    ) -> int:
        """One UPDATE of the vector columns per row: ``updated_at`` is not touched."""
        query = self._set_vector[table]
        return sum(
            link.execute(
                query,
                {"b_key": key, "b_model": e.model, "b_blob": e.as_float32(), "b_vector": e.vector},
            )
            for key, e in embeddings.items()
        )

    # -- users ------------------------------------------------------------------------
    def forget_user(self, link: Link, user_id: str) -> dict[str, int]:
        # Before the shared deletes: these find their rows through the user's sessions.
        self.dialect.memory_terms.forget(link, user_id)
        self.dialect.learning_terms.forget(link, user_id)
        link.execute(self._forget_counters, {"user_id": user_id})
        return super().forget_user(link, user_id)


__all__ = ["DuckOps"]
