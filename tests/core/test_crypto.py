"""Encryption at rest with MCPNEST_ENCRYPTION_KEYS: round trips, rotation and bad configuration."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from apps.core import crypto

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()


@pytest.fixture(autouse=True)
def fresh_keys():
    # _fernet caches per key tuple; start and end each test with nothing cached.
    crypto._fernet.cache_clear()
    yield
    crypto._fernet.cache_clear()


def test_round_trip_and_no_plaintext_in_ciphertext():
    with override_settings(MCPNEST_ENCRYPTION_KEYS=[OLD]):
        ciphertext = crypto.encrypt("hunter2 — päss")
        assert "hunter2" not in ciphertext
        assert crypto.decrypt(ciphertext) == "hunter2 — päss"
        assert crypto.encrypt("same") != crypto.encrypt("same")  # random IV each time


def test_old_ciphertext_decrypts_after_prepending_a_new_key_and_rotates():
    with override_settings(MCPNEST_ENCRYPTION_KEYS=[OLD]):
        old_ciphertext = crypto.encrypt("upstream-credential")
    with override_settings(MCPNEST_ENCRYPTION_KEYS=[NEW, OLD]):
        assert crypto.decrypt(old_ciphertext) == "upstream-credential"
        rotated = crypto.rotate(old_ciphertext)
        assert rotated != old_ciphertext
        fresh = crypto.encrypt("new secret")
    # Rotated and new ciphertexts need only the new key: the old one can now be dropped.
    with override_settings(MCPNEST_ENCRYPTION_KEYS=[NEW]):
        assert crypto.decrypt(rotated) == "upstream-credential"
        assert crypto.decrypt(fresh) == "new secret"
        with pytest.raises(crypto.DecryptionError):
            crypto.decrypt(old_ciphertext)


def test_unknown_key_or_altered_ciphertext_is_a_decryption_error():
    with override_settings(MCPNEST_ENCRYPTION_KEYS=[OLD]):
        ciphertext = crypto.encrypt("x")
    with override_settings(MCPNEST_ENCRYPTION_KEYS=[NEW]), pytest.raises(crypto.DecryptionError, match="any key"):
        crypto.decrypt(ciphertext)
    with override_settings(MCPNEST_ENCRYPTION_KEYS=[NEW]), pytest.raises(crypto.DecryptionError):
        crypto.rotate(ciphertext)
    with override_settings(MCPNEST_ENCRYPTION_KEYS=[OLD]):
        tampered = ciphertext[:-6] + ("A" if ciphertext[-6] != "A" else "B") + ciphertext[-5:]
        with pytest.raises(crypto.DecryptionError):
            crypto.decrypt(tampered)
        with pytest.raises(crypto.DecryptionError):
            crypto.decrypt("not a fernet token")


@pytest.mark.parametrize("keys", [["not-a-key"], [OLD, "short"], [OLD[:-2]]])
def test_invalid_key_configuration_says_how_to_make_a_key(keys):
    with override_settings(MCPNEST_ENCRYPTION_KEYS=keys), pytest.raises(ImproperlyConfigured) as error:
        crypto.encrypt("x")
    assert "MCPNEST_ENCRYPTION_KEYS" in str(error.value) and "Fernet.generate_key()" in str(error.value)


def test_without_keys_a_key_is_derived_from_the_secret_key():
    # Development only (production settings refuse to start without keys).
    with override_settings(MCPNEST_ENCRYPTION_KEYS=[], SECRET_KEY="dev-one-" + "a" * 50):
        ciphertext = crypto.encrypt("local")
        assert crypto.decrypt(ciphertext) == "local"
    with override_settings(MCPNEST_ENCRYPTION_KEYS=[], SECRET_KEY="dev-two-" + "b" * 50):
        crypto._fernet.cache_clear()
        with pytest.raises(crypto.DecryptionError):
            crypto.decrypt(ciphertext)
