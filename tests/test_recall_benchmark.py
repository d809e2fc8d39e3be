"""The recall-latency benchmark (``benchmarks/recall.py``, ``nox -s recall``) at tiny sizes, so
that it cannot rot: both modes run end to end on SQLite, and its synthetic embedder and
query-vector lookup behave as the figures assume."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULE_PATH = REPO / "benchmarks" / "recall.py"


def _import() -> ModuleType:
    name = "kern_benchmarks_recall"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, MODULE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


recall = _import()

TINY = ["--users", "4", "--per-user", "6", "--single", "30", "--queries", "6"]


def test_hash_vectors_are_deterministic_unit_vectors_near_for_shared_words() -> None:
    embedder = recall.HashEmbedder()
    a, b, c, same = embedder.embed(["kalo mine ru", "kalo mine sate", "zubo gahi", "kalo mine ru"])
    assert len(a) == embedder.dimensions == 256
    assert a == same
    assert math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-9)

    def cosine(x: list[float], y: list[float]) -> float:
        return sum(p * q for p, q in zip(x, y, strict=True))

    assert cosine(a, b) > cosine(a, c)
    assert embedder.embed([""]) == [[0.0] * 256]


def test_known_vectors_answer_without_asking_the_embedder_again() -> None:
    calls: list[list[str]] = []

    class Counting(recall.HashEmbedder):
        def embed(self, texts):  # type: ignore[no-untyped-def]
            calls.append(list(texts))
            return super().embed(texts)

    inner = Counting()
    known = recall.KnownVectors(inner, ["one query", "another query"])
    assert (known.id, known.dimensions) == (inner.id, inner.dimensions)
    calls.clear()
    assert known.embed(["another query"]) == inner.embed(["another query"])[:1]
    assert calls == [["another query"]]  # only the check above asked the embedder
    known.embed(["a new one"])
    assert calls[-1] == ["a new one"]


def test_questions_are_distinct_and_of_the_given_users() -> None:
    text = recall.Text(2_000, 1.0, 100)
    asked = recall.questions(["u1", "u2"], 40, text, seed=3)
    assert len(asked) == 40
    assert len({query for _, query in asked}) == 40
    assert {user for user, _ in asked} <= {"u1", "u2"}


def test_a_tiny_run_with_vectors_on_sqlite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "recall.json"
    code = recall.main(
        [
            "--backends",
            "sqlite",
            *TINY,
            "--single-queries",
            "4",
            "--embedder",
            "hash",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert data["failed"] == {}
    (result,) = data["results"]
    assert result["backend"] == "sqlite"
    assert result["vector_index"]  # "exact" unless the Db names its vector index
    shapes = result["shapes"]
    assert set(shapes) == {"spread", "single"}
    assert (shapes["spread"]["users"], shapes["spread"]["memories"]) == (4, 24)
    assert (shapes["single"]["users"], shapes["single"]["memories"]) == (1, 30)
    for shape in shapes.values():
        assert set(shape["figures"]) == set(recall.STEPS)
        for figure in shape["figures"].values():
            assert 0 < figure["median"] <= figure["p95"]
        assert shape["embed_s"] >= 0 and shape["store_s"] > 0
    printed = capsys.readouterr().out
    assert "| sqlite | spread |" in printed and "| sqlite | single |" in printed


def test_every_memory_is_stored_with_its_vector(tmp_path: Path) -> None:
    from kern.db.sqlite import SqliteDb

    db = SqliteDb(db_file=tmp_path / "load.db")
    try:
        embedder = recall.HashEmbedder()
        text = recall.Text(2_000, 1.0, 100)
        shape = recall.load(db, embedder, ["a", "b"], 7, text, threads=2, log=lambda _: None)
        assert shape.memories == 14
        assert len(db.list_memories("a")) == len(db.list_memories("b")) == 7
        assert db.memories_without_embedding(embedder.id) == []
        (hit,) = db.search_memories_by_vector(
            "a", recall.Embedding(model=embedder.id, vector=embedder.embed(["x"])[0]), limit=1
        )
        assert hit.memory.user_id == "a"
    finally:
        db.close()


def test_the_lexical_figures_still_run_on_a_database_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'lexical.db'}"
    assert recall.main(["--db", url, *TINY]) == 0
    printed = capsys.readouterr().out
    for shape in ("spread", "single"):
        assert f"{shape:<8} search+profile" in printed
        assert f"{shape:<8} recall " in printed
