"""State shared by every gateway worker: invalidation epochs, rate-limit counters and
ended MCP sessions. Redis when REDIS_URL is set; otherwise this process's memory (the
embedded default runs one process, so that is shared enough).

The hot path makes at most one round trip here per request (a pipeline), and reads the
epochs at most once a second per worker.
"""

from __future__ import annotations

import os
import threading
import time
from functools import cache

from django.conf import settings

SESSION_TTL = 60 * 60 * 24 * 7


class _Memory:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, tuple[int, float | None]] = {}

    def _live(self, key: str, now: float) -> int | None:
        item = self._values.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= now:
            del self._values[key]
            return None
        return value

    def incr(self, key: str, ttl: float | None = None) -> int:
        with self._lock:
            now = time.monotonic()
            value = (self._live(key, now) or 0) + 1
            expires = self._values[key][1] if key in self._values else (now + ttl if ttl else None)
            self._values[key] = (value, expires)
            return value

    def get(self, key: str) -> int | None:
        with self._lock:
            return self._live(key, time.monotonic())

    def set(self, key: str, value: int, ttl: float | None = None) -> None:
        with self._lock:
            self._values[key] = (value, time.monotonic() + ttl if ttl else None)


_memory = _Memory()


@cache
def _sync_redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL)


_async_clients: dict[int, object] = {}


def _async_redis():
    import asyncio

    import redis.asyncio as aredis

    loop_id = id(asyncio.get_running_loop())
    client = _async_clients.get(loop_id)
    if client is None:
        client = _async_clients[loop_id] = aredis.Redis.from_url(settings.REDIS_URL)
    return client


def uses_redis() -> bool:
    return bool(settings.REDIS_URL)


# --- epochs: bumped by services (sync), read by the gateway (async) -------------------

TOKENS_EPOCH = "gw:epoch:tokens"


def workspace_epoch_key(workspace_id: int) -> str:
    return f"gw:epoch:ws:{workspace_id}"


def bump(key: str) -> None:
    """Invalidate every worker's cache that depends on ``key`` (within a second)."""
    if uses_redis():
        # A fresh random value, not a counter: after a Redis restart a counter could climb
        # back to a value a worker still holds, and that change would go unnoticed.
        _sync_redis().set(key, os.urandom(8).hex())
    else:
        _memory.incr(key)


def workspace_changed(workspace_id: int) -> None:
    """Gateway workers reload this workspace's snapshot once the transaction commits."""
    from django.db import transaction

    transaction.on_commit(lambda: bump(workspace_epoch_key(workspace_id)))


def tokens_changed() -> None:
    """Gateway workers drop their token cache once the transaction commits."""
    from django.db import transaction

    transaction.on_commit(lambda: bump(TOKENS_EPOCH))


async def read_epochs(keys: list[str]) -> list[str]:
    """The current value of each epoch; only equality between readings means anything."""
    if uses_redis():
        values = await _async_redis().mget(keys)
        return [v.decode() if v is not None else "" for v in values]
    return [str(_memory.get(key) or "") for key in keys]


# --- per request: rate limit + ended-session check in one round trip ---------------


# One command instead of a pipeline of three: redis-py's client-side cost per command is
# what the gateway pays here (see bench/gateway.py), and the counter and its expiry are
# set atomically.
_HIT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ended = 0
if KEYS[2] then ended = redis.call('EXISTS', KEYS[2]) end
return {count, ended}
"""
_hit_scripts: dict[int, object] = {}


async def hit(rate_key: str, session_key: str | None) -> tuple[int, bool]:
    """Count one request in this minute's window; say whether the session was ended."""
    if uses_redis():
        client = _async_redis()
        script = _hit_scripts.get(id(client))
        if script is None:
            script = _hit_scripts[id(client)] = client.register_script(_HIT_SCRIPT)
        count, ended = await script(keys=[rate_key, session_key] if session_key else [rate_key], args=[61])
        return int(count), bool(ended)
    count = _memory.incr(rate_key, ttl=61)
    return count, bool(session_key and _memory.get(session_key))


async def end_session(session_key: str) -> None:
    if uses_redis():
        await _async_redis().set(session_key, 1, ex=SESSION_TTL)
    else:
        _memory.set(session_key, 1, ttl=SESSION_TTL)


def clear_for_tests() -> None:
    """Forget every gateway counter, epoch and ended session (test isolation)."""
    _memory._values.clear()
    if uses_redis():
        client = _sync_redis()
        keys = list(client.scan_iter("gw:*"))
        if keys:
            client.delete(*keys)
