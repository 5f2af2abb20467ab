"""How many upstream calls one tenant may have in flight, so that one cannot starve another.

Each call a caller makes to an upstream (``tools/call``, ``prompts/get``, ``resources/read``,
``completion/complete``) holds two slots while it runs: one of its upstream server's
(``UpstreamServer.max_concurrency``, else MCPNEST_GATEWAY_UPSTREAM_CONCURRENCY) and one of
its workspace's (MCPNEST_GATEWAY_WORKSPACE_CONCURRENCY). A call that finds no free slot
waits at most MCPNEST_GATEWAY_QUEUE_SECONDS and is then refused as busy (``Busy``), so a
flood of slow calls in one workspace fills that workspace's slots and queue, never the
connections or the time of another. Catalog listings do not take slots: a busy upstream
must not vanish from ``tools/list``.

The slots are ``asyncio.Semaphore``s (``Slots``), owned by the gateway's upstream pool (one
event loop), created on first use and keyed by workspace id and upstream server id. The
tables are bounded: past ``MAX_KEYS`` entries, idle semaphores (every slot free, nobody
waiting) are dropped; one is simply created again when next needed. A call
that finds free slots costs two dictionary lookups and two counter decrements: it neither
waits nor allocates beyond the pair it returns.
"""

from __future__ import annotations

import asyncio

from relay.config import Settings, UpstreamConfig

# The JSON-RPC code of a busy refusal: the "retry later" family of the gateway's rate limit
# (engine.RATE_LIMITED); the audit row says which (429 rate-limited, 503 busy).
BUSY = -32005
BUSY_STATUS = 503
MAX_KEYS = 10_000


class Slots(asyncio.Semaphore):
    """An ``asyncio.Semaphore`` with a fast path that neither awaits nor allocates."""

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self.capacity = capacity

    def try_acquire(self) -> bool:
        # locked() without its generator: free slots and nobody queued ahead.
        if self._value > 0 and not self._waiters:
            self._value -= 1
            return True
        return False

    @property
    def idle(self) -> bool:
        return self._value >= self.capacity and not self._waiters


Held = tuple[Slots, Slots]


class Busy(Exception):
    """No slot freed within MCPNEST_GATEWAY_QUEUE_SECONDS; the message names the limit."""


class CallLimits:
    """The slots of one event loop. ``acquire`` before calling an upstream, ``release`` after."""

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self.max_keys = max_keys
        # A changed capacity (settings, the server's max_concurrency) gets new Slots; the
        # calls holding the old ones release into them.
        self._workspaces: dict[int, Slots] = {}
        self._upstreams: dict[int, Slots] = {}

    async def acquire(
        self, workspace_id: int, workspace_slug: str, upstream: UpstreamConfig, settings: Settings
    ) -> Held:
        """Take a slot of the upstream, then one of the workspace (upstream first: a caller
        queued for one busy upstream then holds no workspace slot its neighbours need)."""
        own_limit = upstream.max_concurrency
        upstream_slots = self._slots(self._upstreams, upstream.server_id, own_limit or settings.upstream_concurrency)
        workspace_slots = self._slots(self._workspaces, workspace_id, settings.workspace_concurrency)
        deadline = None
        if not upstream_slots.try_acquire():
            deadline = asyncio.get_running_loop().time() + settings.queue_seconds
            try:
                async with asyncio.timeout_at(deadline):
                    await upstream_slots.acquire()
            except TimeoutError:
                setting = "the server's max concurrency" if own_limit else "MCPNEST_GATEWAY_UPSTREAM_CONCURRENCY"
                raise Busy(
                    f"Upstream server {upstream.slug} is busy: it has {upstream_slots.capacity} calls in flight, "
                    f"its limit ({setting}), and none finished within {settings.queue_seconds:g} s "
                    "(MCPNEST_GATEWAY_QUEUE_SECONDS). Retry later."
                ) from None
        if not workspace_slots.try_acquire():
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + settings.queue_seconds
            try:
                async with asyncio.timeout_at(deadline):
                    await workspace_slots.acquire()
            except TimeoutError:
                upstream_slots.release()
                raise Busy(
                    f"Workspace {workspace_slug} is busy: it has {workspace_slots.capacity} upstream calls in "
                    "flight, its limit (MCPNEST_GATEWAY_WORKSPACE_CONCURRENCY), and none finished within "
                    f"{settings.queue_seconds:g} s (MCPNEST_GATEWAY_QUEUE_SECONDS). Retry later."
                ) from None
            except BaseException:
                upstream_slots.release()
                raise
        return upstream_slots, workspace_slots

    @staticmethod
    def release(held: Held) -> None:
        held[0].release()
        held[1].release()

    def in_flight(self, *, workspace_id: int | None = None, server_id: int | None = None) -> int:
        """Slots taken right now (for tests and diagnostics)."""
        slots = self._workspaces.get(workspace_id) if workspace_id is not None else self._upstreams.get(server_id)
        return 0 if slots is None else slots.capacity - slots._value

    def _slots(self, table: dict[int, Slots], key: int, capacity: int) -> Slots:
        slots = table.get(key)
        if slots is not None and slots.capacity == capacity:
            return slots
        if slots is None and len(table) >= self.max_keys:
            for idle in [key for key, slots in table.items() if slots.idle]:
                del table[idle]
        slots = table[key] = Slots(capacity)
        return slots
