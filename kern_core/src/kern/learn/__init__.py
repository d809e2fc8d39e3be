"""Learning machines: agents that remember users and improve with every interaction.

``Agent(learning=True)`` turns on the user profile and user memory, learning after every
response. ``LearningMachine(...)`` chooses the stores, each store's mode and namespace, an
extraction model and an embedder. See docs/learning.md.
"""

from kern.learn.base import (
    AGENT,
    GLOBAL,
    USER,
    Extraction,
    LearningMode,
    LearningNotFoundError,
    LearningStore,
    NotProposedError,
)
from kern.learn.curator import CuratedItem, CurationReport, Curator
from kern.learn.embedder import CachedEmbedder, Embedder, OpenAIEmbedder
from kern.learn.local import LocalEmbedder
from kern.learn.machine import LearningMachine, resolve_store
from kern.learn.ranking import Hybrid
from kern.learn.scope import LearningScope, Recall
from kern.learn.stores import (
    CollectionStore,
    Decision,
    DecisionLogStore,
    DocumentStore,
    Entity,
    EntityMemoryStore,
    Insight,
    LearnedKnowledgeStore,
    MemoryItem,
    OneCallUserMemoryStore,
    Relationship,
    SessionContext,
    SessionContextStore,
    UserMemoryStore,
    UserProfile,
    UserProfileStore,
)

__all__ = [
    "AGENT",
    "GLOBAL",
    "USER",
    "CachedEmbedder",
    "CollectionStore",
    "CuratedItem",
    "CurationReport",
    "Curator",
    "Decision",
    "DecisionLogStore",
    "DocumentStore",
    "Embedder",
    "Entity",
    "EntityMemoryStore",
    "Extraction",
    "Hybrid",
    "Insight",
    "LearnedKnowledgeStore",
    "LearningMachine",
    "LearningMode",
    "LearningNotFoundError",
    "LearningScope",
    "LearningStore",
    "LocalEmbedder",
    "MemoryItem",
    "NotProposedError",
    "OneCallUserMemoryStore",
    "OpenAIEmbedder",
    "Recall",
    "Relationship",
    "SessionContext",
    "SessionContextStore",
    "UserMemoryStore",
    "UserProfile",
    "UserProfileStore",
    "resolve_store",
]
