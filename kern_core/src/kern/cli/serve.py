"""Placeholder: filled in by its own change."""

from __future__ import annotations

from typing import Any


def register(commands: Any) -> None:
    """Add this module's subcommands to ``commands``."""
