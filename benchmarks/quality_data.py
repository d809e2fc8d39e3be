"""kern's own labelled retrieval-quality set: memories about users, and questions labelled with
the memories that answer them, to measure how well recall finds the right memory by words
(lexical search) and by meaning (vectors).

    uv run python benchmarks/quality_data.py            # counts, overlap share, validation
    uv run python benchmarks/quality_data.py --relabel  # recompute every "overlap" flag
    uv run python benchmarks/quality_data.py --path benchmarks/data/recall_quality_long.jsonl

Format: ``benchmarks/data/recall_quality.jsonl``, UTF-8 JSON Lines, one object per line, facts
and questions of one user together, facts first::

    {"type": "fact", "id": "u01-f03", "user_id": "u01", "content": "..."}
    {"type": "question", "id": "u01-q05", "user_id": "u01", "text": "...",
     "answers": ["u01-f03"], "overlap": false}

- A *fact* is a memory as the learning machine would store it: one self-contained sentence in
  the third person about the user, by first name ("Maria is allergic to penicillin.").
- A *question* is what that user asks the assistant about themselves, in the first person
  ("Which antibiotic must my doctor avoid prescribing me?"). ``answers`` lists every fact of
  the same user that answers it: one for most questions, two or three when the answer is
  spread over facts ("What hobbies do I have?"). A fact not listed does not answer it, though
  it may be on a related subject. The search is per user: only the asking user's facts are
  candidates.
- ``overlap`` says whether the question shares a content word with its answering fact(s), as
  computed by :func:`overlaps` (lowercased, stopwords of :data:`STOPWORDS` removed, naive
  stemming by :func:`stem`). It is never set by hand: ``--relabel`` recomputes it and the
  validation refuses a file whose flags disagree with the function.

Ids are ``<user>-f<nn>`` for facts and ``<user>-q<nn>`` for questions; users are ``u01``,
``u02``... Every user has 6-12 facts over varied parts of life (family, work, health, diet,
travel, hobbies, pets, money, home, education, technology preferences, schedules).

How it was written: from scratch, for kern (issue 14), as plain sentences about invented
people; nothing is copied or adapted from a public benchmark, data set or any other source.
Most questions were written to share no content word with their answer (paraphrase,
synonyms, hypernyms, indirect questions: "Do I have any pets?" for "Maria adopted a beagle
named Rufus from the shelter in March."), then checked with :func:`overlaps` and rewritten
until well over 60% of all questions share none; the others may share words, which is
lexical search's home ground. Each user also has *distractors*: facts that share a word with
a question without answering it ("dogs" in "Maria is wary of big dogs since a neighbour's
Rottweiler bit her as a child." for "What is my dog's name?"), so ranking matters, not mere
matching (:meth:`QualitySet.distractors`). The questions without overlap were also checked
with SQLite's Porter stemmer, the one kern's SQLite backend indexes with
(:func:`porter_overlaps`), so they share no word under a real stemmer either.

The long set, ``benchmarks/data/recall_quality_long.jsonl`` (:data:`LONG_PATH`), has the same
format and rules with fewer, fuller users: ``l01``... ``l12``, each with 40-50 facts as an
assistant accumulates them over months, many of them alike and differing by a name or a detail
(colleagues, relatives, doctors, clients, trips, code-named projects, dates, amounts, room
numbers), and 30 questions each. About a third of its questions name the person, place or
thing they ask about ("When is the Porto trip?"), so they share a word with their answer and
with its look-alikes; about two fifths share none ("Do I have any pets?"); the rest share a
common word. It was written from scratch like the first set, and checked the same way
(:func:`overlaps`, :func:`porter_overlaps`). :data:`MAX_OVERLAP_SHARE` is a target of the
default set only: the validation applies it to the default file, and to another file only when
given (``--max-overlap-share``).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kern.text import words

DEFAULT_PATH = Path(__file__).resolve().parent / "data" / "recall_quality.jsonl"
#: The long set: 12 users with 40-50 facts each (see above).
LONG_PATH = DEFAULT_PATH.with_name("recall_quality_long.jsonl")

#: The share of questions of the default set that may share a content word with their answer
#: (at most).
MAX_OVERLAP_SHARE = 0.40


_STOPWORDS = """
    a about above after again against all am an and any anything are as at be because been
    before being below between both but by can could did do does doing done down during each
    either else ever every few for from further had has have having he her here hers herself
    him himself his how i if in into is it its itself just let me more most my myself no nor
    not now of off on once only or other our ours ourselves out over own please same she
    should so some something such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what whatever when where
    which while who whom whose why will with would you your yours yourself yourselves
    s t d ll m re ve don doesn didn isn aren wasn weren wouldn shouldn couldn
    hi hello hey thanks thank ok okay yes yeah also tell remind know want like get got
    make go goes going gone really much many us one ones
    user users
"""
#: Words that carry no content: function words, question words and the few generic verbs that
#: kern's own recall query leaves out too (``kern.learn.text.STOPWORDS``). A word counts as a
#: stopword when it, or its stem, is listed ("wants" -> "want").
STOPWORDS = frozenset(_STOPWORDS.split())

#: Doubled letters that stay after a cut suffix ("falling" -> "fall", "dressed" -> "dress";
#: vowels: "seeing" -> "see").
_NO_UNDOUBLE = frozenset("lsfzaeiou")


def stem(word: str) -> str:
    """A naive English stem: strip a plural "es" or "s", then an "ing" or "ed" (each only when
    at least three letters are left), and smooth the cuts so that the forms of a word meet.

    The small fixes on top of the four suffixes: "ies"/"ied" become "y" ("families" ->
    "family"), a word ending in "ss" keeps it ("class"), a doubled final consonant left by
    "ing"/"ed" is undoubled ("running" -> "run"), and a final "e" is dropped ("bake", "baked",
    "baking" -> "bak").

    >>> [stem(w) for w in ("dogs", "classes", "running", "evenings", "baked", "bake")]
    ['dog', 'class', 'run', 'even', 'bak', 'bak']
    >>> [stem(w) for w in ("families", "married", "marry", "fall", "falling")]
    ['family', 'marry', 'marry', 'fall', 'fall']
    """
    w = word.lower()
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif w.endswith("es") and len(w) >= 5:
        w = w[:-2]
    elif w.endswith("s") and not w.endswith("ss") and len(w) >= 4:
        w = w[:-1]
    if len(w) > 4 and w.endswith("ied"):
        w = w[:-3] + "y"
    else:
        for suffix in ("ing", "ed"):
            if w.endswith(suffix) and len(w) - len(suffix) >= 3:
                w = w[: -len(suffix)]
                if w[-1] == w[-2] and w[-1] not in _NO_UNDOUBLE:
                    w = w[:-1]
                break
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return w


def _content_tokens(text: str) -> list[str]:
    """The words of ``text`` that carry content, lowercased and unstemmed."""
    out = []
    for raw in words(text.lower()):
        if len(raw) < 2 and not raw.isdigit():
            continue
        if raw in STOPWORDS or stem(raw) in STOPWORDS:
            continue
        out.append(raw)
    return out


def content_words(text: str) -> set[str]:
    """The stemmed content words of ``text``: lowercased, stopwords and single letters out.

    >>> sorted(content_words("Does she have any pets?"))
    ['pet']
    >>> sorted(content_words("Maria adopted a beagle named Rufus."))
    ['adopt', 'beagl', 'maria', 'nam', 'rufu']
    """
    return {stem(w) for w in _content_tokens(text)}


@dataclass(frozen=True)
class Fact:
    id: str
    user_id: str
    content: str


@dataclass(frozen=True)
class Question:
    id: str
    user_id: str
    text: str
    answers: tuple[str, ...]
    overlap: bool


def _text(item: Question | Fact | str) -> str:
    if isinstance(item, Question):
        return item.text
    if isinstance(item, Fact):
        return item.content
    return item


def overlaps(question: Question | str, facts: Iterable[Fact | str]) -> bool:
    """Whether the question shares at least one content word (:func:`content_words`) with any
    of ``facts`` (its answering facts)."""
    asked = content_words(_text(question))
    return any(asked & content_words(_text(fact)) for fact in facts)


def porter_stems(text: str) -> set[str]:
    """The content words of ``text`` (:data:`STOPWORDS` out) stemmed by SQLite FTS5's Porter
    tokenizer, the one kern's SQLite backend indexes with."""
    tokens = _content_tokens(text)
    if not tokens:
        return set()
    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='porter unicode61')")
        db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'row')")
        db.execute("INSERT INTO t VALUES (?)", (" ".join(tokens),))
        return {row[0] for row in db.execute("SELECT term FROM v")}
    finally:
        db.close()


def porter_overlaps(question: Question | str, facts: Iterable[Fact | str]) -> bool:
    """:func:`overlaps` with SQLite's Porter stemmer instead of :func:`stem` (stricter: it
    also joins "retirement" and "retired"). Needs an SQLite with FTS5."""
    asked = porter_stems(_text(question))
    return any(asked & porter_stems(_text(fact)) for fact in facts)


@dataclass
class QualitySet:
    facts: list[Fact]
    questions: list[Question]
    facts_by_user: dict[str, list[Fact]] = field(init=False)
    questions_by_user: dict[str, list[Question]] = field(init=False)
    fact_by_id: dict[str, Fact] = field(init=False)

    def __post_init__(self) -> None:
        self.facts_by_user = defaultdict(list)
        self.questions_by_user = defaultdict(list)
        for fact in self.facts:
            self.facts_by_user[fact.user_id].append(fact)
        for question in self.questions:
            self.questions_by_user[question.user_id].append(question)
        self.facts_by_user = dict(self.facts_by_user)
        self.questions_by_user = dict(self.questions_by_user)
        self.fact_by_id = {fact.id: fact for fact in self.facts}

    @property
    def users(self) -> list[str]:
        return sorted(set(self.facts_by_user) | set(self.questions_by_user))

    def answers_of(self, question: Question) -> list[Fact]:
        return [self.fact_by_id[a] for a in question.answers if a in self.fact_by_id]

    def overlap_share(self) -> float:
        """The share of questions that share a content word with their answer."""
        if not self.questions:
            return 0.0
        return sum(q.overlap for q in self.questions) / len(self.questions)

    def distractors(self, question: Question) -> list[Fact]:
        """Facts of the question's user that share a content word with it but do not answer
        it: what a lexical search may rank above the answer."""
        asked = content_words(question.text)
        return [
            fact
            for fact in self.facts_by_user.get(question.user_id, [])
            if fact.id not in question.answers and asked & content_words(fact.content)
        ]


def load(path: str | Path | None = None) -> QualitySet:
    """Read the set (``benchmarks/data/recall_quality.jsonl`` by default). Raises ``ValueError``
    for a line that is not a fact or a question of the documented shape."""
    source = Path(path) if path is not None else DEFAULT_PATH
    facts: list[Fact] = []
    questions: list[Question] = []
    with source.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if row["type"] == "fact":
                    facts.append(Fact(str(row["id"]), str(row["user_id"]), str(row["content"])))
                elif row["type"] == "question":
                    answers = row["answers"]
                    if not isinstance(answers, list):
                        raise TypeError("answers must be a list")
                    questions.append(
                        Question(
                            id=str(row["id"]),
                            user_id=str(row["user_id"]),
                            text=str(row["text"]),
                            answers=tuple(str(a) for a in answers),
                            overlap=bool(row["overlap"]),
                        )
                    )
                else:
                    raise ValueError(f"unknown type {row['type']!r}")
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{source}:{number}: {exc!r}") from exc
    return QualitySet(facts, questions)


def validate(qs: QualitySet) -> list[str]:
    """Every problem found (``[]`` for none): duplicate ids, ids not of their user, empty
    texts, answers missing or of another user, overlap flags that disagree with
    :func:`overlaps`."""
    problems: list[str] = []
    ids = Counter([f.id for f in qs.facts] + [q.id for q in qs.questions])
    problems += [f"duplicate id {i!r} ({n} times)" for i, n in sorted(ids.items()) if n > 1]
    for fact in qs.facts:
        if not fact.user_id.strip():
            problems.append(f"{fact.id}: empty user_id")
        if not fact.id.startswith(f"{fact.user_id}-f"):
            problems.append(f"{fact.id}: a fact id of user {fact.user_id} is {fact.user_id}-fNN")
        if not fact.content.strip():
            problems.append(f"{fact.id}: empty content")
    for question in qs.questions:
        where = question.id
        if not question.user_id.strip():
            problems.append(f"{where}: empty user_id")
        if not question.id.startswith(f"{question.user_id}-q"):
            problems.append(f"{where}: a question id of user {question.user_id} is -qNN")
        if not question.text.strip():
            problems.append(f"{where}: empty text")
        if not question.answers:
            problems.append(f"{where}: no answers")
        if len(set(question.answers)) != len(question.answers):
            problems.append(f"{where}: an answer is listed twice")
        for answer in question.answers:
            fact = qs.fact_by_id.get(answer)
            if fact is None:
                problems.append(f"{where}: answer {answer!r} is not a fact")
            elif fact.user_id != question.user_id:
                problems.append(f"{where}: answer {answer!r} belongs to user {fact.user_id}")
        answers = qs.answers_of(question)
        if answers and question.overlap != overlaps(question, answers):
            problems.append(f"{where}: overlap is {question.overlap}, overlaps() says otherwise")
    return problems


def relabel(path: str | Path | None = None) -> int:
    """Recompute every question's ``overlap`` flag with :func:`overlaps`, rewriting the file
    in place (order and everything else kept). Returns how many flags changed."""
    source = Path(path) if path is not None else DEFAULT_PATH
    qs = load(source)
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line]
    changed = 0
    for row in rows:
        if row["type"] == "question":
            flag = overlaps(row["text"], [qs.fact_by_id[a] for a in row["answers"]])
            changed += row["overlap"] != flag
            row["overlap"] = flag
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    source.write_text(text, encoding="utf-8")
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--relabel", action="store_true", help="recompute the overlap flags")
    parser.add_argument(
        "--max-overlap-share",
        type=float,
        default=None,
        help=f"the highest overlap share accepted (default: {MAX_OVERLAP_SHARE:.0%} for the "
        "default set, no limit for another file)",
    )
    args = parser.parse_args(argv)
    limit = args.max_overlap_share
    if limit is None and args.path.resolve() == DEFAULT_PATH:
        limit = MAX_OVERLAP_SHARE
    if args.relabel:
        print(f"relabelled {relabel(args.path)} overlap flag(s)")
    qs = load(args.path)
    shared = sum(q.overlap for q in qs.questions)
    with_distractor = sum(bool(qs.distractors(q)) for q in qs.questions)
    multi = sum(len(q.answers) > 1 for q in qs.questions)
    print(f"{args.path}")
    print(f"users {len(qs.users)}, facts {len(qs.facts)}, questions {len(qs.questions)}")
    print(
        f"questions sharing a content word with their answer: {shared} "
        f"({qs.overlap_share():.1%}); sharing none: {len(qs.questions) - shared} "
        f"({1 - qs.overlap_share():.1%})"
    )
    print(f"questions with more than one answer: {multi}")
    print(f"questions with a lexical distractor (a non-answer sharing a word): {with_distractor}")
    print("per user: facts / questions / questions sharing none / with a distractor")
    for user in qs.users:
        facts = qs.facts_by_user.get(user, [])
        questions = qs.questions_by_user.get(user, [])
        none = sum(not q.overlap for q in questions)
        distracted = sum(bool(qs.distractors(q)) for q in questions)
        print(f"  {user}: {len(facts):2d} / {len(questions):2d} / {none:2d} / {distracted:2d}")
    problems = validate(qs)
    if limit is not None and qs.overlap_share() > limit:
        problems.append(f"overlap share {qs.overlap_share():.1%} > {limit:.0%}")
    for problem in problems:
        print(f"PROBLEM {problem}")
    print("valid" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
