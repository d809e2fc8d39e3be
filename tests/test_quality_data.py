"""kern's labelled retrieval-quality set (``benchmarks/data/recall_quality.jsonl``) and its
loader (``benchmarks/quality_data.py``): the set is valid, cannot silently shrink, and keeps
its targets (most questions share no content word with their answer; every user has
distractors)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sqlite3
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULE_PATH = REPO / "benchmarks" / "quality_data.py"
DATA_PATH = REPO / "benchmarks" / "data" / "recall_quality.jsonl"


def _import() -> ModuleType:
    name = "kern_benchmarks_quality_data"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, MODULE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


qd = _import()


def _has_fts5() -> bool:
    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='porter unicode61')")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()


@pytest.fixture(scope="module")
def qs():
    return qd.load()


def test_the_default_path_is_the_set_in_the_repository():
    assert qd.DEFAULT_PATH == DATA_PATH
    assert DATA_PATH.is_file()


def test_the_set_is_valid(qs):
    assert qd.validate(qs) == []


def test_the_set_does_not_shrink(qs):
    assert len(qs.facts) >= 320
    assert len(qs.questions) >= 320
    assert len(qs.users) >= 40
    for user in qs.users:
        assert 6 <= len(qs.facts_by_user.get(user, [])) <= 12, user
        assert qs.questions_by_user.get(user), f"{user} has no questions"


def test_ids_follow_the_documented_scheme(qs):
    for fact in qs.facts:
        assert re.fullmatch(r"u\d{2}", fact.user_id), fact.user_id
        assert re.fullmatch(rf"{fact.user_id}-f\d{{2}}", fact.id), fact.id
    for question in qs.questions:
        assert re.fullmatch(rf"{question.user_id}-q\d{{2}}", question.id), question.id
    every_id = [f.id for f in qs.facts] + [q.id for q in qs.questions]
    assert len(every_id) == len(set(every_id))


def test_answers_exist_and_belong_to_the_asking_user(qs):
    for question in qs.questions:
        assert question.answers, question.id
        for answer in question.answers:
            assert answer in qs.fact_by_id, (question.id, answer)
            assert qs.fact_by_id[answer].user_id == question.user_id, (question.id, answer)


def test_no_empty_text(qs):
    assert all(f.content.strip() for f in qs.facts)
    assert all(q.text.strip() for q in qs.questions)


def test_overlap_flags_are_computed_not_set_by_hand(qs):
    for question in qs.questions:
        assert question.overlap == qd.overlaps(question, qs.answers_of(question)), question.id


def test_at_least_60_percent_of_questions_share_no_content_word(qs):
    none = sum(not q.overlap for q in qs.questions)
    assert none / len(qs.questions) >= 0.60
    assert qs.overlap_share() <= qd.MAX_OVERLAP_SHARE
    # ...and the rest is not empty: lexical search gets its home ground too
    assert sum(q.overlap for q in qs.questions) >= 40


@pytest.mark.skipif(not _has_fts5(), reason="this SQLite has no FTS5")
def test_questions_without_overlap_share_no_porter_stem_either(qs):
    """A real stemmer (SQLite's Porter, as kern's SQLite backend indexes with) must not find
    a shared word that the naive stemming missed."""
    leaks = [
        q.id for q in qs.questions if not q.overlap and qd.porter_overlaps(q, qs.answers_of(q))
    ]
    assert leaks == []


def test_every_user_has_a_lexical_distractor(qs):
    for user in qs.users:
        questions = qs.questions_by_user[user]
        assert any(qs.distractors(q) for q in questions), user


def test_some_questions_need_more_than_one_fact(qs):
    assert sum(len(q.answers) > 1 for q in qs.questions) >= 5


def test_content_words_drop_stopwords_case_and_simple_inflection():
    assert qd.content_words("Does she have any pets?") == {"pet"}
    assert qd.content_words("What is my") == set()
    assert qd.content_words("Dogs DOG dog") == {"dog"}
    assert qd.content_words("walked walking walks") == qd.content_words("walk")
    assert qd.content_words("boxes") == qd.content_words("box")
    assert qd.content_words("running") == qd.content_words("run")
    assert qd.content_words("evenings") == qd.content_words("evening")
    assert qd.content_words("wants") == set()  # the stem of a stopword is one too
    assert qd.content_words("12 km") == {"12", "km"}


def test_overlaps_with_the_examples_of_the_docs():
    beagle = "Maria adopted a beagle named Rufus."
    assert not qd.overlaps("Does she have any pets?", [beagle])
    assert qd.overlaps("What is my dog's name?", [beagle])  # "name" / "named"
    assert not qd.overlaps(
        "What should I cook for her given her diet?", ["Maria stopped eating meat last year."]
    )
    assert qd.overlaps("Any dogs?", ["Maria walks the cat.", "Maria has a dog."])
    assert not qd.overlaps("Any dogs?", [])


def _fact(fid: str, user: str, content: str = "Ana likes tea.") -> object:
    return qd.Fact(fid, user, content)


def test_validate_reports_every_kind_of_problem():
    facts = [
        _fact("u01-f01", "u01"),
        _fact("u01-f01", "u01"),  # duplicate
        _fact("u02-f01", "u02", "  "),  # empty
        _fact("u03-x1", "u03"),  # id not of its user
    ]
    questions = [
        qd.Question("u01-q01", "u01", "What do I drink?", ("u02-f01",), False),  # other user
        qd.Question("u01-q02", "u01", "What do I drink?", ("u01-f09",), False),  # missing
        qd.Question("u01-q03", "u01", "", ("u01-f01",), False),  # empty
        qd.Question("u01-q04", "u01", "Do I like tea?", ("u01-f01",), False),  # wrong flag
        qd.Question("u01-q05", "u01", "Tea?", (), True),  # no answers
    ]
    problems = "\n".join(qd.validate(qd.QualitySet(facts, questions)))
    assert "duplicate id 'u01-f01'" in problems
    assert "u02-f01: empty content" in problems
    assert "u03-x1:" in problems
    assert "belongs to user u02" in problems
    assert "'u01-f09' is not a fact" in problems
    assert "u01-q03: empty text" in problems
    assert "u01-q04: overlap is False" in problems
    assert "u01-q05: no answers" in problems


def test_load_refuses_a_malformed_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "fact", "id": "u01-f01", "user_id": "u01", "content": "x"}\n')
    assert len(qd.load(bad).facts) == 1
    bad.write_text('{"type": "memo", "id": "u01-m01"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        qd.load(bad)
    bad.write_text('{"type": "question", "id": "u01-q01", "user_id": "u01", "text": "x"}\n')
    with pytest.raises(ValueError, match="answers"):
        qd.load(bad)


def test_relabel_recomputes_the_flags(tmp_path):
    copy = tmp_path / "set.jsonl"
    shutil.copy(DATA_PATH, copy)
    rows = [json.loads(line) for line in copy.read_text(encoding="utf-8").splitlines()]
    first = next(r for r in rows if r["type"] == "question")
    first["overlap"] = not first["overlap"]
    copy.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    assert qd.validate(qd.load(copy))
    assert qd.relabel(copy) == 1
    assert qd.validate(qd.load(copy)) == []
    assert copy.read_text(encoding="utf-8") == DATA_PATH.read_text(encoding="utf-8")


def test_main_prints_the_summary_and_succeeds(capsys):
    assert qd.main([]) == 0
    out = capsys.readouterr().out
    assert re.search(r"users \d+, facts \d+, questions \d+", out)
    assert "sharing none" in out
    assert "  u01:" in out
    assert out.rstrip().endswith("valid")
