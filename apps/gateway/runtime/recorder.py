"""Recording tool calls without slowing requests down.

The view only appends a dict to an in-process queue. A background thread drains the
queue in batches into the audit chain (one transaction per workspace per batch) and
writes tokens' ``last_used_at`` at most once a minute each. At interpreter exit (a
graceful restart) the thread drains whatever is left, so no row is lost.

The thread shares the GIL with the event loop, and a batch costs a fixed few
milliseconds (a transaction, on SQLite a fresh connection) plus ~0.1 ms a row. So it
waits ``INTERVAL`` between batches while calls keep coming: a few large batches a second
cost the loop far less than many small ones, and a row still lands within a second.
``flush()`` wakes it at once.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from datetime import datetime
from typing import Any

from django.db import close_old_connections

logger = logging.getLogger(__name__)

BATCH = 1000
INTERVAL = 0.25


class Recorder:
    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._touches: dict[int, datetime] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._pending = 0

    def record(self, row: dict[str, Any], *, token_id: int | None = None, now: datetime | None = None) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put(row)
        if token_id is not None and now is not None:
            self._touches[token_id] = now
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping.clear()
                self._thread = threading.Thread(target=self._run, name="mcpnest-audit-recorder", daemon=True)
                self._thread.start()

    def _drain(self) -> int:
        from apps.audit.services import tool_calls_record
        from apps.tokens.models import GatewayToken

        rows = []
        while len(rows) < BATCH:
            try:
                rows.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if rows:
            for attempt in range(5):
                try:
                    tool_calls_record(rows)
                    break
                except Exception:
                    logger.exception("recording %d tool calls failed (attempt %d)", len(rows), attempt + 1)
                    close_old_connections()
                    time.sleep(0.2 * (attempt + 1))
            else:
                logger.error("dropping %d tool-call audit rows after repeated failures", len(rows))
        touches, self._touches = self._touches, {}
        for token_id, used_at in touches.items():
            GatewayToken.objects.filter(pk=token_id).update(last_used_at=used_at)
        if rows:
            with self._idle:
                self._pending -= len(rows)
                self._idle.notify_all()
        close_old_connections()
        return len(rows)

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                if self._drain() < BATCH:  # a full batch means a backlog: go on at once
                    self._wake.wait(INTERVAL)
                    self._wake.clear()
            while self._drain():
                pass
        finally:
            close_old_connections()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every recorded row is in the database (tests, benchmarks, shutdown)."""
        self._ensure_thread()
        self._wake.set()
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        # Anything queued after the thread ended is written here, in this thread.
        while self._drain():
            pass


recorder = Recorder()
atexit.register(recorder.stop)
