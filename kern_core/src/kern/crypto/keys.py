"""Encryption keys with ids: the keyring ``KERN_ENCRYPTION_KEY`` holds.

A keyring is written ``kid:base64key``, several separated by commas (or spaces). The first
key encrypts; every key decrypts. The id goes into each ciphertext, so a key can be rotated:
put the new key first and keep the old one until ``kern rotate-key`` has re-encrypted
everything, then drop the old one.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from kern.errors import ConfigurationError

#: The environment variable holding the keyring.
KEY_ENV = "KERN_ENCRYPTION_KEY"
#: The environment variable asking for memory and learning content to be encrypted too.
MEMORIES_ENV = "KERN_ENCRYPT_MEMORIES"

#: What a key id may hold: it is stored in every ciphertext, before a ``:``.
_KID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: AES key sizes, in bytes.
_SIZES = (16, 24, 32)


@dataclass(frozen=True, repr=False)
class Key:
    """One AES key and the id it is known by. Its bytes never appear in a repr."""

    kid: str
    secret: bytes

    def __repr__(self) -> str:
        return f"Key(kid={self.kid!r})"


@dataclass(frozen=True)
class Keyring:
    """Keys by id; ``primary`` (the first) encrypts, any of them decrypts."""

    keys: tuple[Key, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ConfigurationError(
                f"an encryption keyring needs at least one key: set {KEY_ENV}=kid:base64key "
                "(make one with kern.crypto.generate_key('k1'))."
            )
        seen: set[str] = set()
        for key in self.keys:
            if key.kid in seen:
                raise ConfigurationError(
                    f"encryption key id {key.kid!r} is given twice: every key needs its own id."
                )
            seen.add(key.kid)

    @property
    def primary(self) -> Key:
        return self.keys[0]

    def get(self, kid: str) -> Key | None:
        for key in self.keys:
            if key.kid == kid:
                return key
        return None

    @property
    def kids(self) -> list[str]:
        return [key.kid for key in self.keys]

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """A keyring from ``kid:base64key[,kid2:base64key2...]``."""
        entries = [entry for entry in re.split(r"[,\s]+", text.strip()) if entry]
        return cls(tuple(parse_key(entry) for entry in entries))

    @classmethod
    def of(cls, keys: str | Key | Keyring | Iterable[str | Key]) -> Keyring:
        """A keyring from what a user may pass in code: a keyring string, keys, or one."""
        if isinstance(keys, Keyring):
            return keys
        if isinstance(keys, Key):
            return cls((keys,))
        if isinstance(keys, str):
            return cls.parse(keys)
        return cls(tuple(key if isinstance(key, Key) else parse_key(key) for key in keys))

    @classmethod
    def from_env(cls) -> Keyring | None:
        """The keyring of ``KERN_ENCRYPTION_KEY``, or None when it is unset or empty."""
        text = os.environ.get(KEY_ENV, "").strip()
        return cls.parse(text) if text else None


def parse_key(entry: str) -> Key:
    """One ``kid:base64key``; the key must decode to 16, 24 or 32 bytes (AES-128/192/256)."""
    kid, sep, encoded = entry.partition(":")
    if not sep or not _KID.fullmatch(kid):
        raise ConfigurationError(
            "an encryption key must be written kid:base64key, the id being 1-64 letters, "
            "digits, '_', '.' or '-' (e.g. k1:...); an entry is not (its text is not "
            "shown: it may be a key). Make one with kern.crypto.generate_key('k1')."
        )
    try:
        secret = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        secret = b""
    if len(secret) not in _SIZES:
        raise ConfigurationError(
            f"encryption key {kid!r} must be 16, 24 or 32 bytes in base64 (32 recommended); "
            "make one with kern.crypto.generate_key(" + repr(kid) + ")."
        )
    return Key(kid, secret)


def generate_key(kid: str = "k1") -> str:
    """A new random 256-bit key, written ``kid:base64key`` (what ``KERN_ENCRYPTION_KEY`` holds)."""
    if not _KID.fullmatch(kid):
        raise ConfigurationError(f"key id {kid!r}: use 1-64 letters, digits, '_', '.' or '-'.")
    return f"{kid}:{base64.b64encode(secrets.token_bytes(32)).decode('ascii')}"


__all__ = ["KEY_ENV", "MEMORIES_ENV", "Key", "Keyring", "generate_key", "parse_key"]
