"""Counters shared by every gateway process: rate limits and ended MCP sessions.

Redis when a URL is given (REDIS_URL); otherwise this process's memory (the embedded
default runs one process, so that is shared enough). Invalidation is not here: it lives
in the database (``Hooks.read_changes``), so it survives Redis restarts and works without
Redis.

**No Redis round trip per request.** A request that finds what it needs in this process
answers from memory; Redis is asked in batches, mostly in the background:

* *Rate limits: hits leased in batches.* A process takes a batch of hits for a key from
  Redis with one Lua call (``_LEASE_SCRIPT``: the sliding window of ``_sliding_window``, on
  Redis's clock, so every host agrees on the windows), counts them against the shared
  window at once, and spends them locally. A lease never holds more than the window has
  left: at most ``min(wanted, max(1, room // LEASE_SHARE))`` hits, where ``room`` is how
  many more requests the window allows right now. Its size follows the key's traffic in
  this process: what ``LEASE_SPAN`` seconds of it need, from 1 (a client that calls now and
  then: one hit per call, as exact as a round trip per request) up to ``LEASE_MAX``. The
  next lease is asked for in the background once half of one is spent, so a busy key never
  waits for Redis. Hits not spent within ``LEASE_TTL`` seconds, or by the end of the window
  they were taken in, go back to Redis with the process's next reading of the stream (below:
  within ``REFRESH_EVERY`` while it serves requests; a process that falls idle gives them
  back when it serves again or stops, ``aclose``; at worst they age out with their window).

  The error, documented: the processes together never let more than the limit through
  (each hit is counted in Redis before it is spent, as before); they may refuse early by at
  most the hits other processes hold unspent — per process and key at most
  ``min(LEASE_MAX, room // LEASE_SHARE)``, for about ``LEASE_TTL`` seconds. A limit below
  ``2 * LEASE_SHARE`` always leases one hit at a time. A refusal is remembered for
  ``REFUSAL_CACHE`` seconds (the process asks Redis again after that).

* *Ended sessions: a stream, read in the background.* ``end_session`` sets the session's
  key (as before, for ``SESSION_TTL``) and appends it to the Redis stream
  ``ENDED_STREAM``. Each process reads the stream every ``REFRESH_EVERY`` seconds in the
  background, and a request carrying a session waits for a reading when the last one is
  older than ``STALE_AFTER``; a session id the process has not seen yet is checked once
  with ``EXISTS``. So a session ended (DELETE) on any process is refused by every process
  within ``STALE_AFTER`` seconds plus one round trip (well under a second).

When Redis fails (down, restarting, its connection pool exhausted) the gateway degrades
instead of failing: rate limits are counted in this process's memory, and a session
ended elsewhere during the outage is not known here until Redis answers again (then every
session is checked with ``EXISTS`` once more). After a failure Redis is left alone for
``RETRY_AFTER_FAILURE`` seconds, so an outage costs each request nothing but a dictionary
lookup. Every such fallback is logged (at most once per ``RETRY_AFTER_FAILURE``). Sessions
ended during an outage are written to Redis as soon as it answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

logger = logging.getLogger(__name__)

SESSION_TTL = 60 * 60 * 24 * 7
WINDOW = 60  # seconds: limits are "per minute"
RETRY_AFTER_FAILURE = 1.0
MEMORY_KEYS = 100_000  # the in-process store forgets the least recently used beyond this

LEASE_MAX = 256  # hits one lease may hold
LEASE_SHARE = 8  # a lease takes at most 1/LEASE_SHARE of what the window has left
LEASE_SPAN = 0.1  # seconds of a key's traffic (in this process) one lease aims to cover
LEASE_TTL = 1.0  # seconds after which a lease's unspent hits go back to Redis
REFUSAL_CACHE = 0.1  # seconds a refusal is answered without asking Redis again

ENDED_STREAM = "gw:sess:ended"  # session keys as they are ended, for every process to read
ENDED_STREAM_KEEP = 600  # seconds of endings the stream keeps
REFRESH_EVERY = 0.2  # seconds between two background readings of the stream
STALE_AFTER = 0.6  # a request with a session waits for a reading older than this
READ_BATCH = 1000


@dataclass(frozen=True)
class Hit:
    allowed: bool
    retry_after: int  # seconds until a request would be allowed again (when not allowed)
    session_ended: bool


ALLOWED = Hit(True, 0, False)


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


# The same algorithm on Redis, on Redis's clock (TIME), for a batch of hits: the k-th hit of
# the batch passes when previous * weight + current + k < limit, so ``room`` hits can pass
# now. Grants at most min(wanted, max(1, room // share)) and counts them at once. Returns
# {granted, retry after (when none), the window's index, seconds left in the window}.
_LEASE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local share = tonumber(ARGV[4])
local index = math.floor(now / window)
local elapsed = now - index * window
local current_key = KEYS[1] .. ':' .. index
local previous = tonumber(redis.call('GET', KEYS[1] .. ':' .. (index - 1)) or '0')
local current = tonumber(redis.call('GET', current_key) or '0')
local room = math.ceil(limit - (previous * (1 - elapsed / window) + current))
local granted = 0
local retry = 0
if room > 0 then
  granted = math.min(wanted, math.max(1, math.floor(room / share)))
  if redis.call('INCRBY', current_key, granted) == granted then redis.call('EXPIRE', current_key, window * 2 + 1) end
elseif current >= limit then
  retry = math.ceil(window - elapsed)
else
  retry = math.ceil(((1 - (limit - current) / previous) - elapsed / window) * window)
end
if granted == 0 then retry = math.max(retry, 1) end
return {granted, retry, index, tostring(window - elapsed)}
"""

# Unspent hits back into the window they were taken from (never below zero; a window
# that expired meanwhile stays gone).
_RETURN_SCRIPT = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count > 0 then redis.call('DECRBY', KEYS[1], math.min(count, tonumber(ARGV[1]))) end
return 0
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
        """Whether this process knows ``session_key`` ended (known even if Redis forgot)."""
        with self._lock:
            return bool(self._get(session_key, time.time()))

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


class _Lease:
    """This process's hits for one key, taken from Redis and not spent yet."""

    __slots__ = (
        "expires",
        "granted_at",
        "index",
        "left",
        "limit",
        "refill",
        "refused_until",
        "retry_at",
        "size",
        "spent",
    )

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.index = -1  # the Redis window the unspent hits were counted in
        self.left = 0
        self.expires = -math.inf  # monotonic; unspent hits go back after this
        self.size = 1  # hits the next lease asks for
        self.spent = 0  # hits spent since the last grant (the key's rate here)
        self.granted_at = time.monotonic()
        self.refill: asyncio.Task | None = None
        self.refused_until = -math.inf
        self.retry_at = 0.0


class SharedState:
    """Rate limits and ended sessions, on Redis when configured, degrading to memory."""

    def __init__(self, redis_url: str = "") -> None:
        self.redis_url = redis_url
        self.memory = _Memory()
        self._clients: dict[int, tuple[object, object, object]] = {}  # event loop id -> (client, lease, return)
        self._failed_at = -math.inf
        # Sessions ended while Redis was down: written to Redis as soon as it answers again,
        # so the other processes learn of them then.
        self._unsynced: OrderedDict[str, float] = OrderedDict()
        self._leases: dict[str, _Lease] = {}
        self._held: dict[str, _Lease] = {}  # leases with unspent hits, to give back when they expire
        self._returns: list[tuple[str, int]] = []  # (window key, hits) to give back with the next reading
        # Ended sessions: the stream read up to ``_cursor`` (None: not yet, or since a
        # failure); session keys checked not ended by then (insertion order, bounded).
        self._cursor: bytes | None = None
        self._checked: dict[str, None] = {}
        self._read_at = -math.inf  # monotonic time the last successful reading began
        self._reading: asyncio.Task | None = None
        self._generation = 0  # moved by every failure: a check begun before one is not kept
        self._tasks: set[asyncio.Task] = set()

    @property
    def uses_redis(self) -> bool:
        return bool(self.redis_url)

    def _redis(self):
        loop_id = id(asyncio.get_running_loop())
        clients = self._clients.get(loop_id)
        if clients is None:
            import redis.asyncio as aredis

            # A blocking pool: a burst waits briefly for a connection instead of failing
            # with "Too many connections"; short timeouts so an outage is noticed at once.
            pool = aredis.BlockingConnectionPool.from_url(
                self.redis_url, max_connections=64, timeout=1.0, socket_timeout=1.0, socket_connect_timeout=0.5
            )
            client = aredis.Redis(connection_pool=pool)
            clients = (client, client.register_script(_LEASE_SCRIPT), client.register_script(_RETURN_SCRIPT))
            self._clients[loop_id] = clients
        return clients

    def _redis_usable(self) -> bool:
        return self.uses_redis and time.monotonic() - self._failed_at >= RETRY_AFTER_FAILURE

    def _failed(self, exc: BaseException) -> None:
        if time.monotonic() - self._failed_at >= RETRY_AFTER_FAILURE:
            logger.warning(
                "Redis is not answering (%s): rate limits are counted per process until it is back", type(exc).__name__
            )
        self._failed_at = time.monotonic()
        # Endings may be missed meanwhile: once Redis answers, read the stream afresh and
        # check every session again.
        self._cursor = None
        self._checked.clear()
        self._generation += 1

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._failed(task.exception())  # a background lease failed: nobody else may hear of it

    # --- the hot path -------------------------------------------------------------------

    async def hit(self, key: str, *, limit: int, session_key: str | None) -> Hit:
        """Count one request against ``limit`` per minute for ``key``; say if the session ended."""
        if self._redis_usable():
            try:
                if time.monotonic() - self._read_at >= REFRESH_EVERY:
                    self._read_soon()
                allowed, retry = await self._take(key, limit)
                ended = bool(session_key) and await self._ended(session_key)
                if allowed and not ended:
                    return ALLOWED
                return Hit(allowed, retry, ended)
            except Exception as exc:  # any Redis or socket failure: degrade, never fail the request
                self._failed(exc)
        return self.memory.hit(key, limit, session_key)

    async def _take(self, key: str, limit: int) -> tuple[bool, int]:
        """Spend one hit of this process's lease for ``key``, leasing more when it is empty."""
        lease = self._leases.get(key)
        if lease is None or lease.limit != limit:
            if lease is not None:
                self._give_back(key, lease)
            elif len(self._leases) >= MEMORY_KEYS:
                self._forget_idle_leases()
            lease = self._leases[key] = _Lease(limit)
        while True:
            now = time.monotonic()
            if lease.left > 0 and now < lease.expires:
                lease.left -= 1
                lease.spent += 1
                if lease.left <= lease.size // 2 and lease.size > 1 and not self._refilling(lease):
                    lease.refill = self._spawn(self._lease(key, lease))  # the next batch, in the background
                return True, 0
            if now < lease.refused_until:
                return False, max(1, math.ceil(lease.retry_at - now))
            if not self._refilling(lease):
                lease.refill = self._spawn(self._lease(key, lease))
            await asyncio.shield(lease.refill)  # raises what the lease call raised
            if lease.left <= 0 and time.monotonic() < lease.refused_until:
                return False, max(1, math.ceil(lease.retry_at - time.monotonic()))

    @staticmethod
    def _refilling(lease: _Lease) -> bool:
        task = lease.refill
        return task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop()

    async def _lease(self, key: str, lease: _Lease) -> None:
        """One Lua call: a batch of hits sized to the key's recent rate here."""
        now = time.monotonic()
        rate = lease.spent / max(now - lease.granted_at, 1e-3)
        lease.size = max(1, min(LEASE_MAX, int(rate * LEASE_SPAN) + 1))
        _, script, _ = self._redis()
        granted, retry, index, window_left = await script(
            keys=[key], args=[lease.limit, WINDOW, lease.size, LEASE_SHARE]
        )
        now = time.monotonic()
        if lease.left > 0 and (index != lease.index or now >= lease.expires):
            self._give_back(key, lease)  # hits of an earlier window or past their time
        lease.index = index
        lease.left += granted
        lease.spent = 0
        lease.granted_at = now
        lease.expires = min(now + LEASE_TTL, now + float(window_left))
        if granted:
            self._held[key] = lease
        else:
            lease.retry_at = now + retry
            lease.refused_until = now + min(REFUSAL_CACHE, retry)

    def _give_back(self, key: str, lease: _Lease) -> None:
        """Queue the lease's unspent hits for return to Redis (with the next reading)."""
        if lease.left > 0:
            self._returns.append((f"{key}:{lease.index}", lease.left))
            lease.left = 0
        self._held.pop(key, None)

    def _forget_idle_leases(self) -> None:
        for key in [k for k, lease in self._leases.items() if lease.left <= 0 and not self._refilling(lease)]:
            del self._leases[key]
        if len(self._leases) >= MEMORY_KEYS:  # all busy: forget the oldest anyway
            for key in list(self._leases)[: MEMORY_KEYS // 10]:
                self._give_back(key, self._leases.pop(key))

    async def _ended(self, session_key: str) -> bool:
        """Whether the session was ended on any process (within STALE_AFTER)."""
        if time.monotonic() - self._read_at >= STALE_AFTER or self._cursor is None:
            await self._read_now()
        if session_key in self._checked:
            return False
        if self.memory.hit_session(session_key):
            return True
        # First time here (since the last failure): ask Redis once. An ending after this
        # EXISTS is in the stream after the cursor, so the next reading sees it.
        generation = self._generation
        client, _, _ = self._redis()
        if await client.exists(session_key):
            self.memory.end_session(session_key)
            return True
        if generation == self._generation and self._cursor is not None:
            self._checked[session_key] = None
            if len(self._checked) > MEMORY_KEYS:
                del self._checked[next(iter(self._checked))]
        return False

    # --- reading the stream (and the other batched work) ------------------------------------

    def _read_soon(self) -> asyncio.Task:
        task = self._reading
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = self._reading = self._spawn(self._read_guarded())
        return task

    async def _read_now(self) -> None:
        await asyncio.shield(self._read_soon())
        if not self._redis_usable():
            raise ConnectionError("cannot read the ended sessions from Redis")
        if time.monotonic() - self._read_at >= STALE_AFTER or self._cursor is None:
            self._read_soon()  # the reading under way began too early: one more
            await asyncio.shield(self._reading)
            if self._cursor is None:
                raise ConnectionError("cannot read the ended sessions from Redis")

    async def _read_guarded(self) -> None:
        try:
            await self._read()
        except Exception as exc:
            self._failed(exc)

    async def _read(self) -> None:
        """Learn the sessions ended since the last reading; write the ones ended here while
        Redis was down; give back expired leases."""
        client, _, give_back = self._redis()
        began = time.monotonic()
        if self._unsynced:
            await self._sync_ended_sessions()
        if self._cursor is None:
            last = await client.xrevrange(ENDED_STREAM, count=1)
            self._cursor = last[0][0] if last else b"0-0"
        else:
            while True:
                answer = await client.xread({ENDED_STREAM: self._cursor}, count=READ_BATCH)
                entries = answer[0][1] if answer else []
                for _, entry in entries:
                    ended = entry.get(b"k", b"").decode()
                    self.memory.end_session(ended)
                    self._checked.pop(ended, None)
                if entries:
                    self._cursor = entries[-1][0]
                if len(entries) < READ_BATCH:
                    break
        self._read_at = began
        now = time.monotonic()
        for key, lease in list(self._held.items()):
            if lease.left <= 0:
                del self._held[key]
            elif now >= lease.expires:
                self._give_back(key, lease)
        if self._returns:
            returns, self._returns = self._returns, []
            try:
                async with client.pipeline(transaction=False) as pipe:
                    for window_key, hits in returns:
                        await give_back(keys=[window_key], args=[hits], client=pipe)
                    await pipe.execute()
            except Exception:
                self._returns[:0] = returns  # given back with the next reading instead
                raise

    # --- ending sessions -------------------------------------------------------------------

    async def end_session(self, session_key: str) -> None:
        self.memory.end_session(session_key)  # known here at once, and during an outage
        self._checked.pop(session_key, None)
        if self._redis_usable():
            try:
                await self._write_ended([(session_key, time.time() + SESSION_TTL)])
                return
            except Exception as exc:
                self._failed(exc)
        self._unsynced[session_key] = time.time() + SESSION_TTL
        while len(self._unsynced) > MEMORY_KEYS:
            self._unsynced.popitem(last=False)

    async def _write_ended(self, ended: list[tuple[str, float]]) -> None:
        """Set each session's key and append it to the stream (in one transaction: a process
        that reads the stream's entry finds the key set)."""
        client, _, _ = self._redis()
        keep_from = f"{int((time.time() - ENDED_STREAM_KEEP) * 1000)}-0"
        async with client.pipeline(transaction=True) as pipe:
            for key, expires in ended:
                pipe.set(key, 1, ex=max(1, int(expires - time.time())))
                pipe.xadd(ENDED_STREAM, {"k": key}, minid=keep_from, approximate=True)
            await pipe.execute()

    async def _sync_ended_sessions(self) -> None:
        pending = list(self._unsynced.items())
        await self._write_ended(pending)
        for key, _ in pending:
            self._unsynced.pop(key, None)

    # --- life cycle ----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Give back unspent hits and close the Redis connections of the running event loop
        (at the gateway's stop)."""
        loop = asyncio.get_running_loop()
        for task in [t for t in self._tasks if t.get_loop() is loop]:
            task.cancel()
        for key, lease in list(self._held.items()):
            self._give_back(key, lease)
        clients = self._clients.get(id(loop))
        if clients is not None and self._returns and self._redis_usable():
            returns, self._returns = self._returns, []
            with contextlib.suppress(Exception):
                async with clients[0].pipeline(transaction=False) as pipe:
                    for window_key, hits in returns:
                        await clients[2](keys=[window_key], args=[hits], client=pipe)
                    await asyncio.wait_for(pipe.execute(), 1.0)
        clients = self._clients.pop(id(loop), None)
        if clients is not None:
            await clients[0].aclose()

    def clear_for_tests(self) -> None:
        """Forget every counter, lease and ended session (test isolation)."""
        self.memory.clear()
        self._unsynced.clear()
        self._failed_at = -math.inf
        self._leases.clear()
        self._held.clear()
        self._returns.clear()
        self._cursor = None
        self._checked.clear()
        self._read_at = -math.inf
        if self.uses_redis:
            import redis

            client = redis.Redis.from_url(self.redis_url)
            keys = list(client.scan_iter("gw:*"))
            if keys:
                client.delete(*keys)
            client.close()
