"""Registers kern's six built-in learning stores through the same hook a third party uses.

They are the generic implementations (``backend=None``), built on the storage contract, so
they run on every backend; a backend plugin may register its own implementation of a kind
(``LearningStoreSpec(kind, store, backend="postgres")``), which is then preferred there.
"""

from collections.abc import Callable

from kern.hookspecs import hookimpl
from kern.plugins import LearningStoreSpec

STORES = {
    "user_profile": "kern.learn.stores:UserProfileStore",
    "user_memory": "kern.learn.stores:UserMemoryStore",
    "session_context": "kern.learn.stores:SessionContextStore",
    "entity_memory": "kern.learn.stores:EntityMemoryStore",
    "learned_knowledge": "kern.learn.stores:LearnedKnowledgeStore",
    "decision_log": "kern.learn.stores:DecisionLogStore",
}


@hookimpl
def register_learning_stores(register: Callable[[LearningStoreSpec], None]) -> None:
    for kind, store in STORES.items():
        register(LearningStoreSpec(kind=kind, store=store))
