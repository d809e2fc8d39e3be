"""Model providers. ``get_model("openai:gpt-4.1-mini")`` resolves a provider prefix through
the ``register_models`` hook; ``default_model()`` is what an Agent with no model uses."""

from __future__ import annotations

import os

from kern.errors import ConfigurationError
from kern.models.base import Model, ModelDelta, ModelResponse, ToolSpec, Usage
from kern.plugins import registry, resolve

#: The model an Agent uses when given none; ``KERN_DEFAULT_MODEL`` overrides it.
DEFAULT_MODEL = "openai:gpt-4.1-mini"


def get_model(spec: str | Model) -> Model:
    """A model from ``"provider:model-id"`` (or a model object, returned as it is)."""
    if isinstance(spec, Model):
        return spec
    provider, sep, model_id = spec.partition(":")
    if not sep or not model_id:
        raise ConfigurationError(
            f"model {spec!r} must be written 'provider:model-id', e.g. 'openai:gpt-4.1-mini'"
        )
    model_class = registry().models.get(provider)
    if model_class is None:
        known = ", ".join(sorted(registry().models)) or "none"
        raise ConfigurationError(
            f"no model provider {provider!r} is installed (installed providers: {known})"
        )
    model: Model = resolve(model_class)(id=model_id)  # a provider's Model subclass
    return model


def default_model() -> Model:
    """The OpenAI provider's default model, configured by the SDK's own environment
    variables (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``)."""
    return get_model(os.environ.get("KERN_DEFAULT_MODEL", DEFAULT_MODEL))


__all__ = [
    "DEFAULT_MODEL",
    "Model",
    "ModelDelta",
    "ModelResponse",
    "ToolSpec",
    "Usage",
    "default_model",
    "get_model",
]
