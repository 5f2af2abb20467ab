"""Counters shared by every gateway process: rate limits and ended MCP sessions.

Redis when REDIS_URL is set; otherwise this process's memory (the embedded default runs
one process, so that is shared enough). Invalidation is not here: it lives in the
database (``apps.core.epochs``), so it survives Redis restarts and works without Redis.

The hot path makes one round trip here per request (one Lua script).

When Redis fails (down, restarting, its connection pool exhausted) the gateway degrades
instead of failing: rate limits are counted in this process's memory, and a session
ended elsewhere during the outage is not known here until Redis answers again. After a
failure Redis is left alone for ``RETRY_AFTER_FAILURE`` seconds, so an outage costs each
request nothing but a dictionary lookup. Every such fallback is logged (at most once per
``RETRY_AFTER_FAILURE``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings

logger = logging.getLogger(__name__)

SESSION_TTL = 60 * 60 * 24 * 7
WINDOW = 60  # seconds: limits are "per minute"
RETRY_AFTER_FAILURE = 1.0
MEMORY_KEYS = 100_000  # the in-process store forgets the least recently used beyond this


@dataclass(frozen=True)
class Hit:
    allowed: bool
    retry_after: int  # seconds until a request would be allowed again (when not allowed)
    session_ended: bool


def _sliding_window(previous: float, current: float, elapsed: float, limit: int) -> tuple[bool, int]:
    """A sliding one-minute window from two fixed windows (the previous one weighted by how
    much of it still overlaps). Never lets more than ``limit`` through in any 60 seconds
    (up to the estimate's smoothing), unlike a fixed window that allows 2× at a boundary."""
    weight = 1 - elapsed / WINDOW
    if previous * weight + current < limit:
        return True, 0
    if current >= limit:
        return False, max(1, math.ceil(WINDOW - elapsed))
    # Wait until enough of the previous window has slid out.
    needed = 1 - (limit - current) / previous
    return False, max(1, math.ceil((needed - elapsed / WINDOW) * WINDOW))


# The same algorithm on Redis, on Redis's clock (TIME): every host agrees on the windows.
_HIT_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[2])
local index = math.floor(now / window)
local elapsed = now - index * window
local current_key = KEYS[1] .. ':' .. index
local previous = tonumber(redis.call('GET', KEYS[1] .. ':' .. (index - 1)) or '0')
local current = tonumber(redis.call('GET', current_key) or '0')
local limit = tonumber(ARGV[1])
local allowed = 0
local retry = 0
if previous * (1 - elapsed / window) + current < limit then
  allowed = 1
  if redis.call('INCR', current_key) == 1 then redis.call('EXPIRE', current_key, window * 2 + 1) end
elseif current >= limit then
  retry = math.ceil(window - elapsed)
else
  retry = math.ceil(((1 - (limit - current) / previous) - elapsed / window) * window)
end
local ended = 0
if KEYS[2] then ended = redis.call('EXISTS', KEYS[2]) end
return {allowed, math.max(retry, allowed == 1 and 0 or 1), ended}
"""


class _Memory:
    """The in-process store: bounded (LRU), entries expire."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (value, expires)

    def _get(self, key: str, now: float) -> float:
        item = self._values.get(key)
        if item is None:
            return 0
        if item[1] <= now:
            del self._values[key]
            return 0
        self._values.move_to_end(key)
        return item[0]

    def _put(self, key: str, value: float, expires: float) -> None:
        self._values[key] = (value, expires)
        self._values.move_to_end(key)
        while len(self._values) > MEMORY_KEYS:
            self._values.popitem(last=False)

    def hit(self, key: str, limit: int, session_key: str | None) -> Hit:
        with self._lock:
            now = time.time()
            index = int(now // WINDOW)
            elapsed = now - index * WINDOW
            current_key = f"{key}:{index}"
            current = self._get(current_key, now)
            allowed, retry = _sliding_window(self._get(f"{key}:{index - 1}", now), current, elapsed, limit)
            if allowed:
                self._put(current_key, current + 1, (index + 2) * WINDOW + 1)
            ended = bool(session_key and self._get(session_key, now))
            return Hit(allowed, retry, ended)

    def end_session(self, session_key: str) -> None:
        with self._lock:
            self._put(session_key, 1, time.time() + SESSION_TTL)

    def hit_session(self, session_key: str) -> bool:
        """Whether this process ended ``session_key`` itself (known even if Redis forgot)."""
        with self._lock:
            return bool(self._get(session_key, time.time()))

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


class SharedState:
    """Rate limits and ended sessions, on Redis when configured, degrading to memory."""

    def __init__(self) -> None:
        self.memory = _Memory()
        self._clients: dict[int, tuple[object, object]] = {}  # event loop id -> (client, script)
        self._failed_at = -math.inf
        # Sessions ended while Redis was down: written to Redis as soon as it answers again,
        # so the other processes learn of them then.
        self._unsynced: OrderedDict[str, float] = OrderedDict()

    @property
    def uses_redis(self) -> bool:
        return bool(settings.REDIS_URL)

    def _redis(self):
        loop_id = id(asyncio.get_running_loop())
        pair = self._clients.get(loop_id)
        if pair is None:
            import redis.asyncio as aredis

            # A blocking pool: a burst waits briefly for a connection instead of failing
            # with "Too many connections"; short timeouts so an outage is noticed at once.
            pool = aredis.BlockingConnectionPool.from_url(
                settings.REDIS_URL, max_connections=64, timeout=1.0, socket_timeout=1.0, socket_connect_timeout=0.5
            )
            client = aredis.Redis(connection_pool=pool)
            pair = self._clients[loop_id] = (client, client.register_script(_HIT_SCRIPT))
        return pair

    def _redis_usable(self) -> bool:
        return self.uses_redis and time.monotonic() - self._failed_at >= RETRY_AFTER_FAILURE

    def _failed(self, exc: BaseException) -> None:
        if time.monotonic() - self._failed_at >= RETRY_AFTER_FAILURE:
            logger.warning(
                "Redis is not answering (%s): rate limits are counted per process until it is back", type(exc).__name__
            )
        self._failed_at = time.monotonic()

    async def hit(self, key: str, *, limit: int, session_key: str | None) -> Hit:
        """Count one request against ``limit`` per minute for ``key``; say if the session ended."""
        if self._redis_usable():
            _, script = self._redis()
            try:
                allowed, retry, ended = await script(
                    keys=[key, session_key] if session_key else [key], args=[limit, WINDOW]
                )
                if self._unsynced:
                    await self._sync_ended_sessions()
                ended = ended or bool(session_key and self.memory.hit_session(session_key))
                return Hit(bool(allowed), int(retry), bool(ended))
            except Exception as exc:  # any Redis or socket failure: degrade, never fail the request
                self._failed(exc)
        return self.memory.hit(key, limit, session_key)

    async def end_session(self, session_key: str) -> None:
        self.memory.end_session(session_key)  # known here at once, and during an outage
        if self._redis_usable():
            client, _ = self._redis()
            try:
                await client.set(session_key, 1, ex=SESSION_TTL)
                return
            except Exception as exc:
                self._failed(exc)
        self._unsynced[session_key] = time.time() + SESSION_TTL
        while len(self._unsynced) > MEMORY_KEYS:
            self._unsynced.popitem(last=False)

    async def _sync_ended_sessions(self) -> None:
        client, _ = self._redis()
        pending = list(self._unsynced.items())
        async with client.pipeline(transaction=False) as pipe:
            for key, expires in pending:
                pipe.set(key, 1, ex=max(1, int(expires - time.time())))
            await pipe.execute()
        for key, _ in pending:
            self._unsynced.pop(key, None)

    def clear_for_tests(self) -> None:
        """Forget every counter and ended session (test isolation)."""
        self.memory.clear()
        self._unsynced.clear()
        self._failed_at = -math.inf
        if self.uses_redis:
            import redis

            client = redis.Redis.from_url(settings.REDIS_URL)
            keys = list(client.scan_iter("gw:*"))
            if keys:
                client.delete(*keys)
            client.close()


shared = SharedState()
