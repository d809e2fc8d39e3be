"""Every topic of the suite composed into one class of scenarios.

Why one composition: ``BackendConformance`` and ``AsyncBackendConformance`` both derive
from ``Scenarios``, so a scenario added to any topic mixin runs in both suites of every
backend, with nothing to register.
"""

from __future__ import annotations

from kern.testing.conformance.base import ScenarioBase
from kern.testing.conformance.concurrency import ConcurrencyScenarios
from kern.testing.conformance.encryption import EncryptionScenarios
from kern.testing.conformance.fork import ForkScenarios
from kern.testing.conformance.learnings import LearningScenarios
from kern.testing.conformance.lifecycle import LifecycleScenarios
from kern.testing.conformance.memories import MemoryScenarios
from kern.testing.conformance.retention import RetentionScenarios
from kern.testing.conformance.runs import RunScenarios
from kern.testing.conformance.sessions import SessionScenarios
from kern.testing.conformance.summaries import SummaryScenarios
from kern.testing.conformance.transfer import TransferScenarios
from kern.testing.conformance.vectors import VectorScenarios
from kern.testing.isolation import IsolationScenarios
from kern.testing.turns import TurnScenarios

__all__ = ["Scenarios"]


class Scenarios(
    SessionScenarios,
    ForkScenarios,
    RetentionScenarios,
    SummaryScenarios,
    RunScenarios,
    ConcurrencyScenarios,
    MemoryScenarios,
    LearningScenarios,
    VectorScenarios,
    TransferScenarios,
    EncryptionScenarios,
    LifecycleScenarios,
    IsolationScenarios,
    TurnScenarios,
    ScenarioBase,
):
    """Every behaviour of the contract, written once against ``store`` (see the package doc).

    Not collected itself (no ``Test`` prefix); ``BackendConformance`` and
    ``AsyncBackendConformance`` turn these into the sync and async suites.
    """
