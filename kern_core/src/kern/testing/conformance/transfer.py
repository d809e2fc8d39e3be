"""Moving data: ``export_records`` / ``import_records`` (``kern.db.transfer``) and
``storage_report`` (``kern doctor``).

What a copy between any two backends relies on: an export reads every row of a user once,
in pages whose cursors resume where they stopped; an import writes the rows back exactly
(ids, seq, version, timestamps, vectors), twice as well as once; the next append continues
after the imported seq; text search and vector search find imported rows as they find
written ones; and a batch that would put two runs at one seq is refused.

The scenarios hold in a database shared by every test: each works on a fresh user and
exports with ``user_id``, except one that reads the whole database once and looks only for
its own rows in it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kern.db.transfer import MAX_PAGE, RECORD_KINDS, RecordKind, RecordPage, TransferRecord
from kern.errors import InvalidIdError
from kern.records import (
    Embedding,
    Learning,
    LearningStatus,
    Memory,
    Message,
    Run,
    RunStatus,
    Session,
    SessionType,
    ToolCall,
)
from kern.testing.conformance.base import ScenarioBase, Store
from kern.testing.conformance.common import _uid

__all__ = ["TransferScenarios"]

#: When the scenarios' records were "written": far from now, so a refreshed timestamp shows.
T0 = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _vector(seed: int) -> list[float]:
    return [float((seed * 7 + i * 3) % 11) - 5.0 + 0.25 for i in range(8)]


class _Data:
    """One user's rows of every kind, as a copy must move them."""

    def __init__(self, user: str) -> None:
        self.user = user
        word = user.replace("-", "")
        chat = Session(
            session_id=_uid("s"),
            session_type=SessionType.TEAM,
            component_id="crew",
            user_id=user,
            name="Trip planning",
            state={"step": 3, "ratio": 2.0, "done": False, "tags": ["a", "b"], "nested": {}},
            summary=f"planned a trip with {word}",
            metadata={"source": "import test"},
            version=7,
            created_at=T0,
            updated_at=T0 + timedelta(minutes=5),
        )
        other = Session(session_id=_uid("s"), user_id=user, created_at=T0, updated_at=T0, version=1)
        self.sessions = [chat, other]
        lead = Run(
            run_id=_uid("r"),
            session_id=chat.session_id,
            seq=1,
            component_id="crew",
            user_id=user,
            input="Plan a trip",
            messages=[
                Message(role="user", content="Plan a trip"),
                Message(
                    role="assistant",
                    tool_calls=[ToolCall(id="c1", name="search", arguments='{"q": "Alps"}')],
                ),
                Message(role="tool", tool_call_id="c1", content="3 huts"),
                Message(role="assistant", content="Here is a plan"),
            ],
            output={"answer": "Here is a plan", "score": 0.5},
            metrics={"tokens": 42},
            created_at=T0,
        )
        member = Run(
            run_id=_uid("r"),
            session_id=chat.session_id,
            seq=2,
            parent_run_id=lead.run_id,
            component_id="researcher",
            user_id=user,
            status=RunStatus.ERROR,
            input={"task": "find huts"},
            created_at=T0 + timedelta(seconds=1),
        )
        later = [
            Run(
                run_id=_uid("r"),
                session_id=chat.session_id,
                seq=seq,
                user_id=user,
                input=f"turn {seq}",
                output=f"answer {seq}",
                created_at=T0 + timedelta(seconds=seq),
            )
            for seq in (3, 4, 5)
        ]
        solo = Run(
            run_id=_uid("r"), session_id=other.session_id, seq=1, user_id=user, created_at=T0
        )
        self.runs = [lead, member, *later, solo]
        self.memories = [
            Memory(
                memory_id=_uid("m"),
                user_id=user,
                agent_id="crew",
                content=f"{word} loves alpine huts",
                topics=["travel"],
                source_run_id=lead.run_id,
                created_at=T0,
                updated_at=T0 + timedelta(hours=1),
            ),
            Memory(
                memory_id=_uid("m"),
                user_id=user,
                content="Vegetarian",
                created_at=T0,
                updated_at=T0,
            ),
            Memory(
                memory_id=_uid("m"),
                user_id=user,
                content="Lives in Lyon",
                created_at=T0,
                updated_at=T0,
            ),
        ]
        self.learnings = [
            Learning(
                learning_id=_uid("l"),
                kind="user_profile",
                namespace="user",
                user_id=user,
                content={"name": "Ada", "languages": ["fr", "en"]},
                created_at=T0,
                updated_at=T0,
            ),
            Learning(
                learning_id=_uid("l"),
                kind="user_memory",
                namespace="user",
                user_id=user,
                content={"memory": f"{word} proposes rail travel"},
                status=LearningStatus.PROPOSED,
                source_run_id=lead.run_id,
                created_at=T0,
                updated_at=T0,
            ),
            # Tied to the user by its session only: forget_user deletes it, so the export
            # by user carries it too.
            Learning(
                learning_id=_uid("l"),
                kind="session_context",
                namespace="session",
                session_id=chat.session_id,
                content={"summary": "trip planning"},
                created_at=T0,
                updated_at=T0,
            ),
        ]
        self.embeddings = {
            "memories": {
                self.memories[0].memory_id: Embedding(model=f"m-{word}", vector=_vector(1))
            },
            "learnings": {
                self.learnings[1].learning_id: Embedding(model=f"m-{word}", vector=_vector(2))
            },
        }

    def records(self, kind: RecordKind) -> list[Any]:
        return list(getattr(self, kind))

    def page(self, kind: RecordKind) -> RecordPage:
        return RecordPage(
            kind=kind, records=self.records(kind), embeddings=dict(self.embeddings.get(kind, {}))
        )


def _key(kind: RecordKind, record: TransferRecord) -> str:
    if isinstance(record, Run):
        return f"{record.session_id}/{record.seq:09d}"
    return str(
        getattr(
            record,
            {"sessions": "session_id", "memories": "memory_id", "learnings": "learning_id"}[kind],
        )
    )


def _sorted(kind: RecordKind, records: list[Any]) -> list[Any]:
    return sorted(records, key=lambda record: _key(kind, record))


class TransferScenarios(ScenarioBase):
    """``export_records`` / ``import_records`` / ``storage_report``."""

    async def _export_all(
        self, store: Store, kind: RecordKind, *, user_id: str | None, limit: int
    ) -> tuple[list[Any], dict[str, Embedding], int]:
        """Every page of an export: the records, their vectors and the number of pages."""
        records: list[Any] = []
        embeddings: dict[str, Embedding] = {}
        after: str | None = None
        pages = 0
        while True:
            page = await store.export_records(kind, after=after, limit=limit, user_id=user_id)
            pages += 1
            assert page.kind == kind
            assert len(page.records) <= limit, f"a page of {len(page.records)} rows > {limit}"
            records.extend(page.records)
            embeddings.update(page.embeddings)
            if page.cursor is None:
                return records, embeddings, pages
            assert page.cursor != after, "the cursor did not move"
            assert pages < 10_000, "the export never ended"
            after = page.cursor

    async def _import_data(self, store: Store, data: _Data) -> None:
        for kind in RECORD_KINDS:
            assert await store.import_records(data.page(kind)) == len(data.records(kind))

    async def _assert_stored(self, store: Store, data: _Data) -> None:
        """Every row of ``data`` stored exactly as given, vectors included."""
        for session in data.sessions:
            assert await store.get_session(session.session_id) == session
        for run in data.runs:
            assert await store.get_run(run.run_id) == run
        for memory in data.memories:
            assert await store.get_memory(memory.memory_id) == memory
        for learning in data.learnings:
            assert await store.get_learning(learning.learning_id) == learning
        for kind in ("memories", "learnings"):
            for row_id, embedding in data.embeddings[kind].items():
                if kind == "memories":
                    hits = await store.search_memories_by_vector(data.user, embedding, limit=1)
                    found = [hit.memory.memory_id for hit in hits]
                else:
                    hits_l = await store.search_learnings_by_vector(
                        embedding, user_id=data.user, status=None, limit=1
                    )
                    found = [hit.learning.learning_id for hit in hits_l]
                assert found == [row_id], f"the imported vector of {row_id} is not searchable"

    async def test_import_stores_records_exactly_and_export_reads_them_back(
        self, store: Store
    ) -> None:
        data = _Data(_uid("u"))
        await self._import_data(store, data)
        await self._assert_stored(store, data)

        for kind in RECORD_KINDS:
            records, embeddings, _ = await self._export_all(
                store, kind, user_id=data.user, limit=MAX_PAGE
            )
            assert _sorted(kind, records) == _sorted(kind, data.records(kind)), kind
            assert embeddings == data.embeddings.get(kind, {}), kind

    async def test_export_pages_resume_from_their_cursor(self, store: Store) -> None:
        data = _Data(_uid("u"))
        await self._import_data(store, data)
        for kind in RECORD_KINDS:
            whole, _, _ = await self._export_all(store, kind, user_id=data.user, limit=MAX_PAGE)
            for limit in (1, 2):
                paged, _, pages = await self._export_all(
                    store, kind, user_id=data.user, limit=limit
                )
                assert paged == whole, f"{kind} in pages of {limit} differ from one page"
                assert pages >= len(whole) // limit
            # Resuming from the cursor of the first page gives exactly the rest.
            first = await store.export_records(kind, limit=1, user_id=data.user)
            assert first.cursor is not None
            rest = await store.export_records(
                kind, after=first.cursor, limit=MAX_PAGE, user_id=data.user
            )
            assert [*first.records, *rest.records] == whole

    async def test_runs_export_in_seq_order_within_a_session(self, store: Store) -> None:
        data = _Data(_uid("u"))
        await self._import_data(store, data)
        runs, _, _ = await self._export_all(store, "runs", user_id=data.user, limit=2)
        by_session: dict[str, list[int]] = {}
        for run in runs:
            by_session.setdefault(run.session_id, []).append(run.seq)
        assert all(seqs == sorted(seqs) for seqs in by_session.values()), by_session

    async def test_export_by_user_keeps_only_what_forget_user_deletes(self, store: Store) -> None:
        mine, theirs = _Data(_uid("u")), _Data(_uid("u"))
        await self._import_data(store, mine)
        await self._import_data(store, theirs)
        for kind in RECORD_KINDS:
            records, _, _ = await self._export_all(store, kind, user_id=mine.user, limit=3)
            assert {_key(kind, r) for r in records} == {
                _key(kind, r) for r in mine.records(kind)
            }, kind

        removed = await store.forget_user(mine.user)
        assert removed["runs"] == len(mine.runs)
        for kind in RECORD_KINDS:
            page = await store.export_records(kind, user_id=mine.user)
            assert (list(page.records), page.cursor) == ([], None), kind

    async def test_export_of_the_whole_database_holds_every_row_once(self, store: Store) -> None:
        data = _Data(_uid("u"))
        await self._import_data(store, data)
        for kind in RECORD_KINDS:
            records, embeddings, _ = await self._export_all(
                store, kind, user_id=None, limit=MAX_PAGE
            )
            keys = [_key(kind, r) for r in records]
            assert len(keys) == len(set(keys)), f"{kind}: a row exported twice"
            wanted = {_key(kind, r) for r in data.records(kind)}
            assert wanted <= set(keys), f"{kind}: rows missing from the export"
            for row_id, embedding in data.embeddings.get(kind, {}).items():
                assert embeddings[row_id] == embedding

    async def test_import_twice_changes_nothing_and_appends_continue(self, store: Store) -> None:
        data = _Data(_uid("u"))
        await self._import_data(store, data)
        await self._import_data(store, data)
        await self._assert_stored(store, data)
        chat = data.sessions[0]
        runs = await store.get_last_runs(chat.session_id, 100)
        assert [run.seq for run in runs] == [1, 2, 3, 4, 5]

        appended = await store.append_run(Run(session_id=chat.session_id, input="next"))
        assert appended.seq == 6
        run, session = await store.commit_turn(
            Run(session_id=chat.session_id, input="and next"),
            chat.model_copy(update={"state": {"step": 4}}),
            expected_version=chat.version,
        )
        assert (run.seq, session.version) == (7, chat.version + 1)

    async def test_import_replaces_a_stored_row_with_the_imported_one(self, store: Store) -> None:
        data = _Data(_uid("u"))
        await self._import_data(store, data)
        changed = data.memories[0].model_copy(update={"content": "moved to Geneva"})
        unvectored = data.learnings[1].model_copy(update={"status": LearningStatus.ACTIVE})
        await store.import_records(RecordPage(kind="memories", records=[changed]))
        await store.import_records(RecordPage(kind="learnings", records=[unvectored]))

        assert await store.get_memory(changed.memory_id) == changed
        assert await store.get_learning(unvectored.learning_id) == unvectored
        page = await store.export_records("memories", user_id=data.user)
        assert changed.memory_id not in page.embeddings, "the vector of the old row was kept"
        word_hits = await store.search_memories(data.user, "Geneva")
        assert [hit.memory.memory_id for hit in word_hits][:1] == [changed.memory_id]

    async def test_imported_memories_are_found_by_text_search(self, store: Store) -> None:
        data = _Data(_uid("u"))
        await self._import_data(store, data)
        hits = await store.search_memories(data.user, "alpine huts")
        assert [hit.memory.memory_id for hit in hits][:1] == [data.memories[0].memory_id]

    async def test_import_refuses_a_run_at_a_seq_another_run_holds(self, store: Store) -> None:
        data = _Data(_uid("u"))
        await self._import_data(store, data)
        chat = data.sessions[0]
        intruder = Run(session_id=chat.session_id, seq=2, input="another run at seq 2")
        with pytest.raises(ValueError) as refused:
            await store.import_records(RecordPage(kind="runs", records=[intruder]))
        assert "seq" in str(refused.value) and chat.session_id in str(refused.value)
        assert await store.get_run(intruder.run_id) is None
        assert await store.get_run(data.runs[1].run_id) == data.runs[1]

    async def test_import_refuses_to_move_a_stored_run_to_another_seq(self, store: Store) -> None:
        data = _Data(_uid("u"))
        await self._import_data(store, data)
        stored = data.runs[4]  # seq 5 of the first session
        moved = stored.model_copy(update={"seq": 9})
        with pytest.raises(ValueError) as refused:
            await store.import_records(RecordPage(kind="runs", records=[moved]))
        assert stored.run_id in str(refused.value)
        assert await store.get_run(stored.run_id) == stored
        runs = await store.get_last_runs(stored.session_id, 10)
        assert [run.seq for run in runs] == [1, 2, 3, 4, 5]

    async def test_import_checks_the_batch_at_the_door(self, store: Store) -> None:
        user = _uid("u")
        session = Session(user_id=user)
        with pytest.raises(ValueError, match="seq"):
            await store.import_records(
                RecordPage(kind="runs", records=[Run(session_id=session.session_id)])
            )
        with pytest.raises(TypeError, match="Session"):
            await store.import_records(
                RecordPage(kind="sessions", records=[Memory(user_id=user, content="x")])
            )
        with pytest.raises(InvalidIdError):
            await store.import_records(
                RecordPage(kind="sessions", records=[Session(session_id="bad\x00id")])
            )
        with pytest.raises(ValueError, match="record_kind"):
            await store.export_records("tables")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="limit"):
            await store.export_records("runs", limit=0)
        assert await store.list_sessions(user_id=user) == []

    async def test_storage_report_after_create_tables_is_healthy(self, store: Store) -> None:
        await store.create_tables()
        report = await store.storage_report()
        assert report.backend
        assert report.schema_versions, "a report must say which schema versions are applied"
        assert report.missing == [], report.missing
        assert report.pending_migrations == {}, report.pending_migrations
        assert report.healthy
