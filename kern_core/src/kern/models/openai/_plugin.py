"""Registers the OpenAI models through the same hook a third-party provider uses."""

from collections.abc import Callable

from kern.hookspecs import hookimpl


@hookimpl
def register_models(register: Callable[[str, type | str], None]) -> None:
    register("openai", "kern.models.openai:OpenAIChat")
    register("openai-responses", "kern.models.openai:OpenAIResponses")
