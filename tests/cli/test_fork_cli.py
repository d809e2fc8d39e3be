"""``kern fork``: a session's turns up to a seq copied into a new session."""

from __future__ import annotations


def test_fork_copies_the_turns_up_to_the_seq_and_prints_the_new_id(kern, seeded) -> None:
    done = kern("fork", "s-agent", "--at-seq", "2", "--new-id", "s-agent-b")
    assert done.code == 0, done.stderr
    assert "into s-agent-b" in done.stdout

    db = seeded.open()
    try:
        runs = db.get_last_runs("s-agent-b", 10)
        assert [r.input for r in runs] == ["question 1", "question 2"]
        fork = db.get_session("s-agent-b")
        assert fork is not None and fork.user_id == "ada"
        assert fork.metadata["forked_from"]["session_id"] == "s-agent"
        assert len(db.get_last_runs("s-agent", 10)) == 3  # the source is unchanged
    finally:
        db.close()


def test_fork_json_and_a_fresh_id(kern) -> None:
    done = kern("fork", "s-agent", "--at-seq", "1", "--json")
    assert done.code == 0, done.stderr
    assert done.json["metadata"]["forked_from"] == {
        "session_id": "s-agent",
        "seq": 1,
        "state": "current",
    }


def test_fork_refusals_are_one_line_and_write_nothing(kern, seeded) -> None:
    past = kern("fork", "s-agent", "--at-seq", "9", "--new-id", "x")
    assert past.code == 2 and "its last run is seq 3" in past.stderr
    assert "Traceback" not in past.stderr
    taken = kern("fork", "s-agent", "--at-seq", "1", "--new-id", "s-team")
    assert taken.code == 2 and "already taken" in taken.stderr
    missing = kern("fork", "nope", "--at-seq", "1")
    assert missing.code != 0 and "no such session" in missing.stderr
    assert kern("fork", "s-agent", "--at-seq", "0").code == 2
    db = seeded.open()
    try:
        assert db.get_session("x") is None
    finally:
        db.close()
