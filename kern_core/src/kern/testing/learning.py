"""The learning acceptance suite: a learning machine end to end on one backend.

The conformance suite (``kern.testing.conformance``) holds a backend to the storage
contract call by call; this suite checks what a user of ``Agent(learning=...)`` relies on,
with real turns against the scripted model server, on the backend's own database:

- a fact stated in one process is recalled in a new process, for that user and no other;
- Always mode (extraction after the answer), Agentic mode (tools during the turn) and
  Propose mode (nothing recalled until approved through the API);
- a model sending invalid arguments loses only the invalid parts, is asked again once,
  and the counts are stored with the run;
- namespaces (``"user"``, ``"global"``, custom) enforced in the storage queries;
- session context, entity memory and the decision log read back by their own keys;
- recall is ranked and bounded, never every memory;
- ``prune`` and ``deduplicate`` change exactly what their dry run reported;
- a third-party store registered through the hook stores and recalls on this backend;
- background learning: the pending marker is written before the answer returns, claimed by
  exactly one of two claimers (compare-and-set on this backend), and a pending run is
  finished exactly once by ``resume_pending``.

Subclass contract
-----------------
A plugin's test module subclasses ``LearningAcceptance`` once per Db class (sync and async)
under a name pytest collects (``Test*``) and provides ``db_factory(self, tmp_path)``,
returning a recipe ``("module:Class", kwargs)`` that every process can build (a file under
``tmp_path`` or a server URL), exactly as for the conformance suite. The database should be
fresh for each test (the suite counts rows). For example::

    from kern.testing.learning import LearningAcceptance

    class TestSqliteLearning(LearningAcceptance):
        def db_factory(self, tmp_path):
            return "kern.db.sqlite:SqliteDb", {"db_file": str(tmp_path / "kern.db")}

The suite starts its own scripted model server (one per test class). Each test is a
coroutine: with an async Db it awaits ``arun``, with a sync one it calls ``run``, as user
code does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import BaseModel

from kern import plugins, storage
from kern.agent import Agent
from kern.effects import Turn
from kern.hookspecs import hookimpl
from kern.learn import (
    DecisionLogStore,
    LearnedKnowledgeStore,
    LearningMachine,
    LearningMode,
    LearningScope,
    LearningStore,
    NotProposedError,
    UserMemoryStore,
)
from kern.learn.background import MARKER_COMPONENT, claim, marker_id
from kern.models.base import Model
from kern.models.openai import OpenAIChat
from kern.performers import arun_turn, run_turn
from kern.plugins import LearningStoreSpec
from kern.records import Learning, LearningStatus, Memory, Run, Session, utcnow
from kern.testing.conformance import Recipe, build_db
from kern.testing.scenarios import run_child
from kern.testing.scripted_server import Reply, ScriptedServer, ToolCallReply

__all__ = ["LearningAcceptance"]

# -- helpers: one scenario for sync and async dbs -----------------------------------------


async def turn(agent: Agent, text: str, **kwargs: Any) -> Any:
    assert agent.db is not None  # every agent of the suite stores to the backend's db
    if agent.db.is_async:
        return await agent.arun(text, **kwargs)
    return agent.run(text, **kwargs)


async def call(db: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    """A storage-contract call on a sync or async db."""
    result = getattr(db, method)(*args, **kwargs)
    return await result if db.is_async else result


async def lm_call(lm: LearningMachine, name: str, *args: Any, **kwargs: Any) -> Any:
    """``lm.<name>`` on a sync db, ``await lm.a<name>`` on an async one."""
    assert lm.db is not None  # the suite's machines are built on the backend's db
    if lm.db.is_async:
        return await getattr(lm, "a" + name)(*args, **kwargs)
    return getattr(lm, name)(*args, **kwargs)


async def curate(lm: LearningMachine, name: str, *args: Any, **kwargs: Any) -> Any:
    assert lm.db is not None  # the suite's machines are built on the backend's db
    if lm.db.is_async:
        return await getattr(lm.curator, "a" + name)(*args, **kwargs)
    return getattr(lm.curator, name)(*args, **kwargs)


async def settle(lm: LearningMachine, db: Any) -> None:
    """Wait for what ``lm`` learns in the background on ``db`` (a thread with a sync db, a
    task of this loop with an async one)."""
    done = await lm.await_pending(timeout=30) if db.is_async else lm.wait(30)
    assert done, "background learning did not finish within 30 s"


async def claimed(db: Any, marker: Session) -> Session | None:
    """``marker`` claimed by this process on ``db`` (None: the compare-and-set lost)."""
    if db.is_async:
        return await arun_turn(claim(marker, 60.0), db)
    return run_turn(claim(marker, 60.0), db)


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


def insight(title: str, text: str) -> ToolCallReply:
    return ToolCallReply("save_learnings", {"learnings": [{"title": title, "learning": text}]})


_TURN_IN_A_CHILD = """
import asyncio, json, sys
from kern.agent import Agent
from kern.models.openai import OpenAIChat
from kern.plugins import resolve

target, kwargs, base_url, text, user = sys.argv[1:6]
db = resolve(target)(**json.loads(kwargs))
agent = Agent(
    model=OpenAIChat(id="scripted", base_url=base_url, api_key="test"), db=db, learning=True
)
if db.is_async:
    async def main():
        try:
            return await agent.arun(text, user_id=user)
        finally:
            await db.close()
    output = asyncio.run(main())
else:
    output = agent.run(text, user_id=user)
    db.close()
print(json.dumps({"run_id": output.run_id}))
"""


class NotesStore(LearningStore):
    """A third-party store: recalls the user's notes, stores one note per turn."""

    kind = "acceptance_notes"
    per_user = True

    def recall(self, scope: LearningScope, query: str) -> Turn[list[Learning]]:
        rows = yield from storage.query_learnings(
            kind=self.kind, user_id=scope.user_id, status=LearningStatus.ACTIVE
        )
        return rows

    def build_context(self, items: Sequence[Any]) -> str:
        if not items:
            return ""
        return "Notes:\n" + "\n".join(f"- {item.content['text']}" for item in items)

    def process(
        self, scope: LearningScope, run: Run, model: Model, extracted: Sequence[BaseModel] = ()
    ) -> Turn[None]:
        note = Learning(
            kind=self.kind,
            user_id=scope.user_id,
            content={"text": f"asked: {run.input}"},
            source_run_id=scope.run_id,
        )
        yield from storage.upsert_learning(note)


class NotesPlugin:
    @hookimpl
    def register_learning_stores(self, register: Callable[[LearningStoreSpec], None]) -> None:
        register(LearningStoreSpec(kind=NotesStore.kind, store=NotesStore))


# -- the suite ---------------------------------------------------------------------------


class LearningAcceptance:
    """Learning machines end to end on one backend; see the module docstring."""

    def db_factory(self, tmp_path: Path) -> Recipe:
        raise NotImplementedError("return ('module:Class', kwargs) for a fresh database")

    # -- fixtures --------------------------------------------------------------------------
    @pytest.fixture(scope="class")
    @classmethod
    def learning_server(cls) -> Iterator[ScriptedServer]:
        with ScriptedServer() as server:
            yield server

    @pytest.fixture
    def scripted(self, learning_server: ScriptedServer) -> Iterator[ScriptedServer]:
        """The scripted server with nothing queued and no requests recorded."""
        learning_server.clear()
        yield learning_server
        learning_server.clear()

    @pytest.fixture
    def model(self, scripted: ScriptedServer) -> OpenAIChat:
        return OpenAIChat(id="scripted", base_url=scripted.base_url, api_key="test")

    @pytest.fixture
    def recipe(self, tmp_path: Path) -> Recipe:
        return self.db_factory(tmp_path)

    @pytest_asyncio.fixture
    async def db(self, recipe: Recipe) -> AsyncIterator[Any]:
        db = build_db(recipe)
        try:
            yield db
        finally:
            closed = db.close()
            if db.is_async:
                await closed

    # -- across processes ------------------------------------------------------------------
    async def test_a_fact_is_recalled_in_a_new_process_for_that_user_only(
        self, recipe: Recipe, db: Any, scripted: ScriptedServer
    ) -> None:
        fact = "Alice's favourite colour is teal."
        scripted.script(
            Reply.text("Teal is a lovely colour."),
            extract(memories(fact), ToolCallReply("update_user_profile", {"name": "Alice"})),
        )
        first = run_child(
            _TURN_IN_A_CHILD, recipe, scripted, "My favourite colour is teal.", "alice"
        )

        # The extraction request saw the whole turn, the answer included.
        extraction = scripted.chat_requests()[1]
        assert tool_names(extraction) == ["update_user_profile", "save_user_memories"]
        transcript = extraction["messages"][-1]["content"]
        assert "My favourite colour is teal." in transcript
        assert "Teal is a lovely colour." in transcript
        stored = await call(db, "list_memories", "alice")
        assert [(m.content, m.source_run_id) for m in stored] == [(fact, first["run_id"])]

        scripted.clear()
        question = "Which colour should I paint my door?"
        run_child(_TURN_IN_A_CHILD, recipe, scripted, question, "alice")
        recalled = system_text(scripted.chat_requests()[0])
        assert fact in recalled
        assert "Alice" in recalled  # the profile

        scripted.clear()
        run_child(_TURN_IN_A_CHILD, recipe, scripted, question, "bob")
        assert "teal" not in json.dumps(scripted.chat_requests()[0]["messages"])

    # -- the three modes -------------------------------------------------------------------
    async def test_always_mode_records_every_item_with_its_run(
        self, db: Any, scripted: ScriptedServer, model: OpenAIChat
    ) -> None:
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
        assert [(r.source_run_id, r.status) for r in rows] == [
            (output.run_id, LearningStatus.ACTIVE)
        ]
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

    async def test_agentic_mode_writes_during_the_turn(
        self, db: Any, scripted: ScriptedServer, model: OpenAIChat
    ) -> None:
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

    async def test_proposals_are_recalled_only_once_approved(
        self, db: Any, scripted: ScriptedServer, model: OpenAIChat
    ) -> None:
        machine = LearningMachine(mode="propose", learned_knowledge=True)
        agent = Agent(model=model, db=db, learning=machine, user_id="ada")
        scripted.script(
            Reply.text("Sure."),
            extract(
                memories("Ada is allergic to peanuts."),
                ToolCallReply("update_user_profile", {"name": "Ada"}),
                insight("Allergy menus", "Always ask about allergies"),
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

        question = "Any dinner ideas with peanuts or allergies in mind?"
        await turn(agent, question)
        context = system_text(scripted.chat_requests()[-2])
        assert "peanuts" not in context and "allergies" not in context.casefold()

        memory_proposal = next(p for p in queue if p.kind == "user_memory")
        profile_proposal = next(p for p in queue if p.kind == "user_profile")
        approved = await lm_call(lm, "approve", memory_proposal.learning_id)
        assert isinstance(approved, Memory)
        assert approved.memory_id == memory_proposal.learning_id
        assert approved.source_run_id == output.run_id
        profile = await lm_call(lm, "approve", profile_proposal.learning_id)
        assert profile.status is LearningStatus.ACTIVE
        rejected = await lm_call(lm, "reject", shared[0].learning_id)
        assert rejected.status is LearningStatus.REJECTED
        with pytest.raises(NotProposedError, match="rejected, not proposed"):
            await lm_call(lm, "approve", shared[0].learning_id)
        assert await lm_call(lm, "pending") == []

        await turn(agent, question)
        context = system_text(scripted.chat_requests()[-2])
        assert "Ada is allergic to peanuts." in context
        assert "Name: Ada" in context
        assert "Always ask about allergies" not in context

    # -- a misbehaving model ----------------------------------------------------------------
    async def test_a_misbehaving_model_keeps_the_valid_items_with_one_retry(
        self, db: Any, scripted: ScriptedServer, model: OpenAIChat
    ) -> None:
        agent = Agent(model=model, db=db, learning=True, user_id="ada")
        said = memories("Ada likes tea.", "Ada has a cat.")
        scripted.script(
            Reply.text("Hi Ada."),
            extract(
                ToolCallReply("update_user_profile", {"name": "Ada", "interests": "chess"}),
                said.without("memories.1.content"),
            ),
            extract(said.broken()),  # the retry is no better, and is not retried
            Reply.text("never asked for"),
        )
        output = await turn(agent, "I'm Ada. I like tea and chess, and I have a cat.")
        assert output.content == "Hi Ada."
        assert len(scripted.chat_requests()) == 3 and scripted.pending == 1

        # The valid parts of the first call are stored; the invalid ones went to the model.
        [memory] = await call(db, "list_memories", "ada")
        assert (memory.content, memory.source_run_id) == ("Ada likes tea.", output.run_id)
        assert await lm_call(agent.get_learning_machine(), "get_user_profile", "ada") == {
            "name": "Ada"
        }
        errors = [
            m["content"] for m in scripted.chat_requests()[2]["messages"] if m["role"] == "tool"
        ]
        assert "interests" in errors[0] and "memories[1]" in errors[1]

        # The answered run is stored on this backend; the counts come with the output.
        run = await call(db, "get_run", output.run_id)
        assert run.output == "Hi Ada."
        counts = {k: output.metrics["extraction"][k] for k in ("calls", "retries", "dropped_items")}
        assert counts == {"calls": 2, "retries": 1, "dropped_items": 3}

    # -- namespaces, enforced by the storage queries ---------------------------------------
    async def test_user_namespace_items_are_invisible_to_other_users(
        self, db: Any, scripted: ScriptedServer, model: OpenAIChat
    ) -> None:
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

    async def test_global_and_custom_namespaces(
        self, db: Any, scripted: ScriptedServer, model: OpenAIChat
    ) -> None:
        def agent_in(namespace: str | None) -> Agent:
            store = (
                LearnedKnowledgeStore()
                if namespace is None
                else LearnedKnowledgeStore(namespace=namespace)
            )
            return Agent(model=model, db=db, learning=LearningMachine(stores=[store]))

        scripted.script(Reply.text("ok"), extract(insight("Zephyr", "Zephyr needs a warm cache")))
        await turn(agent_in(None), "zephyr is slow", user_id="alice")
        scripted.script(
            Reply.text("ok"), extract(insight("Releases", "Release trains leave on Tuesdays"))
        )
        await turn(agent_in("engineering"), "when are release trains?", user_id="alice")
        rows = await call(db, "query_learnings", kind="learned_knowledge")
        assert sorted((r.namespace, r.user_id) for r in rows) == [
            ("engineering", None),
            ("global", None),
        ]

        # global: every user of a default agent sees it.
        await turn(agent_in(None), "why is zephyr slow?", user_id="bob")
        assert "Zephyr needs a warm cache" in system_text(scripted.chat_requests()[-2])
        # custom: every agent configured with it, and no other.
        question = "When do release trains leave?"
        await turn(agent_in("engineering"), question, user_id="bob")
        assert "Tuesdays" in system_text(scripted.chat_requests()[-2])
        for other in ("sales_west", None):
            await turn(agent_in(other), question, user_id="alice")
            assert "Tuesdays" not in json.dumps(scripted.chat_requests()[-2]["messages"])

    # -- the other stores, read back by their own keys -------------------------------------
    async def test_entity_memory_merges_facts_per_entity(
        self, db: Any, scripted: ScriptedServer, model: OpenAIChat
    ) -> None:
        machine = LearningMachine(stores=["entity_memory"])
        agent = Agent(model=model, db=db, learning=machine, user_id="ada")
        acme = {
            "name": "Acme Corp",
            "entity_type": "company",
            "facts": ["Acme makes rockets"],
            "relationships": [{"relation": "competes with", "target": "Globex"}],
        }
        scripted.script(
            Reply.text("ok"), extract(ToolCallReply("save_entities", {"entities": [acme]}))
        )
        first = await turn(agent, "Acme makes rockets and competes with Globex.")
        update = {
            "name": "acme corp.",
            "events": ["Acme launched in 2024"],
            "facts": ["Acme makes rockets"],  # known already: not repeated
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

    async def test_session_context_is_one_document_per_session(
        self, db: Any, scripted: ScriptedServer, model: OpenAIChat
    ) -> None:
        machine = LearningMachine(session_context=True)
        agent = Agent(model=model, db=db, learning=machine, user_id="ada")
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

    async def test_decision_log_is_per_agent(
        self, db: Any, scripted: ScriptedServer, model: OpenAIChat
    ) -> None:
        def agent(agent_id: str) -> Agent:
            machine = LearningMachine(stores=[DecisionLogStore()])
            return Agent(model=model, db=db, agent_id=agent_id, learning=machine)

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

    # -- recall scales ---------------------------------------------------------------------
    async def test_recall_is_ranked_and_bounded(
        self, db: Any, scripted: ScriptedServer, model: OpenAIChat
    ) -> None:
        for n in range(40):
            memory = Memory(user_id="ada", content=f"Ada visited city number {n}.")
            await call(db, "upsert_memory", memory)
        await call(
            db, "upsert_memory", Memory(user_id="ada", content="Ada's sister lives in Oslo.")
        )
        for n in range(40):
            memory = Memory(user_id="ada", content=f"Ada read book number {n}.")
            await call(db, "upsert_memory", memory)
        await call(
            db, "upsert_memory", Memory(user_id="bob", content="Bob's sister lives in Oslo.")
        )
        machine = LearningMachine(user_memory=UserMemoryStore(limit=4, recent=2))
        agent = Agent(model=model, db=db, learning=machine, user_id="ada")
        await turn(agent, "Where does my sister live?")
        context = system_text(scripted.chat_requests()[0])
        lines = [line for line in context.splitlines() if line.startswith("- ")]
        assert "- Ada's sister lives in Oslo." in lines
        assert len(lines) <= 6  # limit + recent, out of 81
        assert "Bob" not in context

    # -- the curator -----------------------------------------------------------------------
    async def test_prune_removes_exactly_what_its_dry_run_reported(
        self, db: Any, model: OpenAIChat
    ) -> None:
        now = utcnow()
        ages = {"a": 400, "b": 120, "c": 91, "d": 30, "e": 5, "f": 1, "g": 0}
        ids = {}
        for name, days in ages.items():
            memory = Memory(
                user_id="alice", content=f"memory {name}", created_at=now - timedelta(days=days)
            )
            ids[name] = (await call(db, "upsert_memory", memory)).memory_id
        old = Memory(user_id="bob", content="old", created_at=now - timedelta(days=400))
        await call(db, "upsert_memory", old)
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

        # Other kinds of learning, by kind.
        for n, days in enumerate((100, 50, 1)):
            knowledge = Learning(
                kind="learned_knowledge",
                content={"title": f"t{n}", "learning": f"insight number {n}"},
                created_at=now - timedelta(days=days),
            )
            await call(db, "upsert_learning", knowledge)
        options = {"kinds": ["learned_knowledge"], "max_age_days": 60}
        dry = await curate(lm, "prune", **options, dry_run=True)
        assert [item.text for item in dry] == ["insight number 0"]
        assert (await curate(lm, "prune", **options)).ids == dry.ids
        assert len(await call(db, "query_learnings", kind="learned_knowledge")) == 2

    async def test_deduplicate_removes_exactly_what_its_dry_run_reported(
        self, db: Any, model: OpenAIChat
    ) -> None:
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

    # -- plugins ---------------------------------------------------------------------------
    async def test_a_third_party_store_registered_through_the_hook(
        self, db: Any, scripted: ScriptedServer, model: OpenAIChat
    ) -> None:
        with plugins.registered(NotesPlugin()):
            machine = LearningMachine(stores=[NotesStore.kind, "user_memory"])
            agent = Agent(model=model, db=db, learning=machine, user_id="ada")
            first = await turn(agent, "first question")
            [note] = await call(db, "query_learnings", kind=NotesStore.kind)
            assert note.content == {"text": "asked: first question"}
            assert note.source_run_id == first.run_id
            await turn(agent, "second question")
            assert "- asked: first question" in system_text(scripted.chat_requests()[-2])

    # -- background learning ---------------------------------------------------------------
    async def test_background_learning_is_marked_claimed_once_and_resumed_once(
        self, db: Any, scripted: ScriptedServer, model: OpenAIChat
    ) -> None:
        machine = LearningMachine(background=True)
        agent = Agent(model=model, db=db, learning=machine, user_id="ada")
        scripted.script(Reply.text("Hi Ada."), extract(memories("Ada likes tea.")).after(0.5))
        first = await turn(agent, "I like tea.")
        # Before the answer came back, the run's learning was marked pending on this backend.
        marker = await call(db, "get_session", marker_id(first.run_id))
        assert marker is not None and marker.state["run_id"] == first.run_id
        listed = await call(db, "list_sessions", component_id=MARKER_COMPONENT)
        assert [m.session_id for m in listed] == [marker.session_id]
        await settle(machine, db)
        stored = await call(db, "list_memories", "ada")
        assert [(m.content, m.source_run_id) for m in stored] == [("Ada likes tea.", first.run_id)]
        assert await call(db, "get_session", marker.session_id) is None

        # The claim is a compare-and-set: of two claims on the version read, one wins.
        scripted.script(Reply.text("Noted."), Reply.error(500))  # the extraction fails
        second = await turn(agent, "I have a cat called Babbage.")
        await settle(machine, db)
        pending = await call(db, "get_session", marker_id(second.run_id))
        assert pending is not None  # kept for a later resume
        won = await claimed(db, pending)
        assert won is not None and won.version == pending.version + 1
        assert await claimed(db, pending) is None
        gone = pending.model_copy(update={"session_id": marker_id("no-such-run")})
        assert await claimed(db, gone) is None  # a claim never creates a marker

        # Resumed twice at once: learned once.
        scripted.script(extract(memories("Ada has a cat called Babbage.")))
        lm = agent.get_learning_machine()
        results = await asyncio.gather(lm_call(lm, "resume_pending"), lm_call(lm, "resume_pending"))
        assert sorted(results) == [0, 1]
        assert await lm_call(lm, "resume_pending") == 0
        stored = await call(db, "list_memories", "ada")
        assert sorted(m.content for m in stored) == [
            "Ada has a cat called Babbage.",
            "Ada likes tea.",
        ]
        assert await call(db, "list_sessions", component_id=MARKER_COMPONENT) == []
