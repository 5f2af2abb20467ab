"""Revocation fan-out to gateway workers.

Revocations are written to the shared cache (Redis in production) under the token's
digest, so a worker's in-process token cache can check one key instead of the database.
The gateway issue builds its cache on top of this.
"""

from __future__ import annotations

from django.core.cache import cache

from apps.core import shared_state

REVOKED_KEY = "gw:revoked:{digest}"
REVOKED_TTL = 60 * 60 * 24


def broadcast(digest: str) -> None:
    cache.set(REVOKED_KEY.format(digest=digest), 1, REVOKED_TTL)
    # Gateway workers drop their whole token cache when this epoch moves (within a second).
    shared_state.bump(shared_state.TOKENS_EPOCH)


def is_revoked(digest: str) -> bool:
    return cache.get(REVOKED_KEY.format(digest=digest)) is not None
