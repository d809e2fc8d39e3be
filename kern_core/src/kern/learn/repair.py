"""Keeping the valid parts of a model's tool arguments that fail validation.

Small models often get one field of a call wrong (a string where a list belongs, an item
without its required text). Dropping the whole call then loses what was right. The rule:
**drop the smallest part that contains the error, keep everything else.**

- An invalid list element (``topics[2]`` is a number, ``memories[1]`` is a string) is
  removed from its list; the other elements stay.
- An invalid field (the wrong type) is removed from its object; the other fields stay.
  If the field is required there, the object itself is invalid: the rule applies again
  one level up (a memory without its ``content`` is removed from ``memories``).
- A required field that is missing makes its object invalid, likewise.
- When the invalid part is the arguments object itself (not JSON, not an object, or a
  required top-level field gone) nothing of the call is kept.

For kern's stores this means: a profile or session-context update loses only its wrong
fields (every field is optional); a list of memories, entities, insights or decisions loses
only the items that are wrong, and an item keeps its valid optional fields (an entity whose
``relationships`` are malformed is kept with its facts).

``repair_arguments`` validates with the store's own pydantic model, so the rule holds for
third-party stores too. What it dropped, and why, is said in ``Repaired.error``: the
learning machine sends that back to the model for one retry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

#: A place in the arguments: keys of objects and indexes of lists, from the root.
Path = tuple[str | int, ...]

#: Validation rounds before giving up (each drops at least one part, so it ends anyway).
MAX_ROUNDS = 100


@dataclass(frozen=True)
class Dropped:
    """One part of the arguments left out, and the validation error that made it go."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{format_path(self.path)}: {self.reason}"


@dataclass(frozen=True)
class Repaired:
    """The outcome of validating one call's arguments."""

    #: What validated once the invalid parts were dropped (None: nothing of the call).
    value: BaseModel | None
    #: The parts dropped (a whole call that is not usable is one part, at ``$``).
    dropped: tuple[Dropped, ...] = ()
    #: Why the arguments are not JSON (then nothing else was tried).
    not_json: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the arguments were valid as sent."""
        return self.value is not None and not self.dropped

    def error_text(self, tool: str) -> str:
        """The tool result telling the model what was wrong, for its retry."""
        if self.not_json is not None:
            return (
                f"Error: the arguments of {tool} are not valid JSON ({self.not_json}); nothing "
                f"was saved. Call {tool} again with one JSON object that matches its parameters."
            )
        problems = "\n".join(f"- {d}" for d in self.dropped)
        if self.value is None:
            return (
                f"Error: the arguments of {tool} do not match its parameters; nothing was "
                f"saved:\n{problems}\nCall {tool} again with corrected arguments."
            )
        return (
            f"Error: these parts of the arguments of {tool} were invalid and were not "
            f"saved:\n{problems}\nEverything else was saved: do not send it again. Call "
            f"{tool} again with only the corrected parts, or answer 'nothing' if you cannot "
            "correct them."
        )


def format_path(path: Path) -> str:
    """``memories[1].content``; ``$`` for the arguments as a whole."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "$"


def repair_arguments(model: type[BaseModel], arguments: str) -> Repaired:
    """``arguments`` (JSON text) validated with ``model``, invalid parts dropped."""
    try:
        data = json.loads(arguments or "{}")
    except json.JSONDecodeError as exc:
        reason = f"{exc.msg} at character {exc.pos}"
        return Repaired(None, (Dropped((), "not valid JSON"),), not_json=reason)
    if not isinstance(data, dict):
        kind = type(data).__name__.replace("NoneType", "null")
        return Repaired(None, (Dropped((), f"must be a JSON object, not {kind}"),))
    removed: dict[Path, str] = {}
    for _ in range(MAX_ROUNDS):
        pruned, index_maps = _pruned(data, removed)
        try:
            value = model.model_validate(pruned)
        except ValidationError as exc:
            progress = False
            for error in exc.errors(include_url=False):
                loc = _original(tuple(error["loc"]), index_maps)
                target = _part_to_drop(data, loc, error["type"])
                if target is None:  # the arguments object itself is invalid
                    return Repaired(None, (Dropped((), _reason(loc, error["msg"])),))
                if not any(target[:n] in removed for n in range(1, len(target) + 1)):
                    progress = True
                    # Inner parts dropped earlier explain best why this one goes.
                    inner = [p for p in removed if p[: len(target)] == target]
                    reasons = [_reason(p[len(target) :], removed.pop(p)) for p in inner]
                    removed[target] = "; ".join(reasons) or _reason(
                        loc[len(target) :], error["msg"]
                    )
            if not progress:
                return Repaired(None, (Dropped((), str(exc)),))
            continue
        dropped = tuple(Dropped(path, why) for path, why in sorted(removed.items(), key=_order))
        return Repaired(value, dropped)
    return Repaired(None, (Dropped((), "too many invalid parts"),))


def _reason(inner: Path, message: str) -> str:
    """``message`` prefixed by where, below the dropped part, the error was."""
    return f"{format_path(inner)}: {message}" if inner else message


def _order(item: tuple[Path, str]) -> tuple[str, ...]:
    return tuple(f"{p:09d}" if isinstance(p, int) else p for p in item[0])


def _part_to_drop(data: Any, loc: Path, kind: str) -> Path | None:
    """The smallest part of ``data`` holding the error at ``loc`` that may be dropped:
    ``loc`` itself when it is there (a list element or a field), its parent object when the
    error is a missing field; None when that is the root."""
    path = _existing_prefix(data, loc)
    if kind == "missing" or path != loc:  # the object lacks what it needs
        path = path if path != loc else loc[:-1]
    return path or None


def _existing_prefix(data: Any, loc: Path) -> Path:
    """The longest prefix of ``loc`` that names a part present in ``data``."""
    node = data
    for i, part in enumerate(loc):
        in_object = isinstance(node, Mapping) and isinstance(part, str) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_object or in_list):
            return loc[:i]
        node = node[part]
    return loc


def _pruned(data: Any, removed: Mapping[Path, str]) -> tuple[Any, dict[Path, list[int]]]:
    """``data`` without the removed parts, and for each list left, the original index of
    each element it kept (validation errors name pruned indexes)."""
    index_maps: dict[Path, list[int]] = {}

    def prune(node: Any, path: Path) -> Any:
        if isinstance(node, dict):
            return {k: prune(v, (*path, k)) for k, v in node.items() if (*path, k) not in removed}
        if isinstance(node, list):
            kept = [i for i in range(len(node)) if (*path, i) not in removed]
            index_maps[path] = kept
            return [prune(node[i], (*path, i)) for i in kept]
        return node

    return prune(data, ()), index_maps


def _original(loc: Path, index_maps: Mapping[Path, list[int]]) -> Path:
    """A validation error's location (in the pruned arguments) in the original ones."""
    out: list[str | int] = []
    for part in loc:
        kept = index_maps.get(tuple(out))
        if isinstance(part, int) and kept is not None and 0 <= part < len(kept):
            out.append(kept[part])
        else:
            out.append(part)
    return tuple(out)


def dedupe_items(earlier: Sequence[BaseModel], later: BaseModel) -> BaseModel:
    """``later`` without the list items ``earlier`` calls of the same tool already hold:
    a retry that sends the kept items again does not store them twice."""
    seen: dict[str, list[Any]] = {}
    for value in earlier:
        for name in type(value).model_fields:
            items = getattr(value, name)
            if isinstance(items, list):
                seen.setdefault(name, []).extend(_dump(item) for item in items)
    update: dict[str, Any] = {}
    for name in type(later).model_fields:
        items = getattr(later, name)
        if isinstance(items, list) and name in seen:
            update[name] = [item for item in items if _dump(item) not in seen[name]]
    return later.model_copy(update=update) if update else later


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


__all__ = ["Dropped", "Repaired", "dedupe_items", "format_path", "repair_arguments"]
