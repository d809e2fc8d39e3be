"""The storage contract on one open connection, written once for every SQL database.

Each method does one attempt inside a transaction the caller opened on a ``Link``, so the
sync ``SqlDb`` and a later async twin (``conn.run_sync`` over the same DBAPI-level link)
share it. Every statement is built once, per shape of its filters, and compiled once
(``Prepared``): a call only binds values and reads rows.

Vectors are written with their row, by the same upsert, or on their own by
``set_embeddings``; they are read only by a vector search's candidates. Every other
statement is built on the record tables (``Tables.memories``/``learnings``), which do not
have the vector columns.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from datetime import UTC
from typing import Any, ClassVar

from pydantic import JsonValue, TypeAdapter, ValidationError
from sqlalchemy import (
    BindParameter,
    ClauseElement,
    Dialect,
    LargeBinary,
    Select,
    String,
    Table,
    bindparam,
    func,
    literal,
    or_,
    select,
    true,
)

from kern.db.base import VectorTable
from kern.db.session_search import SCAN, query_words, rank_sessions
from kern.db.sql import fork
from kern.db.sql.codec import learning_from, memory_from, run_from, session_from, to_row
from kern.db.sql.dialect import SqlDialect
from kern.db.sql.prepared import Link, Prepared
from kern.db.sql.retention import SqlRetention
from kern.db.sql.schema import EMBEDDING, EMBEDDING_MODEL, Tables
from kern.db.sql.vectors import KEYS, vector_columns
from kern.errors import (
    RunFinishedError,
    RunNotFoundError,
    UnserializableError,
    VersionConflictError,
)
from kern.records import (
    Embedding,
    Learning,
    LearningStatus,
    Memory,
    Message,
    Run,
    RunStatus,
    ScoredLearning,
    ScoredMemory,
    Session,
    SessionType,
    utcnow,
)
from kern.retention.rules import RetentionBatch, RetentionRule

_JSON = TypeAdapter(JsonValue)
_METRICS = TypeAdapter(dict[str, JsonValue])


def _json(value: Any, what: str, adapter: TypeAdapter[Any] = _JSON) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise UnserializableError(
            f"the run's {what} cannot be stored as JSON ({exc.errors()[0]['msg']}). Pass "
            "strings, numbers, booleans, None, lists and dicts with string keys."
        ) from None


class SqlOps:
    """The contract's operations for one set of tables and one dialect."""

    #: Retention's statements (``kern.db.sql.retention``); a dialect's ops may replace it.
    retention_class: ClassVar[type[SqlRetention]] = SqlRetention

    def __init__(self, tables: Tables, dialect: SqlDialect, sql_dialect: Dialect) -> None:
        self.tables = tables
        self.dialect = dialect
        self._sql_dialect = sql_dialect
        self._shapes: dict[Hashable, Prepared] = {}
        self._retention: SqlRetention | None = None
        p = self._prepare
        s, r, m, lt = tables.sessions, tables.runs, tables.memories, tables.learnings
        sid: BindParameter[str] = bindparam("session_id")

        self._get_session = p(select(s).where(s.c.session_id == sid))
        self._session_stamp = p(select(s.c.version, s.c.created_at).where(s.c.session_id == sid))
        self._create_session = p(dialect.insert_if_absent(s, "session_id"))
        # WHERE binds get their own names: column-named binds are reserved for SET values.
        self._cas_session = p(
            s.update().where(
                s.c.session_id == bindparam("b_session_id"),
                s.c.version == bindparam("b_version"),
            )
        )
        self._touch_session = p(
            s.update()
            .where(s.c.session_id == bindparam("b_session_id"))
            .where(s.c.updated_at < bindparam("b_at"))
            .values(updated_at=bindparam("b_at"))
        )
        self._delete_session_runs = p(r.delete().where(r.c.session_id == sid))
        self._delete_session = p(s.delete().where(s.c.session_id == sid))

        self._insert_run = p(r.insert())
        self._append_at_once = (
            p(_append_statement(tables)) if dialect.one_statement_append else None
        )
        self._get_run = p(select(r).where(r.c.run_id == bindparam("run_id")))
        self._run_status = p(select(r.c.status).where(r.c.run_id == bindparam("run_id")))
        self._finish_run = p(
            r.update().where(
                r.c.run_id == bindparam("b_run_id"), r.c.status == RunStatus.RUNNING.value
            )
        )

        # Upserts write the vector columns too: the row's vector, or NULL (see upsert_memory).
        vm, vl = tables.vectors.memories, tables.vectors.learnings
        self._upsert_memory = p(dialect.upsert(vm, "memory_id", keep=("created_at",)))
        self._memory_created = p(select(m.c.created_at).where(m.c.memory_id == bindparam("id")))
        self._get_memory = p(select(m).where(m.c.memory_id == bindparam("id")))
        self._delete_memory = p(m.delete().where(m.c.memory_id == bindparam("id")))

        self._upsert_learning = p(dialect.upsert(vl, "learning_id", keep=("created_at",)))
        self._learning_created = p(
            select(lt.c.created_at).where(lt.c.learning_id == bindparam("id"))
        )
        self._get_learning = p(select(lt).where(lt.c.learning_id == bindparam("id")))
        self._delete_learning = p(lt.delete().where(lt.c.learning_id == bindparam("id")))

        self._set_vector: dict[VectorTable, Prepared] = {
            "memories": p(_set_vector(vm, KEYS["memories"])),
            "learnings": p(_set_vector(vl, KEYS["learnings"])),
        }

        uid: BindParameter[str] = bindparam("user_id")
        user_sessions = select(s.c.session_id).where(s.c.user_id == uid)
        self._forget: dict[str, list[Prepared]] = {
            "runs": [
                p(r.delete().where(r.c.session_id.in_(user_sessions))),
                p(r.delete().where(r.c.user_id == uid)),
            ],
            # Rows tied to the user's sessions go with them, even if they lack the user_id.
            "learnings": [
                p(lt.delete().where(or_(lt.c.user_id == uid, lt.c.session_id.in_(user_sessions))))
            ],
            "memories": [p(m.delete().where(m.c.user_id == uid))],
            "sessions": [p(s.delete().where(s.c.user_id == uid))],
        }

    def _prepare(self, statement: ClauseElement) -> Prepared:
        return Prepared(statement, self._sql_dialect)

    def _shape(self, key: Hashable, build: Callable[[], ClauseElement]) -> Prepared:
        """The prepared statement for one shape of filters, built the first time it is asked."""
        prepared = self._shapes.get(key)
        if prepared is None:
            prepared = self._shapes[key] = self._prepare(build())
        return prepared

    def _listing(
        self, name: str, table: Any, given: dict[str, Any]
    ) -> tuple[Prepared, dict[str, Any]]:
        """``table`` rows where each given column equals its value, newest first, paged."""
        filters = {k: getattr(v, "value", v) for k, v in given.items() if v is not None}
        columns = tuple(filters)

        def build() -> Select[Any]:
            where = [table.c[c] == bindparam(f"f_{c}") for c in columns]
            return (
                select(table)
                .where(*where)
                .order_by(table.c.updated_at.desc())
                .limit(bindparam("limit"))
                .offset(bindparam("offset"))
            )

        params = {f"f_{c}": v for c, v in filters.items()}
        return self._shape((name, columns), build), params

    # -- sessions ---------------------------------------------------------------------
    def get_session(self, link: Link, session_id: str) -> Session | None:
        row = link.first(self._get_session, {"session_id": session_id})
        return None if row is None else session_from(row)

    def upsert_session(self, link: Link, session: Session, expected_version: int | None) -> Session:
        now = utcnow()
        version = (expected_version or 0) + 1
        row = to_row(session)
        row.update(version=version, updated_at=now)
        sid = session.session_id
        if expected_version is None:
            if link.execute(self._create_session, row) == 1:
                return session.model_copy(update={"version": version, "updated_at": now})
            stamp = link.first(self._session_stamp, {"session_id": sid})
            raise VersionConflictError(sid, None, None if stamp is None else stamp["version"])

        del row["session_id"], row["created_at"]
        row.update(b_session_id=sid, b_version=expected_version)
        if link.execute(self._cas_session, row) == 1:
            stamp = link.first(self._session_stamp, {"session_id": sid})
            assert stamp is not None
            return session.model_copy(
                update={"version": version, "updated_at": now, "created_at": stamp["created_at"]}
            )
        stamp = link.first(self._session_stamp, {"session_id": sid})
        actual = None if stamp is None else stamp["version"]
        raise VersionConflictError(sid, expected_version, actual)

    def list_sessions(
        self,
        link: Link,
        *,
        user_id: str | None,
        component_id: str | None,
        session_type: SessionType | None,
        limit: int,
        offset: int,
    ) -> list[Session]:
        if limit <= 0:
            return []
        given = {"user_id": user_id, "component_id": component_id, "session_type": session_type}
        query, params = self._listing("sessions", self.tables.sessions, given)
        rows = link.all(query, {**params, "limit": limit, "offset": max(offset, 0)})
        return [session_from(row) for row in rows]

    def search_sessions(self, link: Link, user_id: str, query: str, limit: int) -> list[Session]:
        """The user's sessions ranked for ``query`` by the dialect's text search (or, for a
        dialect without one, by ``kern.db.session_search`` over the newest sessions)."""
        if limit <= 0 or not query_words(query):
            return []
        search = self.dialect.session_search
        if search is None:
            newest = self.list_sessions(
                link, user_id=user_id, component_id=None, session_type=None, limit=SCAN, offset=0
            )
            return rank_sessions(newest, query, limit)
        hits = search.search(link, query, {"user_id": user_id}, limit)
        return [session_from(row) for row, _ in hits]

    def delete_session(self, link: Link, session_id: str) -> bool:
        params = {"session_id": session_id}
        link.execute(self._delete_session_runs, params)
        return link.execute(self._delete_session, params) > 0

    # -- forks (``kern.db.sql.fork``) ---------------------------------------------------
    def fork_session(
        self, link: Link, session_id: str, at_seq: int, new_session_id: str
    ) -> Session:
        return fork.fork_session(self, link, session_id, at_seq, new_session_id)[0]

    def last_seq(self, link: Link, session_id: str) -> int:
        """The session's highest seq, 0 without runs."""
        query = self._shape(("last seq",), lambda: fork.last_seq_statement(self.tables.runs))
        return int(link.scalar(query, {"session_id": session_id}) or 0)

    def copy_runs(
        self, link: Link, session_id: str, at_seq: int, new_session_id: str, last_copied: int
    ) -> None:
        """Copy the runs up to ``at_seq`` into the fork, in one statement."""
        runs = self.tables.runs
        query = self._shape(("fork copy",), lambda: fork.copy_statement(runs, runs))
        params = {"session_id": session_id, "at_seq": at_seq, "new_session_id": new_session_id}
        link.execute(query, params)

    # -- retention (``kern.db.sql.retention``) -------------------------------------------
    def retention_batch(
        self, link: Link, rule: RetentionRule, *, limit: int, after: str | None, dry_run: bool
    ) -> RetentionBatch:
        """One batch of ``rule`` in the caller's transaction (a read one for a dry run)."""
        if self._retention is None:  # built on first use: most Dbs never apply retention
            self._retention = self.retention_class(self)
        return self._retention.batch(link, rule, limit=limit, after=after, dry_run=dry_run)

    # -- runs -------------------------------------------------------------------------
    def append_run(self, link: Link, run: Run) -> Run:
        """The seq (``next_seq``, locked where the dialect locks), then the session's
        ``updated_at``, then the run: the session row's lock comes before the run's key, as
        in ``commit_turn`` and the one-statement append, so writers never wait in a cycle."""
        seq = self.dialect.next_seq(link, run.session_id)
        link.execute(self._touch_session, {"b_session_id": run.session_id, "b_at": run.created_at})
        return self.store_run(link, run, seq)

    def append_run_at_once(self, link: Link, run: Run) -> Run:
        """``append_run`` as one statement (``SqlDialect.one_statement_append``): the insert
        at the session's ``max(seq) + 1`` and the session's ``updated_at`` move together.
        Unlocked: a concurrent writer of the session can take the same seq first, which
        raises ``IntegrityError`` on the unique ``(session_id, seq)`` key."""
        assert self._append_at_once is not None
        row = to_row(run, exclude={"messages", "seq"})
        row["messages"] = [m.model_dump(exclude_none=True) for m in run.messages]
        row["b_at"] = run.created_at
        seq = link.scalar(self._append_at_once, row)
        return run.model_copy(update={"seq": int(seq)})

    def store_run(self, link: Link, run: Run, seq: int) -> Run:
        """Insert ``run`` as the session's run ``seq`` (which ``next_seq`` gave); the stored run."""
        row = to_row(run, exclude={"messages"})
        row["seq"] = seq
        # Unset optional message fields are left out: they come back as their defaults.
        row["messages"] = [m.model_dump(exclude_none=True) for m in run.messages]
        link.execute(self._insert_run, row)
        return run.model_copy(update={"seq": seq})

    def commit_turn(
        self, link: Link, run: Run, session: Session, expected_version: int | None
    ) -> tuple[Run, Session]:
        """``upsert_session`` and ``append_run`` in the caller's one transaction.

        The seq comes first: where ``next_seq`` takes a lock (Postgres's per-session
        advisory lock), a turn takes it before the session row's lock, and that before the
        run's key, in the order ``append_run`` takes them (lock, the session's
        ``updated_at``, then the insert), so two writers of a session never wait for each
        other in a cycle. A conflict on the
        session raises before the run is written; the caller's rollback undoes the rest.
        """
        seq = self.dialect.next_seq(link, run.session_id)
        saved = self.upsert_session(link, session, expected_version)
        stored = self.store_run(link, run, seq)
        # The session's updated_at is now; a run stamped later moves it on, as append_run does.
        at = run.created_at if run.created_at.tzinfo else run.created_at.replace(tzinfo=UTC)
        if at > saved.updated_at:
            link.execute(self._touch_session, {"b_session_id": run.session_id, "b_at": at})
            saved = saved.model_copy(update={"updated_at": at.astimezone(UTC)})
        return stored, saved

    def get_run(self, link: Link, run_id: str) -> Run | None:
        row = link.first(self._get_run, {"run_id": run_id})
        return None if row is None else run_from(row)

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
        if limit <= 0:
            return []
        shape = ("last_runs", before_seq is not None, top_level_only, status is not None)
        query = self._shape(shape, lambda: self._history(before_seq, top_level_only, status))
        params = _history_params(session_id, limit, before_seq, status)
        return [run_from(row) for row in reversed(link.all(query, params))]

    def _history(
        self, before_seq: int | None, top_level_only: bool, status: RunStatus | None
    ) -> Select[Any]:
        """The newest runs of a session, newest first through the (session_id, seq) index,
        stopping after ``limit`` (the filters given are bound by ``_history_params``)."""
        r = self.tables.runs
        stmt = select(r).where(r.c.session_id == bindparam("session_id"))
        if before_seq is not None:
            stmt = stmt.where(r.c.seq < bindparam("before_seq"))
        if top_level_only:
            stmt = stmt.where(r.c.parent_run_id.is_(None))
        if status is not None:
            stmt = stmt.where(r.c.status == bindparam("status"))
        return stmt.order_by(r.c.seq.desc()).limit(bindparam("limit"))

    def read_turn(
        self,
        link: Link,
        session_id: str,
        limit: int,
        *,
        top_level_only: bool,
        status: RunStatus | None,
    ) -> tuple[Session | None, list[Run]]:
        """The session row and its last ``limit`` runs in ONE statement (one round trip to
        a server): a one-row anchor, outer-joined to the session's row and to the history
        query. Each row carries the session's columns beside one run's."""
        if limit <= 0:
            return self.get_session(link, session_id), []
        shape = ("read_turn", top_level_only, status is not None)
        query = self._shape(shape, lambda: self._turn_read(top_level_only, status))
        rows = link.all(query, _history_params(session_id, limit, None, status))
        session = None
        if rows and rows[0]["s_session_id"] is not None:
            session = session_from(_columns(rows[0], "s_"))
        runs = [run_from(_columns(row, "r_")) for row in rows if row["r_run_id"] is not None]
        runs.sort(key=lambda run: run.seq or 0)
        return session, runs

    def _turn_read(self, top_level_only: bool, status: RunStatus | None) -> Select[Any]:
        s = self.tables.sessions
        session = select(s).where(s.c.session_id == bindparam("session_id")).subquery("s")
        history = self._history(None, top_level_only, status).subquery("h")
        anchor = select(literal(1).label("one")).subquery("anchor")
        return select(
            *(column.label(f"s_{column.key}") for column in session.c),
            *(column.label(f"r_{column.key}") for column in history.c),
        ).select_from(anchor.outerjoin(session, true()).outerjoin(history, true()))

    def update_run(
        self,
        link: Link,
        run_id: str,
        *,
        status: RunStatus,
        output: object,
        messages: Sequence[object] | None,
        metrics: dict[str, object] | None,
    ) -> Run:
        values: dict[str, Any] = {"status": RunStatus(status).value}
        if output is not None:
            values["output"] = _json(output, "output")
        if messages is not None:
            values["messages"] = [
                Message.model_validate(m).model_dump(exclude_none=True) for m in messages
            ]
        if metrics is not None:
            values["metrics"] = _json(metrics, "metrics", _METRICS)
        values["b_run_id"] = run_id
        if link.execute(self._finish_run, values) == 0:
            current = link.scalar(self._run_status, {"run_id": run_id})
            if current is None:
                raise RunNotFoundError(
                    f"no run {run_id!r} is stored: append_run() it before updating it."
                )
            raise RunFinishedError(
                f"run {run_id!r} is already {current!r}: only a 'running' run can be "
                "updated. Append a new run instead."
            )
        stored = self.get_run(link, run_id)
        assert stored is not None
        return stored

    # -- memories ---------------------------------------------------------------------
    def upsert_memory(
        self, link: Link, memory: Memory, embedding: Embedding | None = None
    ) -> Memory:
        now = utcnow()
        row = to_row(memory)
        row["updated_at"] = now
        row.update(vector_columns(embedding))  # none given: a stored one is cleared
        link.execute(self._upsert_memory, row)
        created = link.scalar(self._memory_created, {"id": memory.memory_id})
        return memory.model_copy(update={"updated_at": now, "created_at": created})

    def get_memory(self, link: Link, memory_id: str) -> Memory | None:
        row = link.first(self._get_memory, {"id": memory_id})
        return None if row is None else memory_from(row)

    def list_memories(
        self, link: Link, user_id: str, *, agent_id: str | None, limit: int, offset: int
    ) -> list[Memory]:
        if limit <= 0:
            return []
        given = {"user_id": user_id, "agent_id": agent_id}
        query, params = self._listing("memories", self.tables.memories, given)
        rows = link.all(query, {**params, "limit": limit, "offset": max(offset, 0)})
        return [memory_from(row) for row in rows]

    def search_memories(
        self, link: Link, user_id: str, query: str, *, agent_id: str | None, limit: int
    ) -> list[ScoredMemory]:
        if limit <= 0:
            return []
        hits = self.dialect.search_memories(
            link, user_id=user_id, query=query, agent_id=agent_id, limit=limit
        )
        return [ScoredMemory(memory=memory_from(row), score=score) for row, score in hits]

    def delete_memory(self, link: Link, memory_id: str) -> bool:
        return link.execute(self._delete_memory, {"id": memory_id}) > 0

    # -- learnings --------------------------------------------------------------------
    def upsert_learning(
        self, link: Link, learning: Learning, embedding: Embedding | None = None
    ) -> Learning:
        now = utcnow()
        row = to_row(learning)
        row["updated_at"] = now
        row.update(vector_columns(embedding))
        link.execute(self._upsert_learning, row)
        created = link.scalar(self._learning_created, {"id": learning.learning_id})
        return learning.model_copy(update={"updated_at": now, "created_at": created})

    def get_learning(self, link: Link, learning_id: str) -> Learning | None:
        row = link.first(self._get_learning, {"id": learning_id})
        return None if row is None else learning_from(row)

    def query_learnings(
        self,
        link: Link,
        *,
        kind: str | None,
        namespace: str | None,
        user_id: str | None,
        session_id: str | None,
        entity_id: str | None,
        status: LearningStatus | None,
        limit: int,
        offset: int,
    ) -> list[Learning]:
        if limit <= 0:
            return []
        given = {
            "kind": kind,
            "namespace": namespace,
            "user_id": user_id,
            "session_id": session_id,
            "entity_id": entity_id,
            "status": status,
        }
        query, params = self._listing("learnings", self.tables.learnings, given)
        rows = link.all(query, {**params, "limit": limit, "offset": max(offset, 0)})
        return [learning_from(row) for row in rows]

    def search_learnings(
        self,
        link: Link,
        query: str,
        *,
        kind: str | None,
        namespace: str | None,
        user_id: str | None,
        status: LearningStatus | None,
        limit: int,
    ) -> list[ScoredLearning]:
        if limit <= 0:
            return []
        hits = self.dialect.search_learnings(
            link,
            query=query,
            kind=kind,
            namespace=namespace,
            user_id=user_id,
            status=status,
            limit=limit,
        )
        return [ScoredLearning(learning=learning_from(row), score=score) for row, score in hits]

    def delete_learning(self, link: Link, learning_id: str) -> bool:
        return link.execute(self._delete_learning, {"id": learning_id}) > 0

    # -- vectors ----------------------------------------------------------------------
    def search_memories_by_vector(
        self, link: Link, user_id: str, embedding: Embedding, *, agent_id: str | None, limit: int
    ) -> list[ScoredMemory]:
        if limit <= 0:
            return []
        filters = {"user_id": user_id, "agent_id": agent_id}
        hits = self.dialect.vector_search(link, "memories", embedding, filters, limit)
        return [ScoredMemory(memory=memory_from(row), score=score) for row, score in hits]

    def search_learnings_by_vector(
        self,
        link: Link,
        embedding: Embedding,
        *,
        kind: str | None,
        namespace: str | None,
        user_id: str | None,
        status: LearningStatus | None,
        limit: int,
    ) -> list[ScoredLearning]:
        if limit <= 0:
            return []
        filters = {"kind": kind, "namespace": namespace, "user_id": user_id, "status": status}
        hits = self.dialect.vector_search(link, "learnings", embedding, filters, limit)
        return [ScoredLearning(learning=learning_from(row), score=score) for row, score in hits]

    def set_embeddings(
        self, link: Link, table: VectorTable, embeddings: Mapping[str, Embedding]
    ) -> int:
        """One UPDATE of the two vector columns per row: ``updated_at`` is not touched."""
        query = self._set_vector[table]
        return sum(
            link.execute(
                query,
                {"b_key": key, "b_model": embedding.model, "b_vector": embedding.as_float32()},
            )
            for key, embedding in embeddings.items()
        )

    def memories_without_embedding(self, link: Link, model: str, *, limit: int) -> list[Memory]:
        if limit <= 0:
            return []
        query = self._shape(("without", "memories"), lambda: self._without("memories", 0))
        return [memory_from(row) for row in link.all(query, {"model": model, "limit": limit})]

    def learnings_without_embedding(
        self, link: Link, model: str, *, kinds: Sequence[str] | None, limit: int
    ) -> list[Learning]:
        wanted = None if kinds is None else list(dict.fromkeys(kinds))
        if limit <= 0 or wanted == []:
            return []
        count = 0 if wanted is None else len(wanted)
        query = self._shape(
            ("without", "learnings", count), lambda: self._without("learnings", count)
        )
        params: dict[str, Any] = {"model": model, "limit": limit}
        params.update({f"k{i}": kind for i, kind in enumerate(wanted or ())})
        return [learning_from(row) for row in link.all(query, params)]

    def _without(self, table: VectorTable, kinds: int) -> Select[Any]:
        """Record columns of ``table``'s rows without a vector by ``:model``, by key, at most
        ``:limit``; with ``kinds`` > 0, only rows whose kind is one of ``:k0``... ."""
        stored = self.tables.vectors.table(table)
        record: Table = getattr(self.tables, table)
        model = stored.c[EMBEDDING_MODEL]
        stmt = select(*(stored.c[c.name] for c in record.c)).where(
            or_(model.is_(None), model != bindparam("model"))
        )
        if kinds:
            stmt = stmt.where(stored.c.kind.in_([bindparam(f"k{i}") for i in range(kinds)]))
        return stmt.order_by(stored.c[KEYS[table]]).limit(bindparam("limit"))

    # -- users ------------------------------------------------------------------------
    def forget_user(self, link: Link, user_id: str) -> dict[str, int]:
        params = {"user_id": user_id}
        deleted = {
            name: sum(link.execute(query, params) for query in queries)
            for name, queries in self._forget.items()
        }
        self.dialect.purge_deleted(link, deleted)
        return deleted


def _set_vector(stored: Table, key: str) -> ClauseElement:
    """``UPDATE <stored> SET embedding_model, embedding WHERE <key> = :b_key``."""
    return (
        stored.update()
        .where(stored.c[key] == bindparam("b_key", type_=String))
        .values(
            {
                EMBEDDING_MODEL: bindparam("b_model", type_=String),
                EMBEDDING: bindparam("b_vector", type_=LargeBinary),
            }
        )
    )


__all__ = ["SqlOps"]


def _history_params(
    session_id: str, limit: int, before_seq: int | None, status: RunStatus | None
) -> dict[str, Any]:
    params: dict[str, Any] = {"session_id": session_id, "limit": limit}
    if before_seq is not None:
        params["before_seq"] = before_seq
    if status is not None:
        params["status"] = RunStatus(status).value
    return params


def _columns(row: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The columns of ``row`` named with ``prefix``, without it (one table's share of a join)."""
    cut = len(prefix)
    return {name[cut:]: value for name, value in row.items() if name.startswith(prefix)}


def _append_statement(tables: Tables) -> ClauseElement:
    """``INSERT ... SELECT <values>, coalesce(max(seq), 0) + 1`` returning the seq, after an
    ``UPDATE`` (a CTE of the same statement) has moved the session's ``updated_at``.

    The insert reads a count of the update's rows, so the update runs first: an append
    takes the session row's lock before its run's key, in the order ``commit_turn`` does
    (session, then run), and two writers never wait for each other in a cycle.
    """
    r, s = tables.runs, tables.sessions
    touched = (
        s.update()
        .where(s.c.session_id == bindparam("session_id"), s.c.updated_at < bindparam("b_at"))
        .values(updated_at=bindparam("b_at"))
        .returning(s.c.session_id)
        .cte("touched")
    )
    after_touch = select(func.count().label("touched")).select_from(touched).subquery("gate")
    columns = [column for column in r.c if column.key != "seq"]
    next_seq = (
        select(func.coalesce(func.max(r.c.seq), 0) + 1)
        .where(r.c.session_id == bindparam("session_id"))
        .scalar_subquery()
    )
    values = [bindparam(column.key, type_=column.type) for column in columns]
    inserted = (
        r.insert()
        .from_select(
            [*(c.key for c in columns), "seq"], select(*values, next_seq).select_from(after_touch)
        )
        .returning(r.c.seq)
        .cte("inserted")
    )
    return select(inserted.c.seq)
