"""The encryption layer at the storage contract's door (``kern.db.door`` calls it).

Every guarded contract call of every backend goes through ``call`` / ``acall``: records in the
arguments are sealed before the backend sees them (``kern.crypto.records``), records in the
result are opened before the caller does, and searches over encrypted text are answered here
(``kern.crypto.search``). So the five backends, and third-party ones, get encryption at rest
with no code of their own.

Which Db encrypts: one given ``kern.crypto.encrypt(db, key=...)``, else every Db when
``KERN_ENCRYPTION_KEY`` is set. Results are opened even with no key configured, so encrypted
data read without its key is an ``EncryptionKeyError`` naming the key id, never ciphertext.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable
from typing import Any, cast

from kern.crypto.keys import KEY_ENV, MEMORIES_ENV, Keyring
from kern.crypto.records import Encryption, open_result, seal_arguments
from kern.crypto.search import MEMORY_SEARCHES, SESSION_SEARCHES, plan


class _Raw:
    """The setting of a Db that moves stored bytes as they are (``kern rotate-key``)."""

    def __repr__(self) -> str:
        return "RAW"


#: ``encrypt(db, RAW)``: neither seal nor open (records pass as stored).
RAW = _Raw()

#: The instance attribute ``kern.crypto.encrypt`` sets.
ATTRIBUTE = "_kern_encryption"
_UNSET = object()
_env_cache: dict[tuple[str, str], Encryption | None] = {}


def _truthy(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


def from_env() -> Encryption | None:
    """The encryption ``KERN_ENCRYPTION_KEY`` (and ``KERN_ENCRYPT_MEMORIES``) ask for."""
    key_text = os.environ.get(KEY_ENV, "")
    if not key_text.strip():
        return None
    cache_key = (key_text, os.environ.get(MEMORIES_ENV, ""))
    if cache_key not in _env_cache:
        _env_cache.clear()
        _env_cache[cache_key] = Encryption(Keyring.parse(key_text), _truthy(cache_key[1]))
    return _env_cache[cache_key]


def encryption_of(db: Any) -> Encryption | _Raw | None:
    """``db``'s encryption: set in code, else from the environment, else None."""
    setting = getattr(db, ATTRIBUTE, _UNSET)
    if setting is _UNSET:
        return from_env()
    return cast("Encryption | _Raw | None", setting)


def _search_plan(
    db: Any,
    enc: Encryption,
    name: str,
    method: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    if name in SESSION_SEARCHES or (enc.memories and name in MEMORY_SEARCHES):
        bound = inspect.signature(method).bind(db, *args, **kwargs)
        bound.apply_defaults()
        return plan(name, bound.arguments)
    return None


def call(
    db: Any, name: str, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``method(db, *args, **kwargs)`` with records sealed on the way in, opened on the way out."""
    enc = encryption_of(db)
    if enc is RAW:
        return method(db, *args, **kwargs)
    if isinstance(enc, Encryption):
        search = _search_plan(db, enc, name, method, args, kwargs)
        if search is not None:
            read, read_args, read_kwargs, answer = search
            return answer(getattr(db, read)(*read_args, **read_kwargs))
        args, kwargs = seal_arguments(enc, name, args, kwargs)
    result = method(db, *args, **kwargs)
    return open_result(enc.keyring if isinstance(enc, Encryption) else None, result)


async def acall(
    db: Any,
    name: str,
    method: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """The async ``call``."""
    enc = encryption_of(db)
    if enc is RAW:
        return await method(db, *args, **kwargs)
    if isinstance(enc, Encryption):
        search = _search_plan(db, enc, name, method, args, kwargs)
        if search is not None:
            read, read_args, read_kwargs, answer = search
            return answer(await getattr(db, read)(*read_args, **read_kwargs))
        args, kwargs = seal_arguments(enc, name, args, kwargs)
    result = await method(db, *args, **kwargs)
    return open_result(enc.keyring if isinstance(enc, Encryption) else None, result)


__all__ = ["ATTRIBUTE", "RAW", "acall", "call", "encryption_of", "from_env"]
