"""AES-GCM tokens: a value sealed under a key id, as text any backend stores.

A token is ``kern:enc:v1:<kid>:<base64url(nonce | ciphertext | tag)>``. What is sealed is the
value's JSON text, so a string, a dict or a list comes back as it went in. The associated
data is the field's label (``run.input``...): a ciphertext moved into another field does not
open. It is not bound to the row's id, so a copied row (a fork, an import) stays readable.

``cryptography`` is imported on first use: kern without the ``encryption`` extra runs, and
only an attempt to encrypt or decrypt asks for the package.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
from typing import Any

from kern.crypto.keys import KEY_ENV, Keyring
from kern.errors import ConfigurationError, EncryptionKeyError, install_command

#: Every token starts with this; a value that does not is plaintext.
PREFIX = "kern:enc:v1:"
_NONCE = 12


@functools.lru_cache(maxsize=32)
def _aead(secret: bytes) -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:
        raise ConfigurationError(
            f"encryption at rest needs the cryptography package: {install_command('encryption')}"
        ) from exc
    return AESGCM(secret)


def is_token(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def token_kid(token: str) -> str:
    """The key id a token was sealed with."""
    return token[len(PREFIX) :].partition(":")[0]


def seal(keyring: Keyring, label: str, value: Any) -> str:
    """``value`` (anything JSON can hold) encrypted with the keyring's primary key."""
    key = keyring.primary
    nonce = os.urandom(_NONCE)
    data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    sealed = _aead(key.secret).encrypt(nonce, data, label.encode("utf-8"))
    return f"{PREFIX}{key.kid}:{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"


def unseal(keyring: Keyring | None, label: str, token: str) -> Any:
    """The value sealed in ``token``; ``EncryptionKeyError`` naming the key id when the key
    is not configured or is not the one the token was sealed with. Never garbage."""
    kid, _, body = token[len(PREFIX) :].partition(":")
    if keyring is None:
        raise EncryptionKeyError(
            f"this {label} is encrypted with key {kid!r}, but no encryption key is "
            f"configured: set {KEY_ENV} to a keyring holding {kid!r} (kid:base64key), or "
            "pass it in code (kern.crypto.encrypt(db, key=...)).",
            key_id=kid,
        )
    key = keyring.get(kid)
    if key is None:
        raise EncryptionKeyError(
            f"this {label} is encrypted with key {kid!r}, which is not in the keyring "
            f"(it holds {', '.join(map(repr, keyring.kids))}): add {kid!r} to {KEY_ENV}; "
            "after `kern rotate-key` no data needs an old key.",
            key_id=kid,
        )
    aead = _aead(key.secret)
    from cryptography.exceptions import InvalidTag

    try:
        raw = base64.urlsafe_b64decode(body.encode("ascii"))
        data: bytes | None = aead.decrypt(raw[:_NONCE], raw[_NONCE:], label.encode("utf-8"))
    except (InvalidTag, binascii.Error, ValueError, UnicodeEncodeError):
        data = None
    if data is None:
        raise EncryptionKeyError(
            f"this {label} does not decrypt with key {kid!r}: the key configured under that "
            "id is not the one it was encrypted with (or the stored text was altered). Set "
            f"{KEY_ENV} to the original key {kid!r}; nothing was returned in its place.",
            key_id=kid,
        )
    return json.loads(data.decode("utf-8"))


__all__ = ["PREFIX", "is_token", "seal", "token_kid", "unseal"]
