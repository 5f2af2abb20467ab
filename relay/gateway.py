"""The gateway: one object that owns every piece of the relay's long-lived state.

Its host builds one per process (``apps.gateway.host.build_gateway`` at ASGI start-up;
tests build their own) and ends it with ``stop()``:

* ``snapshots``: tokens and workspace configurations, invalidated through ``Hooks``;
* ``shared``: rate limits and ended sessions (Redis, or this process's memory);
* ``recorder``: the audit spool and the thread that replays it through ``Hooks``;
* ``pool``: the HTTP client, the MCP session of each upstream, the tenants' call slots;
* ``engine``: the catalogs and the MCP methods;
* ``sessions``: sealing and reading ``Mcp-Session-Id`` values.

Life cycle: ``start()`` (on the event loop that will serve) starts the spool's replay, so
rows a crashed process left behind reach the database at start-up; ``stop()`` closes the
upstream connections and Redis clients, waits for the reports in flight, and writes what
is spooled (what cannot be written in time stays for the next process). The loop-bound
parts (HTTP client, semaphores, Redis clients) belong to the loop that started it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from relay.config import Hooks, Settings
from relay.engine import Engine
from relay.sessions import Sessions
from relay.shared import SharedState
from relay.snapshots import Snapshots
from relay.spool import Recorder
from relay.upstream import UpstreamPool

logger = logging.getLogger(__name__)


class Gateway:
    def __init__(self, *, settings: Settings, hooks: Hooks) -> None:
        self.hooks = hooks
        self.snapshots = Snapshots(hooks)
        self.shared = SharedState(settings.redis_url)
        self.recorder = Recorder(
            directory=settings.spool_dir / hooks.spool_name,
            max_bytes=settings.spool_max_bytes,
            write=hooks.record_calls,
            touch=hooks.note_token_use,
        )
        self.pool = UpstreamPool(settings)
        self.sessions = Sessions(settings.session_secret)
        self.engine = Engine(pool=self.pool, recorder=self.recorder, hooks=hooks, sessions=self.sessions)
        self._settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stopped = False

    @property
    def settings(self) -> Settings:
        return self._settings

    def reconfigure(self, **changes) -> None:
        """Apply changed settings (the host's settings changed; tests override them). The
        spool directory and Redis URL are fixed for the gateway's life."""
        self._settings = replace(self._settings, **changes)
        self.pool.settings = self._settings
        self.recorder.max_bytes = self._settings.spool_max_bytes

    @property
    def started(self) -> bool:
        return self._loop is not None

    def start(self) -> None:
        """Begin serving on the running event loop (idempotent)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self.recorder.start()

    def start_recorder(self) -> None:
        """Replay the spool now, before any event loop runs (at process start-up)."""
        self.recorder.start()

    async def stop(self, timeout: float = 30.0) -> None:
        if self.stopped:
            return
        self.stopped = True
        await self.engine.aclose()
        await self.pool.aclose()
        await self.shared.aclose()
        await asyncio.to_thread(self.recorder.stop, timeout)

    def stop_sync(self, timeout: float = 30.0) -> None:
        """``stop()`` from outside the loop (an ``atexit`` handler, a test's teardown): the
        loop-bound clients are left to the process's end; the spool is written."""
        if self.stopped:
            return
        self.stopped = True
        self.recorder.stop(timeout)
