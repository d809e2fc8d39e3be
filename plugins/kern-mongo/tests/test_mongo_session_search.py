"""search_sessions on MongoDB: each session's ``terms`` under a ``{user_id, terms}`` index."""

from __future__ import annotations

from kern.db.mongo import MongoDb
from kern.records import Session


def test_sessions_stored_before_version_2_get_their_terms(mongo_kwargs: dict[str, str]) -> None:
    db = MongoDb(**mongo_kwargs)
    db.upsert_session(
        Session(session_id="old", user_id="ada", summary="Ada keeps bees in Porto."),
        expected_version=None,
    )
    sessions = db.collections["sessions"]
    sessions.update_many({}, {"$unset": {"terms": ""}})  # as the last release stored it
    db.collections["schema_versions"].update_one({"_id": "sessions"}, {"$set": {"version": 1}})
    db.close()

    reopened = MongoDb(**mongo_kwargs)
    try:
        assert [s.session_id for s in reopened.search_sessions("ada", "bees Porto")] == ["old"]
        assert reopened.search_sessions("bob", "bees") == []
        indexes = reopened.collections["sessions"].index_information().values()
        fields = {tuple(k for k, _ in index["key"]) for index in indexes}
        assert ("user_id", "terms") in fields
    finally:
        reopened.close()


def test_a_session_is_found_by_its_stored_terms(mongo_kwargs: dict[str, str]) -> None:
    db = MongoDb(**mongo_kwargs)
    try:
        db.upsert_session(
            Session(session_id="s", user_id="ada", name="Café plans", summary="Hives."),
            expected_version=None,
        )
        stored = db.collections["sessions"].find_one({"_id": "s"})
        assert stored is not None and set(stored["terms"]) == {"cafe", "plans", "hives"}
        assert [s.session_id for s in db.search_sessions("ada", "cafe")] == ["s"]
    finally:
        db.close()
