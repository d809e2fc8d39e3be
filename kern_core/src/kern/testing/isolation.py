"""Ids, stored text and user isolation: the conformance cases of the storage contract's door.

``IsolationScenarios`` is a mixin of the conformance suite's scenarios
(``kern.testing.conformance``): every ``async def test_*`` here runs, like the others, against
``store`` in the sync and the async suite of every backend. It holds each backend to what
``kern.db.door`` and ``kern.ids`` promise:

- **The injection table.** Every id-taking contract method, and every id field of the
  records written through it, refuses ``None`` (where an id is required), an ``int``, a dict
  such as ``{"$ne": None}``, a list, ``""``, NUL, a lone surrogate, a 1 MB string and a
  256-character string with ``InvalidIdError``; a victim user's data stays exactly as it was.
- **Ids are data, never syntax.** ``"*"``, ``"{}"``, ``"$ne"``, ``"' OR '1'='1"``, ``"%"``...
  used as another user's id reach none of the victim's rows, and work as ordinary ids.
- **Isolation.** Ids that nearly match the victim's (case, Unicode normalisation, white
  space, a prefix, the percent-quoted form) never read, delete or forget the victim's rows.
- **Stored text.** NUL and lone surrogates in any stored text are refused with
  ``InvalidTextError`` and nothing is written; any other Unicode round-trips exactly.
- **forget_user leaves nothing.** Checked on the backend's raw storage, through the test
  class's ``raw_scan(db)`` hook (see ``kern.testing.conformance``, subclass contract).

Some of these cases use fixed ids (``"*"``, ``"%"``...) rather than fresh ones; they delete
what they store under those ids before they end.
"""

from __future__ import annotations

import functools
import inspect
import json
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from kern.errors import InvalidIdError, InvalidTextError
from kern.records import (
    Learning,
    LearningStatus,
    Memory,
    Message,
    Run,
    RunStatus,
    Session,
    ToolCall,
)
from kern.testing.capabilities import requires

if TYPE_CHECKING:  # at run time, a cycle: kern.testing.conformance imports this module
    from kern.testing.conformance.base import Store

__all__ = [
    "BAD_IDS",
    "BAD_TEXTS",
    "ODD_TEXTS",
    "SYNTAX_IDS",
    "IsolationScenarios",
]

#: ``(label, value)``: ids the door refuses wherever an id goes.
BAD_IDS: tuple[tuple[str, Any], ...] = (
    ("None", None),
    ("int 1", 1),
    ("True", True),
    ("float 1.0", 1.0),
    ("bytes", b"victim"),
    ('dict {"$ne": None}', {"$ne": None}),
    ('dict {"$gt": ""}', {"$gt": ""}),
    ('list ["a"]', ["a"]),
    ("empty string", ""),
    ("NUL", "a\x00b"),
    ("lone surrogate", "\ud800"),
    ("1 MB string", "x" * 1_000_000),
    ("256 characters", "x" * 256),
)

#: Ids that look like syntax somewhere (SQL, LIKE, FTS, Mongo operators, Redis hash tags
#: and glob patterns, paths, regexes). Each is an ordinary id, matched exactly.
SYNTAX_IDS: tuple[str, ...] = (
    "*",
    "{}",
    "{victim}",
    "$ne",
    "$where",
    "' OR '1'='1",
    '"; DROP TABLE sessions; --',
    "%",
    "_",
    "victim*",
    "victim%",
    "[a-z]*",
    ".*",
    "a:b",
    "\\",
    "..",
    "../x",
    " ",
    "null",
    "ü-ser",
    "x" * 255,
    "ü" * 255,
    "🦜" * 255,
)

#: Text kern refuses to store, on every backend alike.
BAD_TEXTS: tuple[tuple[str, str], ...] = (
    ("NUL", "a\x00b"),
    ("lone surrogate", "x\ud800"),
    ("lone low surrogate", "\udfff tail"),
)

#: Text that must round-trip exactly: everything but NUL and lone surrogates is stored.
ODD_TEXTS: tuple[str, ...] = (
    "emoji 🦜 and a ZWJ sequence 👩‍💻",
    "ü Zürich Größe",
    "مرحبا بالعالم",  # right to left
    "שלום \u202eRTL override\u202c",
    "line\u2028separator\u2029paragraph",
    "e\u0301 combining, \u00e9 composed",
    "\ufeffbyte order mark, \u200bzero width",
    "astral \U0001d518\U0001d52b\U0001d526 \U0010ffff",
    "tab\tnewline\ncarriage\r",
    "controls \x01\x1f\x7f",
    '\\ backslash " quote \\u0000 escaped, not a NUL',
    "\ufffd replacement \uffff",
)

#: The counts ``forget_user`` reports, by logical table.
_TABLES = ("sessions", "runs", "memories", "learnings")


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _short(value: object, limit: int = 70) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _counts(counts: dict[str, int]) -> dict[str, int]:
    return {table: counts.get(table, 0) for table in _TABLES}


# -- a victim's data ---------------------------------------------------------------------


@dataclass
class _Victim:
    """What one user stored: a session with runs, a memory, a learning."""

    user: str
    session: Session
    runs: list[Run]
    memory: Memory
    learning: Learning


async def _plant_victim(store: Store, user: str) -> _Victim:
    sid = _uid("victim-session")
    await store.upsert_session(
        Session(
            session_id=sid,
            user_id=user,
            component_id=_uid("agent"),
            name="victim's chat",
            state={"secret": "pistachio"},
        ),
        expected_version=None,
    )
    runs = [
        await store.append_run(
            Run(
                session_id=sid,
                user_id=user,
                component_id="assistant",
                input=f"question {i}",
                messages=[Message(role="user", content=f"my secret is pistachio {i}")],
                output=f"answer {i}",
            )
        )
        for i in range(2)
    ]
    session = await store.get_session(sid)
    assert session is not None
    memory = await store.upsert_memory(
        Memory(
            user_id=user,
            agent_id="assistant",
            content="The victim's secret: pistachio ice cream",
            topics=["secret"],
        )
    )
    learning = await store.upsert_learning(
        Learning(
            kind=_uid("kind"),
            namespace="user",
            user_id=user,
            session_id=sid,
            entity_id=_uid("entity"),
            content={"secret": "pistachio recipe"},
        )
    )
    return _Victim(user, session, runs, memory, learning)


async def _assert_intact(store: Store, victim: _Victim, after: str) -> None:
    """Every row of the victim reads back exactly as it was stored."""
    sid = victim.session.session_id
    where = f"the victim's data changed after {after}"
    assert await store.get_session(sid) == victim.session, where
    assert await store.get_last_runs(sid, 10) == victim.runs, where
    for run in victim.runs:
        assert await store.get_run(run.run_id) == run, where
    assert await store.get_memory(victim.memory.memory_id) == victim.memory, where
    assert await store.list_memories(victim.user) == [victim.memory], where
    found = await store.search_memories(victim.user, "pistachio")
    assert [hit.memory.memory_id for hit in found] == [victim.memory.memory_id], where
    assert await store.get_learning(victim.learning.learning_id) == victim.learning, where
    assert await store.query_learnings(user_id=victim.user) == [victim.learning], where
    assert await store.list_sessions(user_id=victim.user) == [victim.session], where


async def _assert_sees_only_its_own(store: Store, other: str, victim: _Victim) -> None:
    """``other`` used as an id anywhere reaches only rows stored under ``other`` itself."""
    who = f"id {other!r} (the victim is {victim.user!r})"

    def own(records: Iterable[Any], field: str) -> None:
        records = list(records)
        strangers = [r for r in records if getattr(r, field) != other]
        assert not strangers, f"{who} returned rows of another {field}: {strangers}"

    own(await store.list_memories(other), "user_id")
    own(await store.list_memories(other, agent_id="assistant"), "user_id")
    own((h.memory for h in await store.search_memories(other, "pistachio secret")), "user_id")
    own(await store.list_sessions(user_id=other, limit=1000), "user_id")
    own(await store.list_sessions(component_id=other, limit=1000), "component_id")
    own(await store.query_learnings(user_id=other), "user_id")
    for field in ("kind", "namespace", "session_id", "entity_id"):
        by_field: dict[str, Any] = {field: other}  # a filter named at run time
        own(await store.query_learnings(**by_field), field)
    for field in ("user_id", "kind", "namespace"):
        by_field = {field: other}
        hits = await store.search_learnings("pistachio recipe", **by_field, status=None)
        own((hit.learning for hit in hits), field)
    own(await store.get_last_runs(other, 100), "session_id")
    for getter, field in (
        (store.get_session, "session_id"),
        (store.get_run, "run_id"),
        (store.get_memory, "memory_id"),
        (store.get_learning, "learning_id"),
    ):
        found = await getter(other)
        own([] if found is None else [found], field)
    ranked, newest = await store.recall_memories(other, "pistachio secret")
    own([*(hit.memory for hit in ranked), *newest], "user_id")


async def _assert_takes_nothing(store: Store, other: str, victim: _Victim) -> None:
    """Deleting or forgetting ``other`` (which stores nothing) deletes nothing."""
    who = f"id {other!r} (the victim is {victim.user!r})"
    counts = await store.forget_user(other)
    assert _counts(counts) == dict.fromkeys(_TABLES, 0), f"forget_user({who}) -> {counts}"
    for name in ("delete_session", "delete_memory", "delete_learning"):
        deleted = await getattr(store, name)(other)
        assert deleted is False, f"{name}({who}) -> {deleted!r}"
    await _assert_intact(store, victim, f"forget_user/delete_*({other!r})")


# -- the injection table -----------------------------------------------------------------

#: ``(what, the argument the error must name, None allowed, call(bad id) -> awaitable)``
IdCall = tuple[str, str, bool, Callable[[Any], Awaitable[Any]]]


def _id_calls(store: Store, victim: _Victim) -> list[IdCall]:
    """Every id the contract takes, each as a call that passes ``bad`` there and sane values
    everywhere else (aimed at the victim, so that a call that got through would show)."""
    v = victim
    sid = v.session.session_id
    rid = v.runs[0].run_id
    calls: list[IdCall] = [
        ("get_session(bad)", "session_id", False, lambda b: store.get_session(b)),
        ("delete_session(bad)", "session_id", False, lambda b: store.delete_session(b)),
        ("get_run(bad)", "run_id", False, lambda b: store.get_run(b)),
        ("get_last_runs(bad, 10)", "session_id", False, lambda b: store.get_last_runs(b, 10)),
        (
            "update_run(bad, status=completed)",
            "run_id",
            False,
            lambda b: store.update_run(b, status=RunStatus.COMPLETED),
        ),
        ("get_memory(bad)", "memory_id", False, lambda b: store.get_memory(b)),
        ("delete_memory(bad)", "memory_id", False, lambda b: store.delete_memory(b)),
        ("list_memories(bad)", "user_id", False, lambda b: store.list_memories(b)),
        (
            "list_memories(victim, agent_id=bad)",
            "agent_id",
            True,
            lambda b: store.list_memories(v.user, agent_id=b),
        ),
        (
            "search_memories(bad, 'pistachio')",
            "user_id",
            False,
            lambda b: store.search_memories(b, "pistachio"),
        ),
        (
            "search_memories(user_id=bad, query='pistachio')",
            "user_id",
            False,
            lambda b: store.search_memories(user_id=b, query="pistachio"),
        ),
        (
            "search_memories(victim, 'pistachio', agent_id=bad)",
            "agent_id",
            True,
            lambda b: store.search_memories(v.user, "pistachio", agent_id=b),
        ),
        ("get_learning(bad)", "learning_id", False, lambda b: store.get_learning(b)),
        ("delete_learning(bad)", "learning_id", False, lambda b: store.delete_learning(b)),
        ("forget_user(bad)", "user_id", False, lambda b: store.forget_user(b)),
        ("forget_user(user_id=bad)", "user_id", False, lambda b: store.forget_user(user_id=b)),
        (
            "list_sessions(user_id=bad)",
            "user_id",
            True,
            lambda b: store.list_sessions(user_id=b),
        ),
        (
            "list_sessions(component_id=bad)",
            "component_id",
            True,
            lambda b: store.list_sessions(component_id=b),
        ),
    ]

    def query_call(field: str) -> Callable[[Any], Awaitable[Any]]:
        return lambda b: store.query_learnings(**{field: b})

    def search_call(field: str) -> Callable[[Any], Awaitable[Any]]:
        return lambda b: store.search_learnings("pistachio", **{field: b})

    for field in ("kind", "namespace", "user_id", "session_id", "entity_id"):
        calls.append((f"query_learnings({field}=bad)", field, True, query_call(field)))
    for field in ("kind", "namespace", "user_id"):
        calls.append(
            (f"search_learnings('pistachio', {field}=bad)", field, True, search_call(field))
        )
    calls += [
        (
            "recall_memories(bad, 'pistachio')",
            "user_id",
            False,
            lambda b: store.recall_memories(b, "pistachio"),
        ),
        (
            "recall_memories(victim, 'pistachio', agent_id=bad)",
            "agent_id",
            True,
            lambda b: store.recall_memories(v.user, "pistachio", agent_id=b),
        ),
    ]

    # Records: the victim's own, with one id field replaced (model_copy does not validate).
    def session_call(field: str) -> Callable[[Any], Awaitable[Any]]:
        version = v.session.version  # an update of the victim's session, if it got through
        return lambda b: store.upsert_session(
            v.session.model_copy(update={field: b}), expected_version=version
        )

    def new_session_call(field: str) -> Callable[[Any], Awaitable[Any]]:
        return lambda b: store.upsert_session(
            Session(user_id=v.user).model_copy(update={field: b}), expected_version=None
        )

    def run_call(field: str) -> Callable[[Any], Awaitable[Any]]:
        def call(b: Any) -> Awaitable[Any]:
            run = Run(session_id=sid, user_id=v.user, parent_run_id=rid, input="injected")
            return store.append_run(run.model_copy(update={field: b}))

        return call

    def memory_call(field: str) -> Callable[[Any], Awaitable[Any]]:
        return lambda b: store.upsert_memory(v.memory.model_copy(update={field: b}))

    def learning_call(field: str) -> Callable[[Any], Awaitable[Any]]:
        return lambda b: store.upsert_learning(v.learning.model_copy(update={field: b}))

    records: list[tuple[str, str, Callable[[str], Callable[[Any], Awaitable[Any]]], bool]] = [
        ("upsert_session", "session_id", session_call, False),
        ("upsert_session", "user_id", session_call, True),
        ("upsert_session", "component_id", session_call, True),
        ("upsert_session(new)", "session_id", new_session_call, False),
        ("upsert_session(new)", "user_id", new_session_call, True),
        ("append_run", "run_id", run_call, False),
        ("append_run", "session_id", run_call, False),
        ("append_run", "user_id", run_call, True),
        ("append_run", "parent_run_id", run_call, True),
        ("append_run", "component_id", run_call, True),
        ("upsert_memory", "memory_id", memory_call, False),
        ("upsert_memory", "user_id", memory_call, False),
        ("upsert_memory", "agent_id", memory_call, True),
        ("upsert_memory", "source_run_id", memory_call, True),
        ("upsert_learning", "learning_id", learning_call, False),
        ("upsert_learning", "kind", learning_call, False),
        ("upsert_learning", "namespace", learning_call, False),
        ("upsert_learning", "user_id", learning_call, True),
        ("upsert_learning", "session_id", learning_call, True),
        ("upsert_learning", "entity_id", learning_call, True),
        ("upsert_learning", "source_run_id", learning_call, True),
    ]
    record_arg = {
        "upsert_session": "session",
        "upsert_session(new)": "session",
        "append_run": "run",
        "upsert_memory": "memory",
        "upsert_learning": "learning",
    }
    for method, field, make, optional in records:
        arg = record_arg[method]
        calls.append((f"{method}({arg} with {field}=bad)", f"{arg}.{field}", optional, make(field)))
    return calls


async def _refusal_problem(
    call: Callable[[], Awaitable[Any]], error: type[Exception], names: str | None = None
) -> str | None:
    """None if ``call()`` raises ``error`` (naming the argument ``names``, if given), else
    what happened instead."""
    try:
        with pytest.raises(error) as raised:
            await call()
    except pytest.fail.Exception:
        return f"raised nothing (expected {error.__name__})"
    except Exception as exc:
        return f"raised {type(exc).__name__}: {_short(str(exc), 200)} (expected {error.__name__})"
    if names is not None:
        argument = getattr(raised.value, "argument", "")
        if not argument.endswith(names):
            return f"{error.__name__} named {argument!r}, not {names!r}"
    return None


# -- raw storage -------------------------------------------------------------------------


async def _raw_scan(suite: Any, db: Any) -> list[str]:
    scan = suite.raw_scan(db)
    if inspect.isawaitable(scan):
        scan = await scan
    if not isinstance(scan, list) or not all(isinstance(entry, str) for entry in scan):
        pytest.fail(
            f"{type(suite).__name__}.raw_scan(db) must return a list of str, not {_short(scan)}",
            pytrace=False,
        )
    return scan


def _holding(entries: Iterable[str], needles: Iterable[str]) -> list[str]:
    """The entries holding any of ``needles`` (case-insensitive)."""
    needles = [needle.lower() for needle in needles]
    return [entry for entry in entries if any(n in entry.lower() for n in needles)]


def _shown(entries: Iterable[str], needles: Iterable[str], most: int = 10) -> str:
    """Entries for a failure message: where each is (its start) and the text around the
    first needle found in it."""
    needles = [needle.lower() for needle in needles]
    lines = []
    for entry in list(entries)[:most]:
        lowered = entry.lower()
        at = min((i for i in (lowered.find(n) for n in needles) if i >= 0), default=0)
        head = entry[:60]
        if at - 60 > len(head):
            head += " ... " + entry[at - 60 : at + 100]
        else:
            head = entry[: at + 100]
        lines.append(repr(head))
    return "\n".join(lines)


class IsolationScenarios:
    """The scenarios of this module, mixed into ``kern.testing.conformance``'s scenarios."""

    # -- what a subclass provides (see the conformance module doc) -----------------------
    def raw_scan(self, db: Any) -> list[str]:
        """The raw text of everything ``db`` stores (every row of every table, document of
        every collection, key and value under the prefix), one ``str`` per row/document/key."""
        raise NotImplementedError(
            f"{type(self).__name__} must define raw_scan(self, db) -> list[str] (the "
            "conformance suite's subclass contract): return the raw text of every row of "
            "every table of db (its table prefix, FTS and shadow tables included), every "
            "document of its collections, or every key under its key prefix with its "
            "value(s), read with the driver, not through kern. test_forget_user_leaves_no_"
            "raw_trace checks with it that forget_user leaves nothing of the user behind."
        )

    # -- 1. the injection table ------------------------------------------------------------
    async def test_bad_ids_are_refused_everywhere(self, store: Store) -> None:
        """Every id argument and every id field of a written record refuses None (where an id
        is required), non-strings, dicts, lists, "", NUL, lone surrogates, 1 MB and 256
        characters with InvalidIdError naming it; the victim's data is untouched."""
        victim = await _plant_victim(store, _uid("victim"))
        calls = _id_calls(store, victim)
        problems = []
        for label, bad in BAD_IDS:
            for what, names, optional, call in calls:
                if bad is None and optional:
                    continue  # None is this filter's or field's "any" / "none"
                problem = await _refusal_problem(
                    functools.partial(call, bad), InvalidIdError, names
                )
                if problem is not None:
                    problems.append(f"{what} with bad = {label}: {problem}")
        assert not problems, "bad ids got past the contract:\n" + "\n".join(problems)
        await _assert_intact(store, victim, "the injection table")

    async def test_none_is_any_only_for_optional_filters(self, store: Store) -> None:
        """Filters whose default is None keep meaning "any"; record fields that may be empty
        take None."""
        victim = await _plant_victim(store, _uid("victim"))
        assert victim.session in await store.list_sessions(user_id=None, limit=1000)
        assert victim.learning in await store.query_learnings(
            user_id=None, kind=victim.learning.kind, session_id=None, entity_id=None
        )
        found = await store.list_memories(victim.user, agent_id=None)
        assert found == [victim.memory]
        stored = await store.upsert_memory(
            Memory(user_id=victim.user, agent_id=None, source_run_id=None, content="plain")
        )
        assert await store.get_memory(stored.memory_id) == stored
        assert (await store.delete_memory(stored.memory_id)) is True
        await _assert_intact(store, victim, "None filters")

    # -- 2. ids that look like syntax --------------------------------------------------------
    async def test_syntax_like_ids_reach_no_other_users_rows(self, store: Store) -> None:
        """Ids such as "*", "{}", "$ne", "' OR '1'='1", "%" used as another user's id (and as
        every other id) read, delete and forget nothing of the victim's."""
        victim = await _plant_victim(store, _uid("victim"))
        for other in _syntax_ids(victim):
            await _assert_sees_only_its_own(store, other, victim)
            await _assert_takes_nothing(store, other, victim)

    async def test_syntax_like_ids_round_trip_as_ordinary_ids(self, store: Store) -> None:
        """Each syntax-like id is stored and matched exactly as every kind of id: session,
        run, memory, learning, user, agent/component, kind, namespace, entity."""
        victim = await _plant_victim(store, _uid("victim"))
        for ident in _syntax_ids(victim):
            await _round_trip_as_every_id(store, ident)
        await _assert_intact(store, victim, "round trips of syntax-like ids")

    # -- 3. isolation ------------------------------------------------------------------------
    async def test_near_miss_user_ids_never_reach_the_victim(self, store: Store) -> None:
        """Ids one step from the victim's (another user, case, Unicode normalisation, white
        space, a prefix or suffix, the percent-quoted form) never return, delete or forget
        the victim's rows, and the victim's own ids are matched exactly."""
        base = unicodedata.normalize("NFC", f"Vïctim-{uuid.uuid4().hex[:12]}")
        victim = await _plant_victim(store, base)
        others = dict.fromkeys(  # (without repeats)
            [
                _uid("nobody"),
                base.lower(),
                base.upper(),
                base.casefold(),
                unicodedata.normalize("NFD", base),
                base[:-1],
                base + "0",
                " " + base,
                base + " ",
                base + "\n",
                "\u200b" + base,
                base.replace("-", "_"),
                quote(base, safe=""),
            ]
        )
        # someone else's real data, next to the victim's
        bob = await _plant_victim(store, _uid("bob"))
        for other in others:
            await _assert_sees_only_its_own(store, other, victim)
            await _assert_takes_nothing(store, other, victim)
        await _assert_intact(store, bob, "near-miss ids of another user")

        # near misses of the victim's other ids read and delete nothing either
        v = victim
        for ident, getter, delete in (
            (v.session.session_id, "get_session", "delete_session"),
            (v.memory.memory_id, "get_memory", "delete_memory"),
            (v.learning.learning_id, "get_learning", "delete_learning"),
            (v.runs[0].run_id, "get_run", None),
        ):
            for near in (ident.upper(), ident[:-1], ident + " ", " " + ident, ident + "%"):
                assert await getattr(store, getter)(near) is None, (getter, near)
                if delete is not None:
                    assert await getattr(store, delete)(near) is False, (delete, near)
        assert await store.get_last_runs(v.session.session_id.upper(), 10) == []
        await _assert_intact(store, victim, "near misses of the victim's ids")

    async def test_forget_user_takes_only_that_user(self, store: Store) -> None:
        """forget_user of one user (also one sharing the victim's sessions, search words,
        kinds and agents) deletes exactly that user's rows."""
        victim = await _plant_victim(store, _uid("victim"))
        other = _uid("other")
        sid = _uid("other-session")
        await store.upsert_session(
            Session(session_id=sid, user_id=other, component_id=victim.session.component_id),
            expected_version=None,
        )
        await store.append_run(Run(session_id=sid, user_id=other, input="pistachio"))
        # the other user's run in the victim's session: goes, the victim's runs stay
        await store.append_run(
            Run(session_id=victim.session.session_id, user_id=other, input="pistachio")
        )
        await store.upsert_memory(
            Memory(user_id=other, agent_id="assistant", content="pistachio secret too")
        )
        await store.upsert_learning(
            Learning(
                kind=victim.learning.kind,
                namespace="user",
                user_id=other,
                content={"secret": "pistachio recipe"},
            )
        )

        counts = await store.forget_user(other)
        assert _counts(counts) == {"sessions": 1, "runs": 2, "memories": 1, "learnings": 1}
        victim_session = await store.get_session(victim.session.session_id)
        assert victim_session is not None
        # the other user's run moved the session's updated_at, nothing else
        victim.session = victim.session.model_copy(update={"updated_at": victim_session.updated_at})
        await _assert_intact(store, victim, f"forget_user({other!r})")
        assert await store.list_memories(other) == []
        assert await store.query_learnings(user_id=other) == []
        assert await store.list_sessions(user_id=other) == []

    # -- 4. stored text ------------------------------------------------------------------------
    async def test_unstorable_text_is_refused_and_writes_nothing(self, store: Store) -> None:
        """NUL or a lone surrogate anywhere in stored text raises InvalidTextError, for new
        records and for updates, and nothing is written."""
        user = _uid("u")
        sid = _uid("s")
        await store.upsert_session(
            Session(session_id=sid, user_id=user, state={"k": "v"}), expected_version=None
        )
        running = await store.append_run(
            Run(session_id=sid, user_id=user, status=RunStatus.RUNNING)
        )
        session = await store.get_session(sid)
        assert session is not None
        memory = await store.upsert_memory(Memory(user_id=user, content="kept"))
        learning = await store.upsert_learning(Learning(kind=_uid("k"), content={"v": "kept"}))

        problems: list[str] = []

        async def refused(what: str, call: Callable[[], Awaitable[Any]]) -> None:
            problem = await _refusal_problem(call, InvalidTextError)
            if problem is not None:
                problems.append(f"{what}: {problem}")

        # Each call below is a def whose defaults bind this iteration's values: mypy cannot
        # type a lambda with defaults where a Callable[[], ...] is expected (mypy#15459).
        value: dict[str, Any]  # a record's fields, of the types their record takes
        for label, bad in BAD_TEXTS:
            new_sid, mid, lid, rid = _uid("s"), _uid("m"), _uid("l"), _uid("r")
            for field, value in (
                ("state value", {"state": {"k": bad}}),
                ("state key", {"state": {bad: 1}}),
                ("nested state", {"state": {"k": [{"deep": bad}]}}),
                ("name", {"name": bad}),
                ("summary", {"summary": bad}),
                ("metadata", {"metadata": {"m": bad}}),
            ):

                def new_session(v: dict[str, Any] = value, s: str = new_sid) -> Awaitable[Session]:
                    return store.upsert_session(
                        Session(session_id=s, user_id=user, **v), expected_version=None
                    )

                def update_session(v: dict[str, Any] = value) -> Awaitable[Session]:
                    return store.upsert_session(
                        session.model_copy(update=v), expected_version=session.version
                    )

                await refused(f"upsert_session(new, {field} = {label})", new_session)
                await refused(f"upsert_session(update, {field} = {label})", update_session)
            for field, value in (
                ("message content", {"messages": [Message(role="user", content=bad)]}),
                ("message name", {"messages": [Message(role="tool", content="x", name=bad)]}),
                (
                    "tool call arguments",
                    {
                        "messages": [
                            Message(
                                role="assistant",
                                tool_calls=[ToolCall(id="c1", name="f", arguments=bad)],
                            )
                        ]
                    },
                ),
                ("input", {"input": bad}),
                ("input key", {"input": {bad: "x"}}),
                ("output", {"output": bad}),
                ("metrics", {"metrics": {"m": bad}}),
            ):

                def append(v: dict[str, Any] = value, r: str = rid) -> Awaitable[Run]:
                    return store.append_run(Run(run_id=r, session_id=sid, user_id=user, **v))

                await refused(f"append_run({field} = {label})", append)
            for field, value in (
                ("output", {"output": bad}),
                ("output value", {"output": {"text": bad}}),
                ("messages", {"messages": [Message(role="assistant", content=bad)]}),
                ("metrics", {"metrics": {"m": bad}}),
                ("metrics key", {"metrics": {bad: 1}}),
            ):

                def update(kw: dict[str, Any] = value) -> Awaitable[Run]:
                    return store.update_run(running.run_id, status=RunStatus.COMPLETED, **kw)

                await refused(f"update_run({field} = {label})", update)
            for field, value in (("content", {"content": bad}), ("topics", {"topics": [bad]})):

                def new_memory(v: dict[str, Any] = value, m: str = mid) -> Awaitable[Memory]:
                    return store.upsert_memory(
                        Memory(memory_id=m, user_id=user, content="x").model_copy(update=v)
                    )

                def update_memory(v: dict[str, Any] = value) -> Awaitable[Memory]:
                    return store.upsert_memory(memory.model_copy(update=v))

                await refused(f"upsert_memory(new, {field} = {label})", new_memory)
                await refused(f"upsert_memory(update, {field} = {label})", update_memory)
            for field, value in (
                ("content value", {"content": {"v": bad}}),
                ("content key", {"content": {bad: "v"}}),
                ("nested content", {"content": {"v": ["ok", {"w": bad}]}}),
            ):

                def new_learning(v: dict[str, Any] = value, i: str = lid) -> Awaitable[Learning]:
                    return store.upsert_learning(
                        Learning(learning_id=i, kind=learning.kind).model_copy(update=v)
                    )

                def update_learning(v: dict[str, Any] = value) -> Awaitable[Learning]:
                    return store.upsert_learning(learning.model_copy(update=v))

                await refused(f"upsert_learning(new, {field} = {label})", new_learning)
                await refused(f"upsert_learning(update, {field} = {label})", update_learning)
            await refused(
                f"search_memories(query = {label})",
                functools.partial(store.search_memories, user, bad),
            )
            await refused(
                f"search_learnings(query = {label})",
                functools.partial(store.search_learnings, bad, kind=learning.kind),
            )
            await refused(
                f"recall_memories(query = {label})",
                functools.partial(store.recall_memories, user, bad),
            )

            # nothing was written
            assert await store.get_session(new_sid) is None, label
            assert await store.get_run(rid) is None, label
            assert await store.get_memory(mid) is None, label
            assert await store.get_learning(lid) is None, label

        assert not problems, "unstorable text got past the contract:\n" + "\n".join(problems)
        assert await store.get_session(sid) == session
        assert await store.get_last_runs(sid, 10) == [running]
        assert await store.get_run(running.run_id) == running
        assert await store.list_memories(user) == [memory]
        assert await store.get_learning(learning.learning_id) == learning
        assert await store.query_learnings(kind=learning.kind) == [learning]
        assert [s.session_id for s in await store.list_sessions(user_id=user)] == [sid]

    async def test_any_other_unicode_round_trips_exactly(self, store: Store) -> None:
        """Emoji, accents, RTL text, line/paragraph separators, combining marks, BOM,
        astral characters, control characters: stored and read back exactly, everywhere."""
        user = _uid("ü-user")
        texts = list(ODD_TEXTS)
        joined = " | ".join(texts)
        sid = _uid("s")
        await store.upsert_session(
            Session(
                session_id=sid,
                user_id=user,
                name=joined,
                summary=joined,
                state={**{text: text for text in texts}, "all": [*texts]},
                metadata={"texts": [*texts]},
            ),
            expected_version=None,
        )
        run = await store.append_run(
            Run(
                session_id=sid,
                user_id=user,
                status=RunStatus.RUNNING,
                input={text: text for text in texts},
                messages=[Message(role="user", content=text) for text in texts],
                metrics={text: len(text) for text in texts},
            )
        )
        finished = await store.update_run(
            run.run_id,
            status=RunStatus.COMPLETED,
            output=texts,
            messages=[
                *run.messages,
                Message(
                    role="assistant",
                    content=joined,
                    tool_calls=[ToolCall(id="call-ü", name="look_up", arguments=_json(texts))],
                ),
            ],
        )
        session = await store.get_session(sid)
        memories = [
            await store.upsert_memory(Memory(user_id=user, content=text, topics=[text]))
            for text in texts
        ]
        learning = await store.upsert_learning(
            Learning(kind=_uid("k"), user_id=user, content={text: [text] for text in texts})
        )

        assert session is not None
        assert (session.name, session.summary) == (joined, joined)
        assert _json(session.state) == _json({text: text for text in texts} | {"all": texts})
        assert _json(session.metadata) == _json({"texts": texts})
        assert await store.list_sessions(user_id=user) == [session]
        assert await store.get_run(run.run_id) == finished
        assert await store.get_last_runs(sid, 1) == [finished]
        assert [m.content for m in finished.messages[: len(texts)]] == texts
        assert _json(finished.input) == _json({text: text for text in texts})
        assert finished.output == texts
        for memory, text in zip(memories, texts, strict=True):
            fetched = await store.get_memory(memory.memory_id)
            assert fetched == memory
            assert (fetched.content, fetched.topics) == (text, [text]), text
        listed = await store.list_memories(user, limit=100)
        assert sorted(m.memory_id for m in listed) == sorted(m.memory_id for m in memories)
        fetched_learning = await store.get_learning(learning.learning_id)
        assert fetched_learning == learning
        assert _json(fetched_learning.content) == _json({text: [text] for text in texts})
        # searching with such text is data too: no error, only this user's rows
        for text in texts:
            for hit in await store.search_memories(user, text, limit=3):
                assert hit.memory.user_id == user, text
            await store.search_learnings(text, user_id=user, limit=3)
        found = await store.search_memories(user, "Zürich")
        assert memories[1].memory_id in [hit.memory.memory_id for hit in found]

    # -- 5. forget_user, on the raw storage ----------------------------------------------------
    @requires("raw_storage_scan")
    async def test_forget_user_leaves_no_raw_trace(self, db: Any, store: Store) -> None:
        """After forget_user, the backend's raw storage (``raw_scan``) holds the user's id
        nowhere, and the words the user wrote in no table, collection or key: full-text
        index segments and auxiliary keys included."""
        marker = f"qz{uuid.uuid4().hex[:14]}7"  # one token; nothing else starts with "qz"
        user = f"forget-{marker}"
        bystander = _uid("bystander")
        b_sid, sid, loose = _uid("b-session"), _uid("session"), _uid("loose")

        await store.upsert_session(
            Session(session_id=b_sid, user_id=bystander, state={"n": 1}), expected_version=None
        )
        bystander_run = await store.append_run(
            Run(session_id=b_sid, user_id=bystander, input="hello")
        )
        await store.upsert_session(
            Session(
                session_id=sid,
                user_id=user,
                component_id="assistant",
                name=f"{marker} chat",
                summary=f"talked about {marker}",
                state={"topic": f"about {marker}", marker: [marker], "who": user},
                metadata={"tag": marker},
            ),
            expected_version=None,
        )
        for i in range(2):
            await store.append_run(
                Run(
                    session_id=sid,
                    user_id=user,
                    input=f"tell me about {marker} {i}",
                    messages=[
                        Message(role="user", content=f"tell me about {marker} {i}"),
                        Message(role="assistant", content=f"{marker} is a word"),
                    ],
                    output={"answer": f"{marker} answer"},
                    metrics={marker: i},
                )
            )
        # a workflow step without user in the user's session; the user's run in another
        # user's session; the user's run in a session that has no row
        await store.append_run(Run(session_id=sid, input=f"step {marker}"))
        running = await store.append_run(
            Run(session_id=b_sid, user_id=user, status=RunStatus.RUNNING, input=marker)
        )
        await store.update_run(
            running.run_id,
            status=RunStatus.COMPLETED,
            output=f"{marker} done",
            messages=[Message(role="assistant", content=marker)],
        )
        await store.append_run(Run(session_id=loose, user_id=user, output=f"loose {marker}"))
        await store.upsert_memory(
            Memory(
                user_id=user,
                agent_id="assistant",
                content=f"{marker} likes pistachio",
                topics=[marker, "food"],
            )
        )
        await store.upsert_memory(Memory(user_id=user, content=f"second {marker} fact"))
        await store.upsert_learning(
            Learning(
                kind=_uid("profile"),
                namespace="user",
                user_id=user,
                entity_id=_uid("entity"),
                content={"fact": f"{marker} fact", marker: [marker, {"deep": marker}]},
            )
        )
        await store.upsert_learning(  # tied to the user's session only: goes with it
            Learning(
                kind=_uid("context"),
                namespace="session",
                session_id=sid,
                content={"note": f"{marker} session note"},
            )
        )
        bystander_memory = await store.upsert_memory(
            Memory(user_id=bystander, content="bystander likes pistachio")
        )
        bystander_session = await store.get_session(b_sid)

        needles = [marker, user.encode().hex()]
        before = await _raw_scan(self, db)
        assert _holding(before, [user]) and _holding(before, [marker]), (
            f"{type(self).__name__}.raw_scan(db) found no trace of the data just stored "
            f"under user {user!r}: it must return every row/document/key of db"
        )

        counts = await store.forget_user(user)
        assert _counts(counts) == {"sessions": 1, "runs": 5, "memories": 2, "learnings": 2}

        after = await _raw_scan(self, db)
        with_id = _holding(after, [user])
        assert not with_id, (
            f"after forget_user({user!r}) the user id is still stored in "
            f"{len(with_id)} entries:\n" + _shown(with_id, [user])
        )
        with_words = _holding(after, needles)
        assert not with_words, (
            f"after forget_user({user!r}) the user's words ({marker!r}) or id (hex "
            f"{needles[1]!r}) are still stored in {len(with_words)} entries:\n"
            + _shown(with_words, needles)
        )
        # the bystander keeps everything
        assert await store.get_session(b_sid) == bystander_session
        assert await store.get_last_runs(b_sid, 10) == [bystander_run]
        assert await store.list_memories(bystander) == [bystander_memory]


def _syntax_ids(victim: _Victim) -> list[str]:
    """``SYNTAX_IDS`` and the same shapes built on the victim's own id."""
    v = victim.user
    return [
        *SYNTAX_IDS,
        f"{v}*",
        f"{v[:-2]}*",
        f"{v[:-2]}%",
        f"{v[:-1]}_",
        f"{{{v}}}",
        f"{{u:{v}}}",
        f"{v}.*",
        f"^{v}",
        f"{v}:x",
    ]


async def _round_trip_as_every_id(store: Store, ident: str) -> None:
    """Store a session, a run, a memory and a learning with ``ident`` as every id; read each
    back by each id; forget_user(ident) removes exactly them."""
    where = f"id {ident!r}"
    await store.upsert_session(
        Session(session_id=ident, user_id=ident, component_id=ident, state={"id": ident}),
        expected_version=None,
    )
    run = await store.append_run(
        Run(
            run_id=ident,
            session_id=ident,
            user_id=ident,
            component_id=ident,
            status=RunStatus.RUNNING,
            input=ident,
        )
    )
    session = await store.get_session(ident)
    memory = await store.upsert_memory(
        Memory(memory_id=ident, user_id=ident, agent_id=ident, content="round trip pistachio")
    )
    learning = await store.upsert_learning(
        Learning(
            learning_id=ident,
            kind=ident,
            namespace=ident,
            user_id=ident,
            session_id=ident,
            entity_id=ident,
            source_run_id=ident,
            content={"id": ident, "note": "round trip pistachio"},
        )
    )

    assert session is not None, where
    assert (session.session_id, session.user_id, session.component_id) == (ident,) * 3, where
    assert session.state == {"id": ident}, where
    assert await store.list_sessions(user_id=ident) == [session], where
    assert await store.list_sessions(user_id=ident, component_id=ident) == [session], where
    assert await store.list_sessions(component_id=ident) == [session], where
    assert await store.get_run(ident) == run, where
    assert await store.get_last_runs(ident, 10) == [run], where
    finished = await store.update_run(ident, status=RunStatus.COMPLETED, output=ident)
    assert finished.output == ident and finished.run_id == ident, where
    assert await store.get_run(ident) == finished, where
    assert await store.get_memory(ident) == memory, where
    assert await store.list_memories(ident) == [memory], where
    assert await store.list_memories(ident, agent_id=ident) == [memory], where
    hits = await store.search_memories(ident, "pistachio", agent_id=ident)
    assert [hit.memory for hit in hits] == [memory], where
    assert await store.get_learning(ident) == learning, where
    for field in ("kind", "namespace", "user_id", "session_id", "entity_id"):
        by_field: dict[str, Any] = {field: ident}  # a filter named at run time
        assert await store.query_learnings(**by_field) == [learning], (where, field)
    found = await store.search_learnings("pistachio", kind=ident, user_id=ident, namespace=ident)
    assert [hit.learning for hit in found] == [learning], where
    proposed = LearningStatus.PROPOSED
    assert await store.search_learnings("pistachio", kind=ident, status=proposed) == [], where

    counts = await store.forget_user(ident)
    assert _counts(counts) == {"sessions": 1, "runs": 1, "memories": 1, "learnings": 1}, (
        where,
        counts,
    )
    assert await store.get_session(ident) is None, where
    assert await store.get_run(ident) is None, where
    assert await store.get_last_runs(ident, 10) == [], where
    assert await store.get_memory(ident) is None, where
    assert await store.get_learning(ident) is None, where
    assert await store.list_memories(ident) == [], where
    assert await store.list_sessions(component_id=ident) == [], where
    assert await store.query_learnings(kind=ident) == [], where
    assert _counts(await store.forget_user(ident)) == dict.fromkeys(_TABLES, 0), where
