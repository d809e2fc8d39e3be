"""Learning machines end to end: a real database file and the real openai SDK against the
scripted server.

The scenarios take a ``db`` factory (``DB_FACTORIES``), so other backends can be added to
the parametrisation: each factory builds a fresh, isolated database in the test process and
says how a child process builds the same one.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from kern import plugins
from kern.agent import Agent
from kern.db.sqlite import AsyncSqliteDb, SqliteDb
from kern.effects import DbCall
from kern.errors import ConfigurationError, SyncAsyncMismatchError
from kern.hookspecs import hookimpl
from kern.learn import (
    DecisionLogStore,
    EntityMemoryStore,
    LearnedKnowledgeStore,
    LearningMachine,
    LearningMode,
    LearningStore,
    NotProposedError,
    OpenAIEmbedder,
    SessionContextStore,
    UserMemoryStore,
    UserProfile,
    UserProfileStore,
)
from kern.learn.text import cosine
from kern.plugins import LearningStoreSpec
from kern.records import Learning, LearningStatus, Memory, utcnow
from kern.testing.scripted_server import Reply, ToolCallReply, embed_text

# -- databases ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DbFactory:
    """How to get an isolated database for one test, here and in a child process."""

    name: str
    make: Callable[[Path], Any]
    #: (import line, expression) that builds the same database in another process.
    child: Callable[[Path], tuple[str, str]]


DB_FACTORIES = {
    "sqlite": DbFactory(
        "sqlite",
        lambda tmp: SqliteDb(db_file=tmp / "kern.db"),
        lambda tmp: (
            "from kern.db.sqlite import SqliteDb",
            f"SqliteDb(db_file={str(tmp / 'kern.db')!r})",
        ),
    ),
    "sqlite-async": DbFactory(
        "sqlite-async",
        lambda tmp: AsyncSqliteDb(db_file=tmp / "kern.db"),
        lambda tmp: (
            "from kern.db.sqlite import AsyncSqliteDb",
            f"AsyncSqliteDb(db_file={str(tmp / 'kern.db')!r})",
        ),
    ),
}


@pytest.fixture(params=sorted(DB_FACTORIES))
def factory(request) -> DbFactory:
    return DB_FACTORIES[request.param]


@pytest.fixture
def db(factory: DbFactory, tmp_path: Path):
    return factory.make(tmp_path)


# -- helpers -----------------------------------------------------------------------------


async def turn(agent: Agent, text: str, **kwargs: Any):
    if agent.db.is_async:
        return await agent.arun(text, **kwargs)
    return agent.run(text, **kwargs)


async def call(db: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    """A storage-contract call on a sync or async db."""
    result = getattr(db, method)(*args, **kwargs)
    return await result if db.is_async else result


async def lm_call(lm: LearningMachine, name: str, *args: Any, **kwargs: Any) -> Any:
    """``lm.<name>`` on a sync db, ``await lm.a<name>`` on an async one."""
    if lm.db.is_async:
        return await getattr(lm, "a" + name)(*args, **kwargs)
    return getattr(lm, name)(*args, **kwargs)


async def curate(lm: LearningMachine, name: str, *args: Any, **kwargs: Any) -> Any:
    if lm.db.is_async:
        return await getattr(lm.curator, "a" + name)(*args, **kwargs)
    return getattr(lm.curator, name)(*args, **kwargs)


def system_text(body: dict[str, Any]) -> str:
    return "\n".join(m["content"] or "" for m in body["messages"] if m["role"] == "system")


def tool_names(body: dict[str, Any]) -> list[str]:
    return [tool["function"]["name"] for tool in body.get("tools") or []]


def extract(*calls: ToolCallReply) -> Reply:
    """The scripted model's answer to an extraction request."""
    return Reply.tool_calls(*calls)


def memories(*contents: str) -> ToolCallReply:
    return ToolCallReply(
        "save_user_memories", {"memories": [{"content": content} for content in contents]}
    )


# -- the acceptance scenario: two processes, one database file ---------------------------

CHILD = """
import asyncio
from kern.agent import Agent
from kern.models.openai import OpenAIChat
{db_import}

db = {db_expr}
agent = Agent(
    model=OpenAIChat(id="scripted", base_url={base_url!r}, api_key="test"),
    db=db,
    learning=True,
)
if db.is_async:
    output = asyncio.run(agent.arun({text!r}, user_id={user!r}))
else:
    output = agent.run({text!r}, user_id={user!r})
print(output.run_id)
"""


def run_child(factory: DbFactory, tmp_path: Path, base_url: str, text: str, user: str) -> str:
    db_import, db_expr = factory.child(tmp_path)
    code = CHILD.format(
        db_import=db_import, db_expr=db_expr, base_url=base_url, text=text, user=user
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "KERN_"))}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


async def test_a_fact_is_recalled_in_a_new_process_for_that_user_only(
    factory, db, scripted, tmp_path
):
    fact = "Alice's favourite colour is teal."
    scripted.script(
        Reply.text("Teal is a lovely colour."),
        extract(memories(fact), ToolCallReply("update_user_profile", {"name": "Alice"})),
    )
    first_run = run_child(
        factory, tmp_path, scripted.base_url, "My favourite colour is teal.", "alice"
    )

    # The extraction request saw the whole turn, the answer included.
    extraction = scripted.chat_requests()[1]
    assert tool_names(extraction) == ["update_user_profile", "save_user_memories"]
    transcript = extraction["messages"][-1]["content"]
    assert "My favourite colour is teal." in transcript
    assert "Teal is a lovely colour." in transcript
    stored = await call(db, "list_memories", "alice")
    assert [(m.content, m.source_run_id) for m in stored] == [(fact, first_run)]

    scripted.clear()
    run_child(factory, tmp_path, scripted.base_url, "Which colour should I paint my door?", "alice")
    recalled = system_text(scripted.chat_requests()[0])
    assert fact in recalled
    assert "Alice" in recalled  # the profile

    scripted.clear()
    run_child(factory, tmp_path, scripted.base_url, "Which colour should I paint my door?", "bob")
    assert "teal" not in json.dumps(scripted.chat_requests()[0]["messages"])


# -- always ------------------------------------------------------------------------------


async def test_always_mode_records_every_item_with_its_run(db, scripted, model):
    agent = Agent(model=model, db=db, learning=True, user_id="ada")
    scripted.script(
        Reply.text("Hello Ada!"),
        extract(
            ToolCallReply(
                "update_user_profile",
                {"name": "Ada Lovelace", "role": "engineer", "preferences": ["short answers"]},
            ),
            memories("Ada is writing a compiler.", "Ada has a cat called Babbage."),
        ),
    )
    output = await turn(agent, "Hi, I'm Ada, an engineer writing a compiler.")
    assert output.content == "Hello Ada!"

    lm = agent.get_learning_machine()
    assert await lm_call(lm, "get_user_profile", "ada") == {
        "name": "Ada Lovelace",
        "role": "engineer",
        "preferences": ["short answers"],
    }
    rows = await call(db, "query_learnings", kind="user_profile", user_id="ada")
    assert [(r.source_run_id, r.status) for r in rows] == [(output.run_id, LearningStatus.ACTIVE)]
    stored = await call(db, "list_memories", "ada")
    assert sorted(m.content for m in stored) == [
        "Ada has a cat called Babbage.",
        "Ada is writing a compiler.",
    ]
    assert {m.source_run_id for m in stored} == {output.run_id}

    # A later turn updates the one profile (lists grow, scalars change) and does not
    # store a restated memory twice.
    scripted.script(
        Reply.text("Noted."),
        extract(
            ToolCallReply("update_user_profile", {"role": "CTO", "preferences": ["no emoji"]}),
            memories("ada is writing a compiler"),
        ),
    )
    second = await turn(agent, "I was promoted to CTO. Please, no emoji.")
    rows = await call(db, "query_learnings", kind="user_profile", user_id="ada")
    assert len(rows) == 1 and rows[0].source_run_id == second.run_id
    assert rows[0].content == {
        "name": "Ada Lovelace",
        "role": "CTO",
        "preferences": ["short answers", "no emoji"],
    }
    assert len(await call(db, "list_memories", "ada")) == 2

    # And both reach the model's context.
    await turn(agent, "What is my cat called?")
    context = system_text(scripted.chat_requests()[-2])
    assert "Ada has a cat called Babbage." in context
    assert "Role: CTO" in context


async def test_nothing_is_learned_for_an_anonymous_user(db, scripted, model):
    agent = Agent(model=model, db=db, learning=True)
    await turn(agent, "My name is Ada.")
    # One model call: the answer. No extraction, since nobody to learn about.
    assert len(scripted.chat_requests()) == 1


async def test_a_failed_extraction_does_not_fail_the_answered_turn(db, scripted, model, caplog):
    agent = Agent(model=model, db=db, learning=True, user_id="ada")
    scripted.script(Reply.text("Hi."), Reply.error(500, "extraction broke"))
    output = await turn(agent, "Hello")
    assert output.content == "Hi."
    assert await call(db, "get_run", output.run_id) is not None
    assert "learning extraction failed" in caplog.text


async def test_invalid_extraction_arguments_are_ignored(db, scripted, model):
    agent = Agent(model=model, db=db, learning=True, user_id="ada")
    scripted.script(
        Reply.text("Hi."),
        extract(
            ToolCallReply("save_user_memories", {"memories": "not a list"}),
            memories("Ada likes tea."),
        ),
    )
    await turn(agent, "I like tea")
    assert [m.content for m in await call(db, "list_memories", "ada")] == ["Ada likes tea."]


# -- agentic -----------------------------------------------------------------------------


async def test_agentic_mode_gives_the_model_tools_that_write_during_the_turn(db, scripted, model):
    machine = LearningMachine(
        user_profile=LearningMode.AGENTIC,
        user_memory=LearningMode.AGENTIC,
        decision_log=LearningMode.AGENTIC,
    )
    agent = Agent(model=model, db=db, learning=machine, user_id="ada", agent_id="helper")
    scripted.script(
        Reply.tool_calls(
            ToolCallReply("save_memory", {"content": "Ada runs marathons."}),
            ToolCallReply("update_user_profile", {"name": "Ada"}),
            ToolCallReply(
                "log_decision",
                {"decision": "Suggest a training plan", "reasoning": "Ada runs marathons"},
            ),
        ),
        Reply.text("Saved."),
    )
    output = await turn(agent, "I run marathons, I'm Ada.")

    first = scripted.chat_requests()[0]
    assert {"save_memory", "update_user_profile", "log_decision"} <= set(tool_names(first))
    assert "save_memory" in system_text(first)  # the model is told it can save
    assert len(scripted.chat_requests()) == 2  # no extraction call in agentic mode
    tool_results = [
        m["content"] for m in scripted.chat_requests()[1]["messages"] if m["role"] == "tool"
    ]
    assert tool_results == ["Saved to memory.", "Profile updated.", "Saved."]

    [memory] = await call(db, "list_memories", "ada")
    assert memory.content == "Ada runs marathons." and memory.source_run_id == output.run_id
    [decision] = await call(db, "query_learnings", kind="decision_log")
    assert decision.namespace == "agent:helper" and decision.source_run_id == output.run_id
    assert decision.content["decision"] == "Suggest a training plan"

    await turn(agent, "How should I train for marathons this week?")
    context = system_text(scripted.chat_requests()[-1])
    assert "Ada runs marathons." in context
    assert "Suggest a training plan" in context
    assert "Name: Ada" in context


async def test_agentic_tool_errors_are_told_to_the_model(db, scripted, model):
    agent = Agent(
        model=model,
        db=db,
        learning=LearningMachine(user_memory="agentic", user_profile=False),
        user_id="ada",
    )
    scripted.script(
        Reply.tool_calls(ToolCallReply("save_memory", {"topics": ["x"]})),
        Reply.text("Sorry."),
    )
    await turn(agent, "remember this")
    [tool] = [m for m in scripted.chat_requests()[1]["messages"] if m["role"] == "tool"]
    assert tool["content"].startswith("Error: invalid arguments for save_memory")
    assert await call(db, "list_memories", "ada") == []


# -- propose -----------------------------------------------------------------------------


async def test_proposals_are_recalled_only_once_approved(db, scripted, model):
    machine = LearningMachine(mode="propose", learned_knowledge=True)
    agent = Agent(model=model, db=db, learning=machine, user_id="ada")
    scripted.script(
        Reply.text("Sure."),
        extract(
            memories("Ada is allergic to peanuts."),
            ToolCallReply("update_user_profile", {"name": "Ada"}),
            ToolCallReply(
                "save_learnings",
                {
                    "learnings": [
                        {"title": "Allergy menus", "learning": "Always ask about allergies"}
                    ]
                },
            ),
        ),
    )
    output = await turn(agent, "Plan a dinner for me. I'm Ada and allergic to peanuts.")
    lm = agent.get_learning_machine()

    queue = await lm_call(lm, "pending", user_id="ada")
    assert sorted(p.kind for p in queue) == ["user_memory", "user_profile"]
    shared = await lm_call(lm, "pending", namespace="global")
    assert [p.kind for p in shared] == ["learned_knowledge"]
    assert {p.source_run_id for p in [*queue, *shared]} == {output.run_id}
    assert all(p.status is LearningStatus.PROPOSED for p in [*queue, *shared])
    assert await call(db, "list_memories", "ada") == []

    await turn(agent, "Any dinner ideas with peanuts or allergies in mind?")
    context = system_text(scripted.chat_requests()[-2])
    assert "peanuts" not in context and "allergies" not in context.casefold()

    memory_proposal = next(p for p in queue if p.kind == "user_memory")
    profile_proposal = next(p for p in queue if p.kind == "user_profile")
    approved = await lm_call(lm, "approve", memory_proposal.learning_id)
    assert isinstance(approved, Memory)
    assert approved.memory_id == memory_proposal.learning_id
    assert approved.source_run_id == output.run_id
    assert (await lm_call(lm, "approve", profile_proposal.learning_id)).status is (
        LearningStatus.ACTIVE
    )
    rejected = await lm_call(lm, "reject", shared[0].learning_id)
    assert rejected.status is LearningStatus.REJECTED
    with pytest.raises(NotProposedError, match="rejected, not proposed"):
        await lm_call(lm, "approve", shared[0].learning_id)
    assert await lm_call(lm, "pending") == []

    await turn(agent, "Any dinner ideas with peanuts or allergies in mind?")
    context = system_text(scripted.chat_requests()[-2])
    assert "Ada is allergic to peanuts." in context
    assert "Name: Ada" in context
    assert "Always ask about allergies" not in context


async def test_approving_a_profile_proposal_merges_it_and_keeps_the_history(db, scripted, model):
    machine = LearningMachine(user_profile=UserProfileStore(mode="propose"), user_memory=False)
    agent = Agent(model=model, db=db, learning=machine, user_id="ada")
    lm = agent.get_learning_machine()
    for update in ({"name": "Ada", "interests": ["chess"]}, {"interests": ["go"], "role": "dev"}):
        scripted.script(Reply.text("ok"), extract(ToolCallReply("update_user_profile", update)))
        await turn(agent, "about me")
        [proposal] = await lm_call(lm, "pending", user_id="ada")
        await lm_call(lm, "approve", proposal.learning_id)
    assert await lm_call(lm, "get_user_profile", "ada") == {
        "name": "Ada",
        "interests": ["chess", "go"],
        "role": "dev",
    }
    rows = await call(db, "query_learnings", kind="user_profile", user_id="ada")
    assert sorted(r.status.value for r in rows) == ["active", "superseded"]


async def test_a_rejected_item_is_not_proposed_again(db, scripted, model):
    machine = LearningMachine(stores=[LearnedKnowledgeStore(mode="propose")])
    agent = Agent(model=model, db=db, learning=machine, user_id="ada")
    lm = agent.get_learning_machine()
    insight = {"learnings": [{"title": "Units", "learning": "Ask which units the user wants"}]}
    scripted.script(Reply.text("ok"), extract(ToolCallReply("save_learnings", insight)))
    await turn(agent, "convert 5 miles")
    [proposal] = await lm_call(lm, "pending")
    await lm_call(lm, "reject", proposal.learning_id)
    scripted.script(Reply.text("ok"), extract(ToolCallReply("save_learnings", insight)))
    await turn(agent, "convert 5 miles again")
    assert await lm_call(lm, "pending") == []


# -- namespaces --------------------------------------------------------------------------


def insight(title: str, text: str) -> ToolCallReply:
    return ToolCallReply("save_learnings", {"learnings": [{"title": title, "learning": text}]})


async def test_user_namespace_items_are_invisible_to_other_users(db, scripted, model):
    machine = LearningMachine(stores=[LearnedKnowledgeStore(namespace="user")])
    agent = Agent(model=model, db=db, learning=machine)
    scripted.script(
        Reply.text("ok"), extract(insight("Deploys", "Deploy the zephyr service on Fridays"))
    )
    await turn(agent, "How do we deploy zephyr?", user_id="alice")
    [row] = await call(db, "query_learnings", kind="learned_knowledge")
    assert (row.namespace, row.user_id) == ("user", "alice")

    await turn(agent, "When should I deploy zephyr?", user_id="bob")
    assert "Fridays" not in json.dumps(scripted.chat_requests()[-2]["messages"])
    await turn(agent, "When should I deploy zephyr?", user_id="alice")
    assert "Deploy the zephyr service on Fridays" in system_text(scripted.chat_requests()[-2])

    # The filter is in the storage query, not the prompt: bob's search returns nothing.
    found = await call(
        db,
        "search_learnings",
        "zephyr",
        kind="learned_knowledge",
        namespace="user",
        user_id="bob",
    )
    assert found == []


async def test_global_namespace_is_shared_by_every_user(db, scripted, model):
    agent = Agent(model=model, db=db, learning=LearningMachine(stores=["learned_knowledge"]))
    scripted.script(Reply.text("ok"), extract(insight("Zephyr", "Zephyr needs a warm cache")))
    await turn(agent, "zephyr is slow", user_id="alice")
    [row] = await call(db, "query_learnings", kind="learned_knowledge")
    assert (row.namespace, row.user_id) == ("global", None)
    await turn(agent, "why is zephyr slow?", user_id="bob")
    assert "Zephyr needs a warm cache" in system_text(scripted.chat_requests()[-2])


async def test_custom_namespace_is_visible_only_to_agents_configured_with_it(db, scripted, model):
    def agent_in(namespace: str | None) -> Agent:
        store = (
            LearnedKnowledgeStore()
            if namespace is None
            else LearnedKnowledgeStore(namespace=namespace)
        )
        return Agent(model=model, db=db, learning=LearningMachine(stores=[store]))

    scripted.script(
        Reply.text("ok"), extract(insight("Releases", "Release trains leave on Tuesdays"))
    )
    await turn(agent_in("engineering"), "when are release trains?", user_id="alice")
    [row] = await call(db, "query_learnings", kind="learned_knowledge")
    assert row.namespace == "engineering"

    question = "When do release trains leave?"
    await turn(agent_in("engineering"), question, user_id="bob")
    assert "Tuesdays" in system_text(scripted.chat_requests()[-2])
    for other in ("sales_west", None):
        await turn(agent_in(other), question, user_id="alice")
        assert "Tuesdays" not in json.dumps(scripted.chat_requests()[-2]["messages"])


async def test_machine_namespace_is_the_default_of_namespaced_stores(db, scripted, model):
    machine = LearningMachine(
        entity_memory=True, learned_knowledge=True, decision_log=True, namespace="sales"
    )
    stores = {store.kind: store for store in machine.stores}
    assert stores["entity_memory"].namespace == "sales"
    assert stores["learned_knowledge"].namespace == "sales"
    assert stores["decision_log"].namespace is None  # per agent unless given one


def test_bad_namespaces_are_refused():
    with pytest.raises(TypeError, match="namespace"):
        UserMemoryStore(namespace="x")  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="no namespaces"):
        UserProfileStore(namespace="x")
    with pytest.raises(ConfigurationError, match="reserved"):
        LearnedKnowledgeStore(namespace="agent:x")
    with pytest.raises(ConfigurationError, match="decision log only"):
        EntityMemoryStore(namespace="agent")
    with pytest.raises(ConfigurationError, match="non-empty"):
        LearnedKnowledgeStore(namespace=" ")


# -- the other stores --------------------------------------------------------------------


async def test_entity_memory_merges_facts_per_entity(db, scripted, model):
    agent = Agent(
        model=model, db=db, learning=LearningMachine(stores=["entity_memory"]), user_id="ada"
    )
    acme = {
        "name": "Acme Corp",
        "entity_type": "company",
        "facts": ["Acme makes rockets"],
        "relationships": [{"relation": "competes with", "target": "Globex"}],
    }
    scripted.script(Reply.text("ok"), extract(ToolCallReply("save_entities", {"entities": [acme]})))
    first = await turn(agent, "Acme makes rockets and competes with Globex.")
    update = {
        "name": "acme corp.",
        "events": ["Acme launched in 2024"],
        "facts": ["Acme makes rockets"],
    }
    scripted.script(
        Reply.text("ok"), extract(ToolCallReply("save_entities", {"entities": [update]}))
    )
    second = await turn(agent, "Acme launched in 2024.")

    [row] = await call(db, "query_learnings", kind="entity_memory")
    assert row.entity_id == "acme-corp" and row.namespace == "global" and row.user_id is None
    assert row.content["facts"] == ["Acme makes rockets"]
    assert row.content["events"] == ["Acme launched in 2024"]
    assert row.source_run_id == second.run_id != first.run_id

    await turn(agent, "Tell me about Acme", user_id="bob")
    context = system_text(scripted.chat_requests()[-2])
    assert "Acme Corp (company)" in context
    assert "competes with Globex" in context
    assert "Event: Acme launched in 2024" in context


async def test_session_context_is_one_document_per_session(db, scripted, model):
    agent = Agent(model=model, db=db, learning=LearningMachine(session_context=True), user_id="ada")
    plan = {"goal": "Move to Lisbon", "plan": ["find a flat", "ship boxes"]}
    scripted.script(Reply.text("ok"), extract(ToolCallReply("update_session_context", plan)))
    await turn(agent, "Help me move to Lisbon", session_id="move")
    step = {"plan": ["ship boxes"], "progress": ["found a flat"]}
    scripted.script(Reply.text("ok"), extract(ToolCallReply("update_session_context", step)))
    await turn(agent, "I found a flat!", session_id="move")

    [row] = await call(db, "query_learnings", kind="session_context")
    assert row.session_id == "move" and row.user_id == "ada"
    assert row.content == {
        "goal": "Move to Lisbon",
        "plan": ["ship boxes"],
        "progress": ["found a flat"],
    }
    await turn(agent, "What next?", session_id="move")
    context = system_text(scripted.chat_requests()[-2])
    assert "Goal: Move to Lisbon" in context and "1. ship boxes" in context
    await turn(agent, "What next?", session_id="other")
    assert "Lisbon" not in json.dumps(scripted.chat_requests()[-2]["messages"])


async def test_decision_log_is_per_agent(db, scripted, model):
    def agent(agent_id: str) -> Agent:
        return Agent(
            model=model,
            db=db,
            agent_id=agent_id,
            learning=LearningMachine(stores=[DecisionLogStore()]),
        )

    decision = {"decision": "Use Postgres for billing", "reasoning": "needs transactions"}
    scripted.script(
        Reply.text("ok"), extract(ToolCallReply("log_decisions", {"decisions": [decision]}))
    )
    await turn(agent("architect"), "Which database for billing?")
    await turn(agent("architect"), "Remind me: which database for billing?")
    assert "Use Postgres for billing (because needs transactions)" in system_text(
        scripted.chat_requests()[-2]
    )
    await turn(agent("intern"), "Which database for billing?")
    assert "Postgres" not in json.dumps(scripted.chat_requests()[-2]["messages"])


class Preferences(UserProfile):
    favourite_language: str | None = Field(None, description="Their favourite language.")
    pets: list[str] = Field(default_factory=list, description="Their pets' names.")


async def test_custom_profile_schema(db, scripted, model):
    machine = LearningMachine(user_profile=UserProfileStore(schema=Preferences), user_memory=False)
    agent = Agent(model=model, db=db, learning=machine, user_id="ada")
    scripted.script(
        Reply.text("ok"),
        extract(
            ToolCallReply("update_user_profile", {"favourite_language": "OCaml", "pets": ["Rex"]})
        ),
    )
    await turn(agent, "I love OCaml and my dog Rex.")
    parameters = scripted.chat_requests()[1]["tools"][0]["function"]["parameters"]
    assert {"favourite_language", "pets", "name"} <= set(parameters["properties"])
    await turn(agent, "Which language do I like?")
    context = system_text(scripted.chat_requests()[-2])
    assert "Favourite language: OCaml" in context and "Pets: Rex" in context

    with pytest.raises(ConfigurationError, match="must subclass"):
        UserProfileStore(schema=dict)  # type: ignore[arg-type]


# -- recall scales -----------------------------------------------------------------------


async def test_recall_is_ranked_and_bounded(db, scripted, model):
    for n in range(60):
        await call(
            db, "upsert_memory", Memory(user_id="ada", content=f"Ada visited city number {n}.")
        )
    await call(db, "upsert_memory", Memory(user_id="ada", content="Ada's sister lives in Oslo."))
    for n in range(60):
        await call(db, "upsert_memory", Memory(user_id="ada", content=f"Ada read book number {n}."))
    await call(db, "upsert_memory", Memory(user_id="bob", content="Bob's sister lives in Oslo."))
    machine = LearningMachine(user_memory=UserMemoryStore(limit=4, recent=2))
    agent = Agent(model=model, db=db, learning=machine, user_id="ada")
    await turn(agent, "Where does my sister live?")
    context = system_text(scripted.chat_requests()[0])
    lines = [line for line in context.splitlines() if line.startswith("- ")]
    assert "- Ada's sister lives in Oslo." in lines
    assert len(lines) <= 6  # limit + recent, out of 121
    assert "Bob" not in context


# -- plugins: third-party stores, backend-specific implementations ------------------------


class NotesStore(LearningStore):
    """A third-party store: recalls the user's notes, stores one note per turn."""

    kind = "my_notes"
    per_user = True

    def recall(self, scope, query):
        rows = yield DbCall(
            "query_learnings",
            (),
            {"kind": self.kind, "user_id": scope.user_id, "status": LearningStatus.ACTIVE},
        )
        return rows

    def build_context(self, items):
        if not items:
            return ""
        return "Notes:\n" + "\n".join(f"- {item.content['text']}" for item in items)

    def process(self, scope, run, model, extracted=()):
        note = Learning(
            kind=self.kind,
            user_id=scope.user_id,
            content={"text": f"asked: {run.input}"},
            source_run_id=scope.run_id,
        )
        yield DbCall("upsert_learning", (note,))


class NotesPlugin:
    @hookimpl
    def register_learning_stores(self, register):
        register(LearningStoreSpec(kind="my_notes", store=NotesStore))


@pytest.mark.parametrize(
    "configured", ["my_notes", NotesStore, NotesStore()], ids=["kind", "class", "instance"]
)
async def test_a_third_party_store_registered_through_the_hook(db, scripted, model, configured):
    with plugins.registered(NotesPlugin()):
        assert plugins.registry().learning_stores[("my_notes", None)].store is NotesStore
        machine = LearningMachine(stores=[configured, "user_memory"])
        agent = Agent(model=model, db=db, learning=machine, user_id="ada")
        first = await turn(agent, "first question")
        [note] = await call(db, "query_learnings", kind="my_notes")
        assert note.content == {"text": "asked: first question"}
        assert note.source_run_id == first.run_id
        await turn(agent, "second question")
        assert "- asked: first question" in system_text(scripted.chat_requests()[-2])


def test_an_unknown_kind_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="no learning store of kind 'nope'"):
        LearningMachine(stores=["nope"])
    with pytest.raises(ConfigurationError, match="configured twice"):
        LearningMachine(stores=["user_memory", UserMemoryStore()])


class SqliteMemoryStore(UserMemoryStore):
    """What a backend plugin would register: its own implementation of a kind."""

    def build_context(self, items):
        return "[sqlite-specific memory store]\n" + super().build_context(items)


class PostgresMemoryStore(UserMemoryStore):
    pass


class BackendStoresPlugin:
    @hookimpl
    def register_learning_stores(self, register):
        register(LearningStoreSpec("user_memory", SqliteMemoryStore, backend="sqlite"))
        register(LearningStoreSpec("user_memory", PostgresMemoryStore, backend="postgres"))


async def test_a_backend_specific_store_is_preferred_on_its_backend(db, scripted, model):
    with plugins.registered(BackendStoresPlugin()):
        machine = LearningMachine(user_memory=UserMemoryStore(limit=7), user_profile=False)
        [on_sqlite] = machine.stores_for("sqlite")
        [on_postgres] = machine.stores_for("postgres")
        [elsewhere] = machine.stores_for("duckdb")
        assert type(on_sqlite) is SqliteMemoryStore and on_sqlite.limit == 7
        assert type(on_postgres) is PostgresMemoryStore
        assert type(elsewhere) is UserMemoryStore and elsewhere.limit == 7

        agent = Agent(model=model, db=db, learning=machine, user_id="ada")
        await call(db, "upsert_memory", Memory(user_id="ada", content="Ada likes tea."))
        await turn(agent, "tea?")
        assert "[sqlite-specific memory store]" in system_text(scripted.chat_requests()[0])

        # A subclass the user chose explicitly is kept as it is.
        class Mine(UserMemoryStore):
            pass

        assert type(LearningMachine(stores=[Mine()]).stores_for("sqlite")[0]) is Mine
    [generic] = machine.stores_for("sqlite")  # the plugin is gone: back to the generic store
    assert type(generic) is UserMemoryStore


# -- the curator -------------------------------------------------------------------------


async def test_prune_removes_exactly_what_its_dry_run_reported(db, scripted, model):
    now = utcnow()
    ages = {"a": 400, "b": 120, "c": 91, "d": 30, "e": 5, "f": 1, "g": 0}
    ids = {}
    for name, days in ages.items():
        memory = Memory(
            user_id="alice", content=f"memory {name}", created_at=now - timedelta(days=days)
        )
        ids[name] = (await call(db, "upsert_memory", memory)).memory_id
    await call(
        db,
        "upsert_memory",
        Memory(user_id="bob", content="old", created_at=now - timedelta(days=400)),
    )
    lm = Agent(model=model, db=db, learning=True).get_learning_machine()

    dry = await curate(lm, "prune", user_id="alice", max_age_days=90, dry_run=True)
    assert dry.dry_run and sorted(dry.ids) == sorted(ids[n] for n in "abc")
    assert {item.reason for item in dry} == {"age"}
    assert len(await call(db, "list_memories", "alice")) == 7  # nothing changed

    real = await curate(lm, "prune", user_id="alice", max_age_days=90)
    assert real.ids == dry.ids and not real.dry_run
    left = {m.memory_id for m in await call(db, "list_memories", "alice")}
    assert left == {ids[n] for n in "defg"}
    assert len(await call(db, "list_memories", "bob")) == 1  # another user's: untouched

    dry = await curate(lm, "prune", user_id="alice", max_count=2, dry_run=True)
    assert sorted(dry.ids) == sorted([ids["d"], ids["e"]])
    assert {item.reason for item in dry} == {"count"}
    real = await curate(lm, "prune", user_id="alice", max_count=2)
    assert real.ids == dry.ids
    left = {m.memory_id for m in await call(db, "list_memories", "alice")}
    assert left == {ids["f"], ids["g"]}


async def test_deduplicate_removes_exactly_what_its_dry_run_reported(db, scripted, model):
    now = utcnow()
    texts = [
        ("Alice likes green tea.", 10),
        ("alice LIKES green tea", 5),  # exact duplicate once normalised; newer
        ("Alice likes  green-tea!", 7),  # exact duplicate too
        ("Alice lives in Lisbon, Portugal, near the river.", 9),
        ("Alice lives in Lisbon Portugal near the river", 3),  # newest of its group
        ("Alice lives in Lisbon, Portugal, near the old river.", 4),  # near duplicate
        ("Alice has two cats.", 2),
    ]
    ids = []
    for content, days in texts:
        memory = Memory(user_id="alice", content=content, created_at=now - timedelta(days=days))
        ids.append((await call(db, "upsert_memory", memory)).memory_id)
    await call(db, "upsert_memory", Memory(user_id="bob", content="Alice likes green tea."))
    lm = Agent(model=model, db=db, learning=True).get_learning_machine()

    dry = await curate(lm, "deduplicate", user_id="alice", dry_run=True)
    by_id = {item.id: item for item in dry}
    assert set(by_id) == {ids[0], ids[2], ids[3], ids[5]}
    assert by_id[ids[0]].reason == "exact duplicate" and by_id[ids[0]].duplicate_of == ids[1]
    assert by_id[ids[2]].duplicate_of == ids[1]
    assert by_id[ids[3]].duplicate_of == ids[4]
    assert by_id[ids[5]].reason == "near duplicate" and by_id[ids[5]].duplicate_of == ids[4]
    assert len(await call(db, "list_memories", "alice")) == 7

    real = await curate(lm, "deduplicate", user_id="alice")
    assert real.ids == dry.ids
    left = {m.memory_id for m in await call(db, "list_memories", "alice")}
    assert left == {ids[1], ids[4], ids[6]}
    assert len(await call(db, "list_memories", "bob")) == 1
    assert (await curate(lm, "deduplicate", user_id="alice")).ids == []


async def test_deduplicate_with_embeddings_from_the_scripted_server(db, scripted, model):
    older = "The user loves strong black coffee in the morning"
    newer = "In the morning the user loves black coffee"
    assert cosine(embed_text(older), embed_text(newer)) >= 0.9  # similar vectors...
    now = utcnow()
    for content, days in ((older, 2), (newer, 1), ("The user has a red bicycle", 3)):
        memory = Memory(user_id="ada", content=content, created_at=now - timedelta(days=days))
        await call(db, "upsert_memory", memory)
    plain = Agent(model=model, db=db, learning=True).get_learning_machine()
    options = {"user_id": "ada", "threshold": 0.95, "embedding_threshold": 0.9, "dry_run": True}
    # ...but not similar enough as token sets (Jaccard 7/8 < 0.95).
    assert (await curate(plain, "deduplicate", **options)).ids == []

    embedder = OpenAIEmbedder(base_url=scripted.base_url, api_key="test")
    machine = LearningMachine(embedder=embedder)
    lm = Agent(model=model, db=db, learning=machine).get_learning_machine()
    dry = await curate(lm, "deduplicate", **options)
    assert [(item.text, item.reason) for item in dry] == [(older, "embedding duplicate")]
    assert any(r.path.endswith("/embeddings") for r in scripted.requests)
    real = await curate(lm, "deduplicate", **{**options, "dry_run": False})
    assert real.ids == dry.ids
    assert sorted(m.content for m in await call(db, "list_memories", "ada")) == [
        newer,
        "The user has a red bicycle",
    ]


async def test_curating_learnings_of_other_kinds(db, scripted, model):
    now = utcnow()
    for n, days in enumerate((100, 50, 1)):
        await call(
            db,
            "upsert_learning",
            Learning(
                kind="learned_knowledge",
                content={"title": f"t{n}", "learning": f"insight number {n}"},
                created_at=now - timedelta(days=days),
            ),
        )
    lm = Agent(model=model, db=db, learning=True).get_learning_machine()
    report = await curate(lm, "prune", kinds=["learned_knowledge"], max_age_days=60)
    assert [item.text for item in report] == ["insight number 0"]
    assert len(await call(db, "query_learnings", kind="learned_knowledge")) == 2
    with pytest.raises(ConfigurationError, match="pass user_id"):
        await curate(lm, "prune", max_age_days=1)
    with pytest.raises(ConfigurationError, match="max_age_days=, max_count="):
        await curate(lm, "prune", user_id="ada")


def test_sync_api_on_an_async_db_names_the_fix(tmp_path, model):
    lm = Agent(model=model, db=AsyncSqliteDb(db_file=tmp_path / "a.db"), learning=True)
    machine = lm.get_learning_machine()
    with pytest.raises(SyncAsyncMismatchError, match=r"await lm\.aapprove"):
        machine.approve("x")
    with pytest.raises(SyncAsyncMismatchError, match=r"await lm\.curator\.aprune"):
        machine.curator.prune(user_id="a", max_age_days=1)


def test_an_agent_without_learning_has_no_machine(model):
    with pytest.raises(ConfigurationError, match="learning=True"):
        Agent(model=model).get_learning_machine()


def test_a_machine_without_db_says_how_to_get_one():
    with pytest.raises(ConfigurationError, match="get_learning_machine"):
        LearningMachine().pending()


async def test_unconfigured_kinds_can_still_be_approved(db, scripted, model):
    proposal = Learning(
        kind="entity_memory",
        entity_id="acme",
        content={"name": "Acme", "facts": ["makes rockets"]},
        status=LearningStatus.PROPOSED,
    )
    await call(db, "upsert_learning", proposal)
    lm = Agent(model=model, db=db, learning=True).get_learning_machine()
    approved = await lm_call(lm, "approve", proposal.learning_id)
    assert approved.status is LearningStatus.ACTIVE
    assert approved.content == {"name": "Acme", "facts": ["makes rockets"]}


def test_learning_true_is_profile_and_memory_in_always_mode(model):
    agent = Agent(model=model, learning=True)
    assert [(s.kind, s.mode) for s in agent.learning.stores] == [
        ("user_profile", LearningMode.ALWAYS),
        ("user_memory", LearningMode.ALWAYS),
    ]
    machine = LearningMachine(
        session_context=True,
        entity_memory={"namespace": "sales", "limit": 3},
        learned_knowledge=LearnedKnowledgeStore(mode="agentic"),
        decision_log="propose",
        mode="agentic",
    )
    assert [(s.kind, s.mode.value) for s in machine.stores] == [
        ("user_profile", "agentic"),
        ("user_memory", "agentic"),
        ("session_context", "agentic"),
        ("entity_memory", "agentic"),
        ("learned_knowledge", "agentic"),
        ("decision_log", "propose"),
    ]
    assert machine.stores[3].namespace == "sales" and machine.stores[3].limit == 3
    assert isinstance(machine.stores[2], SessionContextStore)
    with pytest.raises(ConfigurationError, match="unknown learning mode"):
        LearningMachine(mode="sometimes")


def test_the_async_twins_exist():
    lm = LearningMachine()
    for name in ("approve", "reject", "pending", "get_user_profile"):
        assert asyncio.iscoroutinefunction(getattr(lm, "a" + name))
    curator = lm.curator
    assert asyncio.iscoroutinefunction(curator.aprune)
    assert asyncio.iscoroutinefunction(curator.adeduplicate)


class HouseRules(LearningStore):
    """A store needing no database: plain methods, no generators."""

    kind = "house_rules"

    def recall(self, scope, query):
        return ["Answer in French."]

    def build_context(self, items):
        return "House rules:\n" + "\n".join(f"- {rule}" for rule in items)

    def process(self, scope, run, model, extracted=()):
        return None


async def test_a_store_may_use_plain_methods(db, scripted, model):
    agent = Agent(model=model, db=db, learning=LearningMachine(stores=[HouseRules]))
    await turn(agent, "hello", user_id="ada")
    assert "- Answer in French." in system_text(scripted.chat_requests()[0])
    assert len(scripted.chat_requests()) == 1  # no extraction: the store has no tool
