"""Encryption of secrets at rest (upstream credentials, env vars) with MCPNEST_ENCRYPTION_KEYS.

The first key encrypts; every key decrypts, so keys rotate by prepending a new one and
running ``manage.py rotate_encryption`` before the old key is dropped.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DecryptionError(Exception):
    """The ciphertext was not made with any configured key (or was altered)."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        # DEBUG only (production settings refuse to start without keys): derive a key from
        # the development SECRET_KEY so a laptop needs no extra set-up.
        derived = hashlib.sha256(b"mcpnest-dev-encryption:" + settings.SECRET_KEY.encode()).digest()
        keys = (base64.urlsafe_b64encode(derived).decode(),)
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError:
        raise ImproperlyConfigured(
            "MCPNEST_ENCRYPTION_KEYS must hold Fernet keys (32 url-safe base64 bytes each); "
            "make one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        ) from None


def _keys() -> MultiFernet:
    return _fernet(tuple(settings.MCPNEST_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return _keys().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return _keys().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionError("Ciphertext does not match any key in MCPNEST_ENCRYPTION_KEYS.") from None


def rotate(ciphertext: str) -> str:
    """Re-encrypt with the first (newest) key."""
    try:
        return _keys().rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionError("Ciphertext does not match any key in MCPNEST_ENCRYPTION_KEYS.") from None
