"""Scenarios for backends that keep a database in one local file (SQLite, DuckDB).

What their users rely on, whichever engine is underneath: ``db_file="tmp/agents.db"`` works
in a fresh folder (missing parent folders are made), a relative path means the working
directory at construction (not at each use), ``db_url`` takes the relative
(``scheme:///rel/path``) and absolute (``scheme:////abs/path``) forms, and the in-memory
forms (``scheme:///:memory:``, ``scheme://``, ``db_file=":memory:"``) give each db object a
private database that all threads using that object share.

A plugin subclasses ``FileBackendScenarios`` under a name pytest collects and sets::

    class TestSqliteFile(FileBackendScenarios):
        db_class = "kern.db.sqlite:SqliteDb"
        scheme = "sqlite"
        suffix = ".db"
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import pytest

from kern.plugins import resolve
from kern.records import Message, Run, Session

__all__ = ["FileBackendScenarios"]


class FileBackendScenarios:
    #: ``"module:Class"`` of the sync Db class.
    db_class: ClassVar[str]
    #: The URL scheme of ``db_url`` (``sqlite``, ``duckdb``).
    scheme: ClassVar[str]
    #: The file name suffix used by the scenarios (``.db``, ``.duckdb``).
    suffix: ClassVar[str]

    def _open(self, **kwargs: Any) -> Any:
        return resolve(self.db_class)(**kwargs)

    def _holds_session(self, path: Path, session_id: str) -> bool:
        db = self._open(db_file=str(path))
        try:
            return db.get_session(session_id) is not None
        finally:
            db.close()

    def test_db_file_creates_parent_folders(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The product docs' ``db_file="tmp/agent_storage.db"`` works in a fresh folder."""
        monkeypatch.chdir(tmp_path)
        db = self._open(db_file=f"tmp/agent_storage{self.suffix}")
        try:
            db.upsert_session(Session(session_id="s"), expected_version=None)
            path = tmp_path / "tmp" / f"agent_storage{self.suffix}"
            assert path.is_file()
            assert db.db_file == str(path)
            assert repr(db) == f"{type(db).__name__}(db_file={str(path)!r})"
        finally:
            db.close()

    def test_db_file_is_fixed_at_construction(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A relative path means the working directory of construction, not of each use."""
        monkeypatch.chdir(tmp_path)
        db = self._open(db_file=f"a{self.suffix}")
        (tmp_path / "elsewhere").mkdir()
        monkeypatch.chdir(tmp_path / "elsewhere")
        try:
            db.upsert_session(Session(session_id="s"), expected_version=None)
        finally:
            db.close()
        assert self._holds_session(tmp_path / f"a{self.suffix}", "s")
        assert not (tmp_path / "elsewhere" / f"a{self.suffix}").exists()

    @pytest.mark.parametrize("form", ["relative", "absolute"])
    def test_db_url_forms(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str) -> None:
        monkeypatch.chdir(tmp_path)
        if form == "relative":
            url, expected = f"{self.scheme}:///data/rel{self.suffix}", "data/rel"
        else:
            url, expected = f"{self.scheme}:///{tmp_path}/abs/x{self.suffix}", "abs/x"
        path = tmp_path / f"{expected}{self.suffix}"
        db = self._open(db_url=url)
        try:
            db.upsert_session(Session(session_id="s"), expected_version=None)
        finally:
            db.close()
        assert db.db_file == str(path)
        assert self._holds_session(path, "s")

    @pytest.mark.parametrize("form", ["url", "bare url", "db_file"])
    def test_memory_database_is_private_and_shared_across_threads(self, form: str) -> None:
        kwargs = {
            "url": {"db_url": f"{self.scheme}:///:memory:"},
            "bare url": {"db_url": f"{self.scheme}://"},
            "db_file": {"db_file": ":memory:"},
        }[form]
        db, other = self._open(**kwargs), self._open(**kwargs)
        try:
            assert db.db_file == ":memory:"
            db.upsert_session(Session(session_id="s"), expected_version=None)

            def work(i: int) -> tuple[int, bool]:
                question = Message(role="user", content=f"q{i}")
                run = Run(session_id="s", input=question.content, messages=[question])
                seq = db.append_run(run).seq
                assert seq is not None  # append_run assigns it
                return seq, db.get_session("s") is not None

            with ThreadPoolExecutor(max_workers=8) as pool:
                results = list(pool.map(work, range(80)))
            assert sorted(seq for seq, _ in results) == list(range(1, 81))
            assert all(seen for _, seen in results)
            assert [r.seq for r in db.get_last_runs("s", 3)] == [78, 79, 80]
            assert other.get_session("s") is None  # each :memory: object is its own database
        finally:
            db.close()
            other.close()
