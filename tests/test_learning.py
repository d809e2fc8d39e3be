"""Learning machines on SQLite: configuration, failure handling and the parts of the
machine that do not depend on the backend.

What every backend must do end to end (recall across processes, the three modes,
namespaces, the curator's dry runs...) is ``kern.testing.learning.LearningAcceptance``,
which each plugin runs against its own database (SQLite's: plugins/kern-sqlite/tests).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import Field

from kern import plugins
from kern.agent import Agent
from kern.db.sqlite import AsyncSqliteDb, SqliteDb
from kern.errors import ConfigurationError, SyncAsyncMismatchError
from kern.hookspecs import hookimpl
from kern.learn import (
    EntityMemoryStore,
    LearnedKnowledgeStore,
    LearningMachine,
    LearningMode,
    LearningStore,
    OneCallUserMemoryStore,
    OpenAIEmbedder,
    SessionContextStore,
    UserMemoryStore,
    UserProfile,
    UserProfileStore,
)
from kern.learn.text import cosine
from kern.plugins import LearningStoreSpec
from kern.records import Learning, LearningStatus, Memory, utcnow
from kern.testing.learning import (
    NotesStore,
    call,
    curate,
    extract,
    lm_call,
    memories,
    system_text,
    turn,
)
from kern.testing.scripted_server import Reply, ToolCallReply, embed_text

DB_CLASSES = {"sqlite": SqliteDb, "sqlite-async": AsyncSqliteDb}


@pytest.fixture(params=sorted(DB_CLASSES))
def db(request, tmp_path: Path):
    return DB_CLASSES[request.param](db_file=tmp_path / "kern.db")


# -- failures and edge cases---------------------------------------------------------------


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


# -- plugins: third-party stores, backend-specific implementations ------------------------


@pytest.mark.parametrize("configured", [NotesStore, NotesStore()], ids=["class", "instance"])
def test_a_store_is_used_by_class_or_instance_without_a_plugin(configured):
    # Registered by kind through the hook: kern.testing.learning, on every backend.
    assert (NotesStore.kind, None) not in plugins.registry().learning_stores
    machine = LearningMachine(stores=[configured, "user_memory"])
    assert [type(store) for store in machine.stores_for("sqlite")] == [
        NotesStore,
        OneCallUserMemoryStore,
    ]
    assert machine.kinds == [NotesStore.kind, "user_memory"]


def test_an_unknown_kind_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="no learning store of kind 'nope'"):
        LearningMachine(stores=["nope"])
    with pytest.raises(ConfigurationError, match="configured twice"):
        LearningMachine(stores=["user_memory", UserMemoryStore()])


class AcmeMemoryStore(UserMemoryStore):
    """What a backend plugin registers: its own implementation of a kind."""

    def build_context(self, items):
        return "[acme-specific memory store]\n" + super().build_context(items)


class AcmeStoresPlugin:
    @hookimpl
    def register_learning_stores(self, register):
        register(LearningStoreSpec("user_memory", AcmeMemoryStore, backend="acmedb"))


def test_a_backend_specific_store_is_preferred_on_its_backend():
    machine = LearningMachine(user_memory=UserMemoryStore(limit=7), user_profile=False)
    with plugins.registered(AcmeStoresPlugin()):
        [on_acme] = machine.stores_for("acmedb")
        [elsewhere] = machine.stores_for("otherdb")
        assert type(on_acme) is AcmeMemoryStore and on_acme.limit == 7
        assert type(elsewhere) is UserMemoryStore and elsewhere.limit == 7

        # A subclass the user chose explicitly is kept as it is.
        class Mine(UserMemoryStore):
            pass

        assert type(LearningMachine(stores=[Mine()]).stores_for("acmedb")[0]) is Mine
    [generic] = machine.stores_for("acmedb")  # the plugin is gone: back to the generic store
    assert type(generic) is UserMemoryStore


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "duckdb", "redis"])
def test_backends_register_their_own_memory_store(backend):
    machine = LearningMachine(user_memory=UserMemoryStore(limit=7, recent=1))
    profile, memory = machine.stores_for(backend)
    assert type(profile) is UserProfileStore
    assert type(memory) is OneCallUserMemoryStore
    assert (memory.limit, memory.recent) == (7, 1)


async def test_the_one_call_memory_store_recalls_in_one_call(db, scripted, model, monkeypatch):
    sync_db = getattr(db, "sync_db", db)
    calls: list[str] = []
    for name in ("search_memories", "list_memories", "recall_memories"):
        method = getattr(sync_db, name)

        def counted(*args, _name=name, _method=method, **kwargs):
            calls.append(_name)
            return _method(*args, **kwargs)

        monkeypatch.setattr(sync_db, name, counted)
    for text in ("Ada likes green tea.", "Ada has a dog.", "Ada lives in Oslo."):
        await call(db, "upsert_memory", Memory(user_id="ada", content=text))
    machine = LearningMachine(user_memory=UserMemoryStore(mode="agentic", limit=1, recent=1))
    agent = Agent(model=model, db=db, learning=machine, user_id="ada")
    await turn(agent, "Which tea do I like?")
    assert calls == ["recall_memories"]
    lines = system_text(scripted.chat_requests()[0]).splitlines()
    assert "- Ada likes green tea." in lines  # the ranked hit
    assert "- Ada lives in Oslo." in lines  # the newest


# -- the curator -------------------------------------------------------------------------


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
