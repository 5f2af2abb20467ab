"""Bearer secrets (gateway tokens, API keys): generation, hashing and display prefixes.

Only the SHA-256 digest of a secret is stored. A 192-bit random secret needs no salt or
slow hash: it cannot be guessed, and the digest lets us look it up with one index probe.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

SECRET_HEX_LENGTH = 48  # 192 bits
DISPLAY_HEX_LENGTH = 8


@dataclass(frozen=True)
class NewSecret:
    raw: str  # shown to the user exactly once, never stored
    digest: str
    prefix: str


def digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def generate(scheme: str) -> NewSecret:
    raw = f"{scheme}_{secrets.token_hex(SECRET_HEX_LENGTH // 2)}"
    return NewSecret(raw=raw, digest=digest(raw), prefix=raw[: len(scheme) + 1 + DISPLAY_HEX_LENGTH])


def pattern(scheme: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(scheme)}_[0-9a-f]{{{SECRET_HEX_LENGTH}}}$")


def matches(raw: str, stored_digest: str) -> bool:
    """Timing-safe comparison of a presented secret with a stored digest."""
    return hmac.compare_digest(digest(raw), stored_digest)
