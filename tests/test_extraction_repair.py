"""Extraction that survives real models: invalid arguments lose only their invalid parts,
the error goes back to the model for one retry (never two), and the run's metrics count it.

Also: every store's extraction tool is a strict JSON schema (sent with ``strict: true``),
and what validates under the strict schema still validates with the store's model.
What every backend must do with a misbehaving model is in ``kern.testing.learning``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from kern.agent import Agent
from kern.db.sqlite import AsyncSqliteDb, SqliteDb
from kern.learn import LearningMachine
from kern.learn.base import Extraction, list_model, partial_model, tool_parameters
from kern.learn.repair import repair_arguments
from kern.models.base import ToolSpec
from kern.models.openai import OpenAIChat, OpenAIResponses
from kern.models.openai._chat import chat_tools
from kern.models.openai._responses import response_tools
from kern.models.strict import is_strict, strict_problems, strict_schema
from kern.testing.learning import call, extract, memories, turn
from kern.testing.scripted_server import Reply, ScriptedServer, ToolCallReply, request_messages

DB_CLASSES = {"sqlite": SqliteDb, "sqlite-async": AsyncSqliteDb}

ALL_STORES = LearningMachine(
    user_profile=True,
    user_memory=True,
    session_context=True,
    entity_memory=True,
    learned_knowledge=True,
    decision_log=True,
)


@pytest.fixture(params=sorted(DB_CLASSES))
def db(request, tmp_path: Path):
    return DB_CLASSES[request.param](db_file=tmp_path / "kern.db")


def extraction_of(kind: str) -> Extraction:
    [store] = [s for s in ALL_STORES.stores if s.kind == kind]
    extraction = store.extraction()
    assert extraction is not None
    return extraction


def repaired(kind: str, arguments: Any) -> tuple[dict[str, Any] | None, list[str]]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    result = repair_arguments(extraction_of(kind).arguments, text)
    value = result.value.model_dump(exclude_none=True) if result.value is not None else None
    return value, [str(d) for d in result.dropped]


def tool_messages(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request_messages(body) if m["role"] == "tool"]


# -- the repair rule ----------------------------------------------------------------------


def test_a_wrong_field_is_dropped_and_the_other_fields_kept():
    value, dropped = repaired("user_profile", {"name": "Ada", "interests": "chess", "role": 5})
    assert value == {"name": "Ada"}
    assert dropped == [
        "interests: Input should be a valid list",
        "role: Input should be a valid string",
    ]


def test_an_invalid_list_item_is_dropped_and_the_valid_items_kept():
    value, dropped = repaired(
        "user_memory",
        {
            "memories": [
                {"content": "Ada likes tea"},
                {"topics": ["no content"]},  # a required field missing: the item goes
                {"content": "Ada has a cat", "topics": ["cats", 7]},  # one bad tag goes
                "just a string",
                {"content": "Ada sails", "topics": "sailing"},  # an optional field wrong
            ]
        },
    )
    assert value == {
        "memories": [
            {"content": "Ada likes tea", "topics": []},
            {"content": "Ada has a cat", "topics": ["cats"]},
            {"content": "Ada sails", "topics": []},
        ]
    }
    assert dropped == [
        "memories[1]: content: Field required",
        "memories[2].topics[1]: Input should be a valid string",
        "memories[3]: Input should be a valid dictionary or instance of MemoryItem",
        "memories[4].topics: Input should be a valid list",
    ]


def test_an_item_with_a_wrong_required_field_is_dropped_with_its_reasons():
    value, dropped = repaired(
        "user_memory", {"memories": [{"content": 5, "topics": [1]}, {"content": "ok"}]}
    )
    assert value == {"memories": [{"content": "ok", "topics": []}]}
    assert dropped == [
        "memories[0]: content: Input should be a valid string; topics[0]: Input should be a "
        "valid string"
    ]


def test_nested_items_lose_only_their_invalid_parts():
    value, dropped = repaired(
        "entity_memory",
        {
            "entities": [
                {
                    "name": "Acme",
                    "facts": ["makes rockets"],
                    "relationships": [{"relation": "rivals"}, {"relation": "owns", "target": "X"}],
                },
                {"facts": ["an entity without a name"]},
            ]
        },
    )
    assert value is not None
    [acme] = value["entities"]
    assert acme["facts"] == ["makes rockets"]
    assert acme["relationships"] == [{"relation": "owns", "target": "X"}]
    assert dropped == [
        "entities[0].relationships[0]: target: Field required",
        "entities[1]: name: Field required",
    ]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"memories": [{"content": "a"', "not valid JSON"),
        ("[1, 2]", "must be a JSON object, not list"),
        ("null", "must be a JSON object, not null"),
    ],
)
def test_arguments_that_are_not_a_json_object_keep_nothing(text, why):
    value, dropped = repaired("user_memory", text)
    assert value is None and dropped == [f"$: {why}"]


def test_valid_arguments_are_kept_as_they_are():
    result = repair_arguments(
        extraction_of("user_memory").arguments, json.dumps({"memories": [{"content": "x"}]})
    )
    assert result.ok and result.dropped == () and result.value is not None


# -- strict schemas -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", [store.kind for store in ALL_STORES.stores])
def test_every_store_extraction_schema_is_strict(kind):
    extraction = extraction_of(kind)
    assert strict_problems(extraction.spec.parameters) == []
    assert extraction.spec.strict is True


@pytest.mark.parametrize("kind", [store.kind for store in ALL_STORES.stores])
def test_every_agentic_tool_schema_is_strict(kind):
    from kern.learn.scope import LearningScope

    [store] = [s for s in ALL_STORES.stores if s.kind == kind]
    for tool in store.get_tools(LearningScope("ada", "s", None, "r", None)):
        assert strict_problems(tool.spec.parameters) == [], tool.spec.name
        assert tool.spec.strict is True


def full_instance(schema: dict[str, Any]) -> Any:
    """A value the strict schema allows, with every property present (nullable: None)."""
    if "anyOf" in schema:
        branches = schema["anyOf"]
        if {"type": "null"} in branches:
            return None
        return full_instance(branches[0])
    kind = schema.get("type")
    if kind == "object":
        return {name: full_instance(sub) for name, sub in schema["properties"].items()}
    if kind == "array":
        return [full_instance(schema["items"])]
    return {"string": "s", "integer": 1, "number": 1.5, "boolean": True}[kind]


@pytest.mark.parametrize("kind", [store.kind for store in ALL_STORES.stores])
def test_what_the_strict_schema_allows_validates_with_the_store_model(kind):
    extraction = extraction_of(kind)
    instance = full_instance(extraction.spec.parameters)
    assert repair_arguments(extraction.arguments, json.dumps(instance)).ok


class Node(BaseModel):
    """A recursive model."""

    label: str
    children: list[Node] = Field(default_factory=list)


class Custom(BaseModel):
    model_config = ConfigDict(extra="ignore")

    size: int = Field(3, ge=1, title="Size")
    colour: str | None = None
    mood: str = Field("calm", min_length=2)


def test_strict_schema_of_models_with_defaults_constraints_and_recursion():
    schema = strict_schema(Custom.model_json_schema())
    assert strict_problems(schema) == []
    assert schema["required"] == ["size", "colour", "mood"]
    assert schema["properties"]["size"] == {"type": "integer", "minimum": 1}
    assert schema["properties"]["mood"] == {"type": "string"}  # minLength is not strict
    assert {"type": "null"} in schema["properties"]["colour"]["anyOf"]

    recursive = strict_schema(list_model("Tree", "nodes", Node, "Nodes.").model_json_schema())
    assert strict_problems(recursive) == []
    assert recursive["$defs"]["Node"]["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
    partial = tool_parameters(partial_model(Custom))
    assert is_strict(partial) and partial["properties"]["size"]["anyOf"][1] == {"type": "null"}


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "object", "properties": {}}, "additionalProperties: false"),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "additionalProperties": False,
            },
            "every property must be required; not: ['a']",
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string", "default": "x"}},
                "required": ["a"],
                "additionalProperties": False,
            },
            "keyword 'default' is not supported",
        ),
        ({"anyOf": [{"type": "object"}]}, "the root must be"),
        (
            {
                "type": "object",
                "properties": {"a": {"$ref": "#/$defs/A"}},
                "required": ["a"],
                "additionalProperties": False,
            },
            "does not name one of the root's $defs",
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "array"}},
                "required": ["a"],
                "additionalProperties": False,
            },
            "an array must say what its items are",
        ),
    ],
)
def test_strict_problems_name_what_strict_mode_refuses(schema, problem):
    assert any(problem in p for p in strict_problems(schema)), strict_problems(schema)


def test_strict_is_sent_only_for_strict_specs():
    loose = ToolSpec(name="add", parameters={"type": "object", "properties": {}})
    strict = extraction_of("user_memory").spec
    assert "strict" not in chat_tools([loose])[0]["function"]
    assert chat_tools([strict])[0]["function"]["strict"] is True
    assert [t["strict"] for t in response_tools([loose, strict])] == [False, True]


# -- end to end: a misbehaving model -------------------------------------------------------

PROFILE = ToolCallReply("update_user_profile", {"name": "Ada", "interests": ["chess"]})
MEMORIES = memories("Ada likes tea.", "Ada has a cat.")


async def test_a_misbehaving_model_still_yields_the_valid_items_with_one_retry(db, scripted, model):
    agent = Agent(model=model, db=db, learning=True, user_id="ada")
    scripted.script(
        Reply.text("Hi Ada."),
        extract(
            PROFILE.with_value("interests", "chess"),  # a string where a list belongs
            MEMORIES.without("memories.1.content"),  # an item without its text
        ),
        # The retry: the model sends the fixed item, and the kept one again.
        extract(memories("Ada likes tea.", "Ada has a cat called Tom.")),
        Reply.text("never asked for"),
    )
    output = await turn(agent, "I'm Ada, I like tea and chess, and I have a cat.")
    assert output.content == "Hi Ada."
    assert len(scripted.chat_requests()) == 3 and scripted.pending == 1  # one retry, no more

    stored = sorted(m.content for m in await call(db, "list_memories", "ada"))
    assert stored == ["Ada has a cat called Tom.", "Ada likes tea."]  # tea stored once
    profile = await call(db, "query_learnings", kind="user_profile", user_id="ada")
    assert profile[0].content == {"name": "Ada"}

    retry = scripted.chat_requests()[2]
    assistant = [m for m in retry["messages"] if m["role"] == "assistant"][-1]
    assert [c["function"]["name"] for c in assistant["tool_calls"]] == [
        "update_user_profile",
        "save_user_memories",
    ]
    profile_error, memory_error = tool_messages(retry)
    assert "interests: Input should be a valid list" in profile_error
    assert "memories[1]: content: Field required" in memory_error
    assert "Everything else was saved" in memory_error

    metrics = {
        "calls": 2,
        "retries": 1,
        "failed_calls": 0,
        "invalid_calls": 2,
        "dropped_items": 2,
    }
    assert {k: output.metrics["extraction"][k] for k in metrics} == metrics
    assert output.metrics["model_calls"] == 1  # the answer's own count is unchanged
    # The run was stored, with its answer, before the extraction began: a crash while the
    # model extracts never loses an answered turn (the counts are in the output).
    run = await call(db, "get_run", output.run_id)
    assert run.output == output.content and "extraction" not in run.metrics


async def test_broken_json_is_retried_once(db, scripted, model):
    agent = Agent(model=model, db=db, learning=True, user_id="ada")
    scripted.script(
        Reply.text("Noted."),
        extract(MEMORIES.broken()),
        extract(MEMORIES),
    )
    output = await turn(agent, "I like tea and have a cat.")
    assert len(scripted.chat_requests()) == 3
    stored = sorted(m.content for m in await call(db, "list_memories", "ada"))
    assert stored == ["Ada has a cat.", "Ada likes tea."]

    retry = scripted.chat_requests()[2]
    echoed = [m for m in retry["messages"] if m["role"] == "assistant"][-1]["tool_calls"]
    assert echoed[0]["function"]["arguments"] == "{}"  # a history every server accepts
    [error] = tool_messages(retry)
    assert "not valid JSON" in error and MEMORIES.broken().arguments in error
    assert output.metrics["extraction"]["retries"] == 1
    assert output.metrics["extraction"]["dropped_items"] == 1


async def test_a_model_that_never_sends_valid_arguments_costs_one_extra_call(db, tmp_path):
    def responder(body: dict[str, Any]) -> Reply:
        if body.get("tools"):
            return extract(MEMORIES.broken())
        return Reply.text("unused")

    with ScriptedServer(responder=responder) as server:
        server.script(Reply.text("The answer."))
        model = OpenAIChat(id="scripted", base_url=server.base_url, api_key="test")
        agent = Agent(model=model, db=db, learning=True, user_id="ada")
        output = await turn(agent, "Remember that I like tea.")
        assert output.content == "The answer."
        assert len(server.chat_requests()) == 3  # the answer, the extraction, one retry
    run = await call(db, "get_run", output.run_id)
    assert run.output == "The answer."
    assert await call(db, "list_memories", "ada") == []
    assert output.metrics["extraction"]["calls"] == 2
    assert output.metrics["extraction"]["invalid_calls"] == 2
    assert output.metrics["extraction"]["dropped_items"] == 2


async def test_a_valid_extraction_or_none_at_all_is_not_retried(db, scripted, model):
    agent = Agent(model=model, db=db, learning=True, user_id="ada")
    scripted.script(Reply.text("ok"), extract(MEMORIES), Reply.text("ok"), Reply.text("nothing"))
    first = await turn(agent, "I like tea and have a cat.")
    second = await turn(agent, "Hello")
    assert len(scripted.chat_requests()) == 4
    for output in (first, second):
        assert output.metrics["extraction"]["calls"] == 1
        assert output.metrics["extraction"]["retries"] == 0
        assert output.metrics["extraction"]["dropped_items"] == 0


async def test_a_failed_retry_keeps_what_the_first_call_gave(db, scripted, model, caplog):
    agent = Agent(model=model, db=db, learning=True, user_id="ada")
    scripted.script(
        Reply.text("ok"),
        extract(MEMORIES.with_value("memories.1.content", 42)),
        Reply.error(500, "the retry broke"),
    )
    output = await turn(agent, "I like tea and have a cat.")
    assert [m.content for m in await call(db, "list_memories", "ada")] == ["Ada likes tea."]
    assert output.metrics["extraction"]["failed_calls"] == 1
    assert "learning extraction failed" in caplog.text


async def test_an_unknown_tool_is_told_to_the_model(db, scripted, model):
    agent = Agent(model=model, db=db, learning=True, user_id="ada")
    scripted.script(
        Reply.text("ok"),
        extract(ToolCallReply("save_memory", {"content": "Ada likes tea."})),
        extract(memories("Ada likes tea.")),
    )
    await turn(agent, "I like tea.")
    [error] = tool_messages(scripted.chat_requests()[2])
    assert "no tool named 'save_memory'" in error
    assert [m.content for m in await call(db, "list_memories", "ada")] == ["Ada likes tea."]


async def test_a_slow_extraction_is_waited_for_and_timed(db, scripted, model):
    agent = Agent(model=model, db=db, learning=True, user_id="ada")
    scripted.script(Reply.text("ok"), extract(MEMORIES).after(0.2))
    output = await turn(agent, "I like tea and have a cat.")
    assert len(await call(db, "list_memories", "ada")) == 2
    assert output.metrics["extraction"]["duration_s"] >= 0.2


def test_the_retry_works_through_the_responses_api(scripted, tmp_path):
    model = OpenAIResponses(id="scripted", base_url=scripted.base_url, api_key="test")
    agent = Agent(model=model, db=SqliteDb(db_file=tmp_path / "k.db"), learning=True)
    scripted.script(Reply.text("ok"), extract(MEMORIES.broken()), extract(MEMORIES))
    output = agent.run("I like tea and have a cat.", user_id="ada")
    first, retry = scripted.responses_requests()[1:]
    assert all(tool["strict"] is True for tool in first["tools"])
    kinds = [item.get("type") for item in retry["input"]]
    assert kinds[-2:] == ["function_call", "function_call_output"]
    assert output.metrics["extraction"]["retries"] == 1
    assert len(agent.db.list_memories("ada")) == 2  # type: ignore[union-attr]


def test_a_streamed_run_records_the_extraction_too(scripted, model, tmp_path):
    db = SqliteDb(db_file=tmp_path / "k.db")
    agent = Agent(model=model, db=db, learning=True, user_id="ada")
    scripted.script(Reply.text("Hi there."), extract(MEMORIES.broken()), extract(MEMORIES))
    events = list(agent.run("I like tea and have a cat.", stream=True))
    output = events[-1].output
    assert output is not None and output.content == "Hi there."
    assert output.metrics["extraction"]["retries"] == 1
    assert db.get_run(output.run_id).output == "Hi there."
