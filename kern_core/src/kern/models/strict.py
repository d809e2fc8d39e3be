"""Strict JSON schemas: the subset that OpenAI's structured outputs accept with ``strict``.

With ``strict: true`` (a Chat Completions function, a Responses function tool) the server
constrains the model's arguments to the schema, so they always parse and validate. It
accepts only a subset of JSON Schema, and rejects the whole request otherwise:

- every object lists all of its properties in ``required`` and sets
  ``additionalProperties: false`` (an optional value is a required one that may be null,
  ``anyOf: [..., {"type": "null"}]``);
- the root is an object; arrays say what their ``items`` are; ``$ref`` points into the
  root's ``$defs``; nesting is at most ``MAX_DEPTH`` deep;
- only the keywords in ``ALLOWED_KEYWORDS`` appear (no ``default``, ``title``,
  ``oneOf``, ``allOf``, ``minLength``...).

``strict_schema`` turns a pydantic model's JSON schema into that form without changing
what validates: a property with a default becomes required (nullable only if the model
already accepts null), so every value the strict schema allows also validates against
the model. ``strict_problems`` says why a schema is not strict; kern marks a tool spec
strict only when it has none.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

#: Keywords strict mode accepts (OpenAI's documented subset; ``description`` included).
ALLOWED_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "anyOf",
        "description",
        "$ref",
        "$defs",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
    }
)

#: How deep objects and arrays may nest under strict mode.
MAX_DEPTH = 10

_DROPPED = frozenset({"title", "default", "examples", "discriminator"})


def strict_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` (a pydantic model's JSON schema) in strict form; the input is not changed.

    ``$ref``s are inlined (small local models handle self-contained schemas best) unless the
    model is recursive, in which case they stay, with their ``$defs``. Keywords strict mode
    rejects are dropped: the model's own validation still applies them.
    """
    defs = dict(schema.get("$defs") or {})
    recursive = _is_recursive(defs)
    converted = _convert(dict(schema), defs, inline=not recursive)
    converted.pop("$defs", None)
    if recursive:
        converted["$defs"] = {
            name: _convert(dict(sub), defs, inline=False) for name, sub in defs.items()
        }
    return converted


def _convert(node: dict[str, Any], defs: Mapping[str, Any], *, inline: bool) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        if not inline:  # a recursive model: the reference stays, alone
            return {"$ref": ref}
        target = dict(copy.deepcopy(defs[ref.removeprefix("#/$defs/")]))
        extra = {k: v for k, v in node.items() if k != "$ref"}
        if "description" in extra:  # the field's own description wins over the model's
            target["description"] = extra.pop("description")
        return _convert({**target, **extra}, defs, inline=inline)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or key == "$defs":
            continue
        if key == "oneOf":  # same values here: pydantic's unions are exclusive by type
            key = "anyOf"
        if key == "allOf" and isinstance(value, list) and len(value) == 1:
            out.update(_convert(dict(value[0]), defs, inline=inline))
            continue
        if key not in ALLOWED_KEYWORDS:
            continue
        if key == "properties":
            out[key] = {
                name: _convert(dict(sub), defs, inline=inline) for name, sub in value.items()
            }
        elif key == "items" and isinstance(value, Mapping):
            out[key] = _convert(dict(value), defs, inline=inline)
        elif key == "anyOf":
            out[key] = [_convert(dict(sub), defs, inline=inline) for sub in value]
        else:
            out[key] = copy.deepcopy(value)
    if out.get("type") == "object" or "properties" in out:
        out["type"] = "object"
        out.setdefault("properties", {})
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    return out


def _is_recursive(defs: Mapping[str, Any]) -> bool:
    """Whether some definition refers to itself, directly or through others."""

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, Mapping):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                yield ref.removeprefix("#/$defs/")
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    edges = {name: set(refs(sub)) for name, sub in defs.items()}

    def reaches(start: str, goal: str, visited: set[str]) -> bool:
        for nxt in edges.get(start, ()):
            if nxt == goal or (nxt not in visited and reaches(nxt, goal, visited | {nxt})):
                return True
        return False

    return any(reaches(name, name, {name}) for name in edges)


def strict_problems(schema: Mapping[str, Any]) -> list[str]:
    """Why ``schema`` would be refused under strict mode (empty: it is strict-compatible).

    Each problem names where it is (``$.properties.memories.items``) and what is wrong.
    """
    problems: list[str] = []
    if schema.get("type") != "object":
        problems.append('$: the root must be {"type": "object"}')
    defs = schema.get("$defs") or {}
    if not isinstance(defs, Mapping):
        problems.append("$.$defs: must be an object")
        defs = {}
    _check(schema, "$", defs, 0, problems, root=True)
    for name, sub in defs.items():
        _check(sub, f"$.$defs.{name}", defs, 0, problems, root=False)
    return problems


def is_strict(schema: Mapping[str, Any]) -> bool:
    """Whether ``schema`` can be sent with ``strict: true``."""
    return not strict_problems(schema)


def _check(
    node: Any, path: str, defs: Mapping[str, Any], depth: int, problems: list[str], *, root: bool
) -> None:
    if not isinstance(node, Mapping):
        problems.append(f"{path}: a schema must be an object")
        return
    if depth > MAX_DEPTH:
        problems.append(f"{path}: nested deeper than {MAX_DEPTH} levels")
        return
    for key in node:
        if key not in ALLOWED_KEYWORDS:
            problems.append(f"{path}: keyword {key!r} is not supported in strict mode")
        elif key == "$defs" and not root:
            problems.append(f"{path}: $defs belong at the root only")
    ref = node.get("$ref")
    if ref is not None:
        name = ref.removeprefix("#/$defs/") if isinstance(ref, str) else None
        if name is None or not ref.startswith("#/$defs/") or name not in defs:
            problems.append(f"{path}: $ref {ref!r} does not name one of the root's $defs")
        return
    types = node.get("type")
    kinds = set(types) if isinstance(types, list) else {types} if types else set()
    if "type" not in node and "anyOf" not in node and "enum" not in node and "const" not in node:
        problems.append(f"{path}: says neither its type nor anyOf/enum/const")
    if "object" in kinds or "properties" in node:
        properties = node.get("properties")
        if not isinstance(properties, Mapping):
            problems.append(f"{path}: an object must list its properties")
            properties = {}
        if node.get("additionalProperties") is not False:
            problems.append(f"{path}: an object must set additionalProperties: false")
        required = node.get("required") or []
        missing = [name for name in properties if name not in required]
        if missing:
            problems.append(f"{path}: every property must be required; not: {missing}")
        for name, sub in properties.items():
            _check(sub, f"{path}.properties.{name}", defs, depth + 1, problems, root=False)
    if "array" in kinds or "items" in node:
        if not isinstance(node.get("items"), Mapping):
            problems.append(f"{path}: an array must say what its items are")
        else:
            _check(node["items"], f"{path}.items", defs, depth + 1, problems, root=False)
    branches = node.get("anyOf")
    if branches is not None:
        if root:
            problems.append(f"{path}: the root cannot be an anyOf")
        if not isinstance(branches, list) or not branches:
            problems.append(f"{path}: anyOf must be a non-empty list")
        else:
            for i, sub in enumerate(branches):
                _check(sub, f"{path}.anyOf[{i}]", defs, depth, problems, root=False)


__all__ = ["ALLOWED_KEYWORDS", "MAX_DEPTH", "is_strict", "strict_problems", "strict_schema"]
