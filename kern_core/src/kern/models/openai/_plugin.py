"""Registers the OpenAI models through the same hook a third-party provider uses."""

from kern.hookspecs import hookimpl


@hookimpl
def register_models(register):
    register("openai", "kern.models.openai:OpenAIChat")
    register("openai-responses", "kern.models.openai:OpenAIResponses")
