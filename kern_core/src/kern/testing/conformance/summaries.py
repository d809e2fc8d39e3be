"""Past sessions: ``search_sessions`` finds a user's sessions by their summary and name.

What the past-sessions tool (``kern.past_sessions``) relies on, on every backend: a session
is found by a word of its summary or of its name, as soon as it is written (by
``upsert_session`` or ``commit_turn``) and as it was last written (a rewritten summary is
searched by its new words, not its old ones); the sessions holding more of the query's
words come first; ``limit`` bounds the answer; and another user's sessions, however well
they match, are never returned. Deleted and forgotten sessions are not found.
"""

from __future__ import annotations

import pytest

from kern.errors import InvalidIdError, InvalidTextError
from kern.records import Session
from kern.testing.conformance.base import ScenarioBase, Store
from kern.testing.conformance.common import _turn, _uid

__all__ = ["SummaryScenarios"]


def _word() -> str:
    """A word no other scenario's rows hold (letters only: every tokenizer keeps it whole)."""
    return "zq" + "".join(chr(ord("a") + int(c, 16) % 26) for c in _uid("w")[2:])


async def _session(
    store: Store, user: str, *, summary: str | None = None, name: str | None = None
) -> Session:
    session = Session(session_id=_uid("s"), user_id=user, name=name, summary=summary)
    return await store.upsert_session(session, expected_version=None)


class SummaryScenarios(ScenarioBase):
    """``search_sessions(user_id, query, *, limit)``."""

    async def test_a_session_is_found_by_a_word_of_its_summary(self, store: Store) -> None:
        user, other, word = _uid("u"), _uid("u"), _word()
        mine = await _session(store, user, summary=f"The user keeps a cat named {word}.")
        await _session(store, user, summary="The user asked about the weather.")
        theirs = await _session(store, other, summary=f"Another user's cat is {word} too.")

        found = await store.search_sessions(user, f"what is my cat {word} like?")

        assert [s.session_id for s in found] == [mine.session_id]
        assert found[0] == await store.get_session(mine.session_id)  # the stored session
        assert theirs.session_id not in {s.session_id for s in found}
        again = await store.search_sessions(other, word)
        assert [s.session_id for s in again] == [theirs.session_id]

    async def test_a_session_is_found_by_its_name(self, store: Store) -> None:
        user, word = _uid("u"), _word()
        named = await _session(store, user, name=f"Planning {word}")
        found = await store.search_sessions(user, word)
        assert [s.session_id for s in found] == [named.session_id]

    async def test_more_matching_words_rank_first_and_limit_bounds(self, store: Store) -> None:
        user, first, second, third = _uid("u"), _word(), _word(), _word()
        one = await _session(store, user, summary=f"Talked about {first}.")
        three = await _session(store, user, summary=f"Talked about {first}, {second} and {third}.")
        two = await _session(store, user, summary=f"Talked about {first} and {second}.")

        found = await store.search_sessions(user, f"{first} {second} {third}", limit=10)
        assert [s.session_id for s in found] == [three.session_id, two.session_id, one.session_id]
        limited = await store.search_sessions(user, f"{first} {second} {third}", limit=2)
        assert [s.session_id for s in limited] == [three.session_id, two.session_id]
        assert await store.search_sessions(user, first, limit=0) == []

    async def test_no_words_no_sessions(self, store: Store) -> None:
        user = _uid("u")
        await _session(store, user, summary="Anything at all.")
        assert await store.search_sessions(user, "") == []
        assert await store.search_sessions(user, " ?! -- ") == []
        assert await store.search_sessions(_uid("nobody"), "anything") == []

    async def test_a_rewritten_summary_is_searched_by_its_new_words(self, store: Store) -> None:
        user, old, new = _uid("u"), _word(), _word()
        v1 = await _session(store, user, summary=f"Early talk about {old}.")
        v2 = await store.upsert_session(
            v1.model_copy(update={"summary": f"Later talk about {new}."}), expected_version=1
        )
        assert await store.search_sessions(user, old) == []
        assert await store.search_sessions(user, new) == [v2]

    async def test_a_summary_written_with_a_turn_is_searchable(self, store: Store) -> None:
        user, word = _uid("u"), _word()
        session = Session(session_id=_uid("s"), user_id=user, summary=f"About {word}.")
        run = _turn(session.session_id, 1, user_id=user)
        _, stored = await store.commit_turn(run, session, expected_version=None)
        assert await store.search_sessions(user, word) == [stored]

    async def test_deleted_and_forgotten_sessions_are_not_found(self, store: Store) -> None:
        user, word = _uid("u"), _word()
        gone = await _session(store, user, summary=f"Deleted talk of {word}.")
        kept = await _session(store, user, summary=f"Kept talk of {word}.")
        assert await store.delete_session(gone.session_id)
        assert [s.session_id for s in await store.search_sessions(user, word)] == [kept.session_id]
        await store.forget_user(user)
        assert await store.search_sessions(user, word) == []

    async def test_bad_arguments_are_refused_with_kern_errors(self, store: Store) -> None:
        with pytest.raises(InvalidIdError):
            await store.search_sessions(None, "cats")  # type: ignore[arg-type]
        with pytest.raises(InvalidIdError):
            await store.search_sessions("", "cats")
        with pytest.raises(InvalidTextError):
            await store.search_sessions(_uid("u"), None)  # type: ignore[arg-type]
