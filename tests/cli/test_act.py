"""``kern approve / reject / forget / prune / dedupe`` on a seeded SQLite database, checked in
the database afterwards."""

from __future__ import annotations

import os
import sys

from kern.records import LearningStatus


def test_approve_and_reject_decide_each_id_and_name_the_others(kern, seeded) -> None:
    ids = seeded.ids
    memory_id, entity_id = ids["learning_proposed_memory"], ids["learning_proposed_entity"]

    # A malformed id is bad input: nothing is decided, not even the valid ids before it.
    bad = kern("approve", entity_id, "x" * 300)
    assert bad.code == 2 and bad.stderr.startswith("kern approve: ID must be at most 255")
    with seeded.open() as db:
        assert db.get_learning(entity_id).status is LearningStatus.PROPOSED

    approved = kern(
        "approve", memory_id, entity_id, ids["learning_insight"], "no-such-id", "--json"
    )
    assert approved.code == 1
    data = approved.json
    assert [item.get("memory_id") for item in data["approved"]] == [memory_id, None]
    assert data["approved"][1]["status"] == "active"
    assert [failure["id"] for failure in data["failed"]] == [ids["learning_insight"], "no-such-id"]
    assert f"learning '{ids['learning_insight']}' is active, not proposed" in approved.stderr
    assert "no learning 'no-such-id' is stored" in approved.stderr
    assert "lm.reembed()" in approved.stderr  # the database has vectors; these have none
    with seeded.open() as db:
        memory = db.get_memory(memory_id)  # a user memory proposal becomes a memory
        assert memory is not None and memory.content == "Ada is allergic to peanuts"
        assert memory.topics == ["health"]
        assert db.get_learning(entity_id).status is LearningStatus.ACTIVE

    rejected = kern("reject", ids["learning_bob"])
    assert rejected.code == 0, rejected.stderr
    assert "rejected" in rejected.stdout and "Bob likes tea" in rejected.stdout
    with seeded.open() as db:
        assert db.get_learning(ids["learning_bob"]).status is LearningStatus.REJECTED
        assert [m.content for m in db.list_memories("bob")] == ["Bob plays chess"]

    again = kern("reject", ids["learning_bob"])
    assert again.code == 1
    assert "is rejected, not proposed: only proposed learnings can be rejected" in again.stderr


def _held_by(db, user: str) -> dict[str, int]:
    sessions = db.list_sessions(user_id=user, limit=1000)
    return {
        "sessions": len(sessions),
        "runs": sum(len(db.get_last_runs(s.session_id, 1000)) for s in sessions),
        "memories": len(db.list_memories(user, limit=1000)),
        "learnings": len(db.query_learnings(user_id=user, limit=1000)),
    }


def test_forget_confirms_and_its_receipt_counts_what_went(kern, seeded) -> None:
    with seeded.open() as db:
        before = _held_by(db, "ada")
        bob = _held_by(db, "bob")
    assert before == {"sessions": 4, "runs": 12, "memories": 5, "learnings": 4}

    unconfirmed = kern("forget", "ada")  # stdin is not a terminal
    assert unconfirmed.code == 2
    assert "pass --yes" in unconfirmed.stderr and unconfirmed.stdout == ""

    if sys.platform != "win32":
        import pty

        terminal, child = pty.openpty()
        try:
            os.write(terminal, b"n\n")
            declined = kern("forget", "ada", stdin=child)
        finally:
            os.close(terminal)
            os.close(child)
        assert declined.code == 1
        assert "Delete every session, run, memory and learning of user 'ada'" in declined.stderr
        assert "nothing was deleted" in declined.stderr
    with seeded.open() as db:
        assert _held_by(db, "ada") == before

    forgot = kern("forget", "ada", "--yes", "--json")
    assert forgot.code == 0, forgot.stderr
    receipt = forgot.json
    assert receipt["user_id"] == "ada" and receipt["target"] == str(seeded.path)
    assert {k: v for k, v in receipt["removed"].items() if k in before} == before
    with seeded.open() as db:
        assert _held_by(db, "ada") == dict.fromkeys(before, 0)
        assert _held_by(db, "bob") == bob
        assert db.get_session("s-agent") is None and db.get_session("s-bob") is not None


def test_prune_dry_run_changes_nothing_and_a_real_run_removes(kern, seeded) -> None:
    ids = seeded.ids
    missing = kern("prune", "--user", "ada")
    assert missing.code == 2
    assert "--max-age-days" in missing.stderr and "--max-count" in missing.stderr

    dry = kern("prune", "--user", "ada", "--max-age-days", "30", "--dry-run", "--json")
    assert dry.code == 0, dry.stderr
    assert dry.json["dry_run"] is True
    assert [(i["id"], i["reason"]) for i in dry.json["items"]] == [(ids["memory_old"], "age")]
    with seeded.open() as db:
        assert db.get_memory(ids["memory_old"]) is not None

    real = kern("prune", "--user", "ada", "--max-age-days", "30")
    assert real.code == 0, real.stderr
    assert "removed 1 item" in real.stdout and "Ada lived in Paris" in real.stdout
    with seeded.open() as db:
        assert db.get_memory(ids["memory_old"]) is None
        assert len(db.list_memories("ada")) == 4

    # Other stores by kind: their active rows only (the rejected insight stays).
    learnings = kern("prune", "--kind", "learned_knowledge", "--max-count", "0", "--json")
    assert [i["id"] for i in learnings.json["items"]] == [ids["learning_insight"]]
    with seeded.open() as db:
        assert db.get_learning(ids["learning_insight"]) is None
        assert db.get_learning(ids["learning_rejected"]) is not None


def test_dedupe_dry_run_changes_nothing_and_a_real_run_removes(kern, seeded) -> None:
    ids = seeded.ids
    no_user = kern("dedupe")
    assert no_user.code == 2 and "--user" in no_user.stderr
    threshold = kern("dedupe", "--user", "ada", "--threshold", "1.5")
    assert threshold.code == 2 and "--threshold must be" in threshold.stderr

    dry = kern("dedupe", "--user", "ada", "--dry-run")
    assert dry.code == 0, dry.stderr
    assert "would remove 1 item" in dry.stdout and "exact duplicate" in dry.stdout
    assert ids["memory_tea1"] in dry.stdout
    with seeded.open() as db:
        assert len(db.list_memories("ada")) == 5

    real = kern("dedupe", "--user", "ada", "--json")
    assert real.code == 0, real.stderr
    (item,) = real.json["items"]
    # The newest of the group is kept.
    assert (item["id"], item["duplicate_of"]) == (ids["memory_tea1"], ids["memory_tea2"])
    with seeded.open() as db:
        assert db.get_memory(ids["memory_tea1"]) is None
        assert db.get_memory(ids["memory_tea2"]) is not None
