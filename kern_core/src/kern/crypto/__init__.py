"""Encryption at rest, opt-in: AES-GCM over what users and models wrote.

Turn it on for every Db with ``KERN_ENCRYPTION_KEY=kid:base64key`` (several keys separated by
commas: the first encrypts, all decrypt), or for one Db in code::

    from kern.crypto import encrypt, generate_key

    db = encrypt(db, key=generate_key("k1"), memories=True)

Run inputs, messages and outputs, session state and summaries are encrypted; memory and
learning content too with ``memories=True`` (or ``KERN_ENCRYPT_MEMORIES=1``). The layer sits
at the storage contract's door (``kern.crypto.layer``), so every backend gets it unchanged.
See docs/lifecycle.md, "Encryption at rest".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from kern.crypto.keys import KEY_ENV, MEMORIES_ENV, Key, Keyring, generate_key
from kern.crypto.layer import ATTRIBUTE, RAW, encryption_of
from kern.crypto.records import Encryption
from kern.errors import EncryptionKeyError

D = TypeVar("D")


def encrypt(
    db: D,
    key: str | Key | Keyring | Iterable[str | Key] | None = None,
    *,
    memories: bool = False,
) -> D:
    """``db`` (returned, for chaining) set to encrypt with ``key``.

    ``key`` is a keyring (``"k2:...,k1:..."``: the first encrypts, all decrypt) or keys;
    ``None`` reads ``KERN_ENCRYPTION_KEY`` now and fails if it is unset. ``memories=True``
    encrypts memory and learning content too (their text search then runs in kern over the
    newest rows: docs/lifecycle.md).
    """
    keyring = Keyring.of(key) if key is not None else Keyring.from_env()
    if keyring is None:
        raise EncryptionKeyError(
            f"encrypt(db) was given no key and {KEY_ENV} is not set: pass key='kid:base64key' "
            "(make one with kern.crypto.generate_key('k1'))."
        )
    _set(db, Encryption(keyring, memories))
    return db


def _set(db: object, setting: object) -> None:
    setattr(db, ATTRIBUTE, setting)
    inner = getattr(db, "sync_db", None)  # an async twin running a sync Db
    if inner is not None and inner is not db:
        setattr(inner, ATTRIBUTE, setting)


__all__ = [
    "KEY_ENV",
    "MEMORIES_ENV",
    "RAW",
    "Encryption",
    "EncryptionKeyError",
    "Key",
    "Keyring",
    "encrypt",
    "encryption_of",
    "generate_key",
]
