"""2025-era ``Mcp-Session-Id`` values: sealed, so any gateway process can read one back
without shared state, and nobody else learns from it which token opened it."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import secrets
import time
from collections import OrderedDict
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

SESSION_TTL = 60 * 60 * 24 * 7
# Decrypting a session id costs tens of microseconds, and a client sends the same id with
# every request: a verified one is trusted for a minute, then checked again (MAC and age).
# Forged ids are never remembered; the cache is bounded (least recently used goes first).
RECHECK = 60.0
MAX_VERIFIED = 10_000


@functools.lru_cache(maxsize=4096)  # a client sends its session id with every request
def ended_key(session_id: str) -> str:
    """The shared-state key that says a session was ended (DELETE)."""
    return "gw:sess:end:" + hashlib.sha256(session_id.encode()).hexdigest()[:40]


class Sessions:
    def __init__(self, secret: bytes) -> None:
        key = hashlib.sha256(b"mcpnest.gateway.session:" + secret).digest()
        self._cipher = Fernet(base64.urlsafe_b64encode(key))
        self._verified: OrderedDict[str, tuple[dict[str, Any], float]] = OrderedDict()

    def mint(self, token_id: int | str, version: str, client: dict[str, Any], capabilities: list[str]) -> str:
        """``capabilities``: which requests (sampling, elicitation, roots) the client takes."""
        payload = {
            "t": token_id,
            "v": version,
            "n": str(client.get("name", ""))[:100],
            "cv": str(client.get("version", ""))[:50],
            "c": capabilities,
            "r": secrets.token_hex(8),
        }
        return self.seal(payload)

    def read(self, session_id: str, token_id: int | str) -> dict[str, Any] | None:
        """The session's payload if ``session_id`` is one of ours, unexpired, and was opened
        with this token (another member's session id is no use); else None."""
        now = time.monotonic()
        known = self._verified.get(session_id)
        if known is not None and known[1] > now:
            payload = known[0]
            self._verified.move_to_end(session_id)
        else:
            payload = self.open(session_id)
            if payload is None:
                return None
            self._verified[session_id] = (payload, now + RECHECK)
            self._verified.move_to_end(session_id)
            while len(self._verified) > MAX_VERIFIED:
                self._verified.popitem(last=False)
        return payload if payload.get("t") == token_id else None

    def seal(self, payload: dict[str, Any]) -> str:
        """Any small JSON value, sealed with the session key (ids of relayed requests)."""
        return self._cipher.encrypt(json.dumps(payload, separators=(",", ":")).encode()).decode()

    def open(self, sealed: str, ttl: int = SESSION_TTL) -> dict[str, Any] | None:
        try:
            payload = json.loads(self._cipher.decrypt(sealed.encode(), ttl=ttl))
        except (InvalidToken, ValueError, UnicodeError):
            return None
        return payload if isinstance(payload, dict) else None
