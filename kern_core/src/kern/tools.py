"""Python functions as model tools: a JSON schema from the signature, a call from the arguments.

The schema comes from the type hints through pydantic, the description from the docstring.
A parameter named ``session_state`` is not shown to the model: the agent passes the
session's state dict there, and what the tool changes in it is persisted.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from kern.effects import Turn
from kern.models.base import ToolSpec


class ToolRetry(Exception):
    """Raise in a tool to tell the model ``message`` as the tool's result, so it can correct
    its call (a missing record, an argument out of range).

    The rule for a tool's failures: invalid arguments (not JSON, failing the schema) and
    ``ToolRetry`` go back to the model as text; any other exception is logged with its
    traceback and fails the run (``kern.errors.ToolError``), storing nothing of it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


#: Parameters the agent fills in itself; they never appear in the model-facing schema.
INJECTED = frozenset({"session_state"})


@dataclass(frozen=True)
class Tool:
    """A function the model may call."""

    function: Callable[..., Any]
    spec: ToolSpec
    arguments_model: type[BaseModel]
    injected: frozenset[str]
    #: For tools that run another component's turn (a team delegating to a member): a
    #: function returning that turn, run inside the caller's turn instead of ``function``.
    subturn: Callable[..., Turn[Any]] | None = None

    @classmethod
    def from_function(
        cls, function: Callable[..., Any], *, subturn: Callable[..., Turn[Any]] | None = None
    ) -> Tool:
        signature = inspect.signature(function)
        hints = get_type_hints(function)
        fields: dict[str, Any] = {}
        injected: set[str] = set()
        for name, param in signature.parameters.items():
            if name in INJECTED:
                injected.add(name)
                continue
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            default = ... if param.default is param.empty else param.default
            fields[name] = (hints.get(name, Any), default)
        arguments_model = create_model(
            f"{function.__name__}_arguments",
            __config__=ConfigDict(extra="ignore"),
            **fields,
        )
        schema = arguments_model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        spec = ToolSpec(
            name=function.__name__,
            description=inspect.cleandoc(function.__doc__ or ""),
            parameters=schema,
        )
        return cls(
            function=function,
            spec=spec,
            arguments_model=arguments_model,
            injected=frozenset(injected),
            subturn=subturn,
        )

    def bind(self, arguments: str, session_state: dict[str, Any]) -> dict[str, Any]:
        """Validate the model's JSON arguments into keyword arguments for the function."""
        raw = json.loads(arguments or "{}")
        kwargs = dict(self.arguments_model.model_validate(raw))
        if "session_state" in self.injected:
            kwargs["session_state"] = session_state
        return kwargs


def as_tool(tool: Callable[..., Any] | Tool) -> Tool:
    return tool if isinstance(tool, Tool) else Tool.from_function(tool)


def result_text(result: Any) -> str:
    """What the model sees of a tool's return value: text as it is, anything else as JSON."""
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result, default=str)
    except (TypeError, ValueError):
        return str(result)


def argument_error_text(tool: Tool, exc: Exception) -> str:
    """Told to the model (not raised) so that it can correct its call."""
    if isinstance(exc, json.JSONDecodeError):
        return f"Error: the arguments for {tool.spec.name} were not valid JSON ({exc})."
    if isinstance(exc, ValidationError):
        return f"Error: invalid arguments for {tool.spec.name}: {exc.errors(include_url=False)}"
    return f"Error: invalid arguments for {tool.spec.name}: {exc}"
