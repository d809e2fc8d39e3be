"""``kern sessions / show / memories / learnings / profile`` on a seeded SQLite database."""

from __future__ import annotations

from collections.abc import Sequence


def in_order(text: str, parts: Sequence[str]) -> bool:
    """Whether ``parts`` occur in ``text`` in this order."""
    at = 0
    for part in parts:
        at = text.find(part, at)
        if at < 0:
            return False
        at += len(part)
    return True


def test_sessions_hide_markers_filter_and_page(kern, seeded) -> None:
    listed = kern("sessions", "--json")
    assert listed.code == 0, listed.stderr
    ids = [s["session_id"] for s in listed.json]
    # Newest updated first; the background-learning marker is kern's, not the user's.
    assert ids == ["s-bob", "s-flow", "s-team", "s-agent"]
    agent = listed.json[-1]
    assert agent["state"] == {"city": "Lisbon", "nights": 3}
    assert agent["version"] == 1 and agent["name"] == "Trip planning"

    everything = kern("sessions", "--all", "--json")
    assert seeded.ids["marker"] in [s["session_id"] for s in everything.json]

    # --offset counts the sessions shown, so pages never show a marker nor skip a session.
    page = kern("sessions", "--limit", "2", "--offset", "1", "--json")
    assert [s["session_id"] for s in page.json] == ["s-flow", "s-team"]

    filtered = kern("sessions", "--user", "ada", "--type", "team", "--json")
    assert [s["session_id"] for s in filtered.json] == ["s-team"]

    table = kern("sessions")
    assert table.code == 0
    assert "s-agent" in table.stdout and "Trip planning" in table.stdout
    assert "workflow" in table.stdout and seeded.ids["marker"] not in table.stdout


def test_show_nests_member_and_step_runs_under_their_parent(kern, seeded) -> None:
    team = kern("show", "s-team", "--json")
    assert team.code == 0, team.stderr
    data = team.json
    assert data["session"]["session_type"] == "team" and data["older_runs"] is False
    runs = data["runs"]
    assert [r["seq"] for r in runs] == [1, 2, 3, 4, 5, 6]
    parents = {r["component_id"] + str(r["seq"]): r["parent_run_id"] for r in runs}
    assert parents["flights1"] == parents["hotels2"] == seeded.ids["leader1"]
    assert parents["crew3"] is None and parents["flights4"] == seeded.ids["leader2"]

    # The newest turn counts as one, its member runs (stored before it) come along.
    newest = kern("show", "s-team", "--runs", "1", "--json").json
    assert [r["seq"] for r in newest["runs"]] == [4, 5, 6] and newest["older_runs"] is True

    human = kern("show", "s-team")
    assert human.code == 0
    text = human.stdout
    # Each member run is a branch of its leader's run, before the leader's answer.
    assert in_order(text, ["team task 1", "flights", "flights found for task 1", "hotels"])
    assert in_order(text, ["hotels found for task 1", "team answer 1", "team task 2"])
    member = next(line for line in text.splitlines() if "flights found for task 1" in line)
    leader = next(line for line in text.splitlines() if "team answer 1" in line)
    assert member.index("assistant") > leader.index("assistant")  # nested one level deeper

    agent = kern("show", "s-agent", "--runs", "all")
    assert agent.code == 0
    assert in_order(agent.stdout, ["Trip planning", "Ada plans a trip to Lisbon.", '"city"'])
    assert in_order(
        agent.stdout, ["question 2", 'weather({"city": "Lisbon"})', "sunny", "answer 2"]
    )

    flow = kern("show", "s-flow", "--runs", "1", "--json").json
    assert [r["component_id"] for r in flow["runs"]] == ["pipeline", "fetch", "summarise"]
    assert flow["runs"][1]["parent_run_id"] == seeded.ids["flow"]

    missing = kern("show", "no-such-session")
    assert missing.code == 1
    assert f"no session 'no-such-session' in {seeded.path}" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_memories_newest_first_ranked_and_shown_as_written(kern, seeded) -> None:
    listed = kern("memories", "ada", "--json")
    assert listed.code == 0, listed.stderr
    contents = [m["content"] for m in listed.json]
    assert len(contents) == 5 and "Bob plays chess" not in contents
    assert contents[0] == seeded.markup and contents[-1] == "Ada lived in Paris"

    ranked = kern("memories", "ada", "--search", "window seats", "--limit", "2", "--json")
    assert ranked.code == 0, ranked.stderr
    hits = ranked.json
    assert hits[0]["memory"]["memory_id"] == seeded.ids["memory_seat"]
    assert all(isinstance(hit["score"], float) for hit in hits) and len(hits) <= 2

    table = kern("memories", "ada")
    assert table.code == 0
    # Rich markup in stored text is shown literally, not applied (nor swallowed).
    assert "[bold]x[/bold]" in table.stdout and "<script>alert(1)</script>" in table.stdout


def test_learnings_filters_and_bookkeeping(kern, seeded) -> None:
    listed = kern("learnings", "--json")
    assert listed.code == 0, listed.stderr
    kinds = {row["kind"] for row in listed.json}
    assert "kern_embedder" not in kinds and {"user_profile", "entity_memory"} <= kinds
    assert len(listed.json) == 6

    proposed = kern("learnings", "--status", "proposed", "--user", "ada", "--json").json
    assert {row["learning_id"] for row in proposed} == {
        seeded.ids["learning_proposed_memory"],
        seeded.ids["learning_proposed_entity"],
    }

    table = kern("learnings", "--kind", "learned_knowledge")
    assert table.code == 0
    assert "Night trains are popular" in table.stdout and "rejected" in table.stdout
    assert "Ada Lovelace" not in table.stdout


def test_profile_fields_and_counts(kern) -> None:
    profile = kern("profile", "ada", "--json")
    assert profile.code == 0, profile.stderr
    data = profile.json
    assert data["profile"]["content"]["name"] == "Ada Lovelace"
    assert data["memories"] == 5
    assert data["learnings"] == {"active": 1, "proposed": 2, "rejected": 1, "superseded": 0}

    human = kern("profile", "ada")
    assert in_order(human.stdout, ["preferred name", "Ada", "window seats; green tea"])
    assert "memories: 5" in human.stdout and "learnings: 4" in human.stdout


def test_database_from_environment_and_kern_toml(kern_cli, seeded, tmp_path) -> None:
    from_env = kern_cli("sessions", "--json", cwd=tmp_path, env={"KERN_DB_URL": seeded.url})
    assert from_env.code == 0, from_env.stderr
    assert len(from_env.json) == 4

    project = tmp_path / "project"
    project.mkdir()
    (project / "kern.toml").write_text(f'db_url = "{seeded.url}"\n')
    from_file = kern_cli("memories", "bob", "--json", cwd=project)
    assert from_file.code == 0, from_file.stderr
    assert [m["content"] for m in from_file.json] == ["Bob plays chess"]


def test_bad_input_is_one_line_and_exit_2(kern_cli, seeded, tmp_path) -> None:
    # Wide enough that rich does not wrap the line at the terminal's width.
    wide = {"cwd": tmp_path, "env": {"COLUMNS": "1000"}}
    too_long = kern_cli("show", "x" * 300, "--db", seeded.url, **wide)
    # A NUL cannot travel in argv; bytes that are not UTF-8 arrive as lone surrogates.
    undecodable = kern_cli("memories", b"ada\xff", "--db", seeded.url, **wide)
    scheme = kern_cli("sessions", "--db", "nosuchdb://somewhere", **wide)
    limit = kern_cli("memories", "ada", "--limit", "0", "--db", seeded.url, **wide)
    for result, prefix in (
        (too_long, "kern show: SESSION_ID must be at most 255 characters long, not 'xxx"),
        (undecodable, "kern memories: USER_ID must be valid UTF-8"),
        (scheme, "kern sessions: no installed kern backend handles URL scheme 'nosuchdb'"),
        (limit, "usage:"),
    ):
        assert result.code == 2, result.stderr
        assert result.stderr.startswith(prefix), result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
    for result in (too_long, undecodable, scheme):
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--limit: must be a whole number of at least 1, not '0'" in limit.stderr
