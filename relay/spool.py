"""Recording gateway calls so that no answered call is ever without its audit row.

**The spool.** Before the gateway answers a call, the call's row goes into this process's
spool: a local append-only file (one JSON line per row, one ``write()`` to the page cache,
a few microseconds). A background thread replays the spool into the audit chain in
batches (one transaction per workspace per batch) and only then moves past those rows.
So:

* a crash, ``kill -9`` or OOM kill loses nothing the kernel has accepted: the next
  process to start on the same spool directory (or a sibling already running, within
  ``ADOPT_EVERY`` seconds) adopts the dead process's segment files and replays them;
* a database outage loses nothing: the thread retries with back-off while rows wait on
  disk (bounded by ``Settings.spool_max_bytes``; beyond it the gateway refuses calls with
  503 instead of answering calls it could not record), then writes them in order;
* replay is idempotent: every row carries a random ``record_id`` and the audit service
  skips ids already written, so a crash between the database commit and the thread
  moving on writes no duplicate.

Segment files live in ``Settings.spool_dir/<Hooks.spool_name>/`` (the name is the
database's, so a directory shared by mistake never sends rows to the wrong one). Each is locked with
``flock`` by the process that writes it; a segment whose lock is free belongs to a dead
process. A host crash (power loss) can lose what the kernel had not written to disk yet:
the spool protects against process failures, not machine failures.

The thread waits ``INTERVAL`` between batches while calls keep coming: a few large
batches a second cost the event loop (which shares the GIL) far less than many small
ones, and a row still lands within a second. ``flush()`` wakes it at once.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from relay.codec import parse_json

logger = logging.getLogger(__name__)

BATCH = 1000
INTERVAL = 0.25
SEGMENT_BYTES = 8 * 1024 * 1024  # a new segment past this; consumed ones are deleted
ADOPT_EVERY = 5.0
TOUCH_EVERY = 60.0  # seconds between two writes of one token's last_used_at
MAX_BACKOFF = 5.0


_LINE = json.JSONEncoder(separators=(",", ":"), default=str).encode  # what orjson refuses (see _line)


def _line(row: dict[str, Any]) -> bytes:
    """One spool line: orjson, or the standard library for what orjson refuses (lone
    surrogates in a hostile client's values, integers beyond 64 bits); both parse back to
    the same values."""
    try:
        return orjson.dumps(row, default=str) + b"\n"
    except TypeError:  # orjson.JSONEncodeError is one
        return (_LINE(row) + "\n").encode()


class SpoolError(Exception):
    """The spool cannot take a row (full, or the disk refused the write)."""


@dataclass
class _Segment:
    path: Path
    fd: int
    size: int = 0  # bytes written (whole lines only)
    offset: int = 0  # bytes replayed into the database


def _lines(data: bytes) -> list[dict[str, Any]]:
    lines = [line for line in data.split(b"\n") if line.strip()]
    # One parse for the whole batch (a third cheaper than one per line): every line the gateway
    # wrote is a JSON object, so the array holds exactly one object per line. A damaged line
    # breaks the array (a torn prefix of an object cannot be closed by the objects after it),
    # and the lines are then parsed one by one.
    try:
        rows = parse_json(b"[" + b",".join(lines) + b"]")
    except ValueError:
        rows = None
    if isinstance(rows, list) and len(rows) == len(lines) and all(type(row) is dict for row in rows):
        return rows
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        # A damaged line (a torn write) still gets a row: the audit service quarantines it.
        rows.append(row if isinstance(row, dict) else {"_spool_line": line[:8000].decode("utf-8", "replace")})
    return rows


class Recorder:
    """One process's spool and the thread that replays it. ``write(rows)`` puts rows on
    record for good (raising if the database fails); ``touch({token id: when})`` notes
    token use. Both run on the recorder's thread only."""

    def __init__(
        self,
        *,
        directory: Path,
        max_bytes: int,
        write: Callable[[list[dict[str, Any]]], None],
        touch: Callable[[dict[int | str, datetime]], None],
    ) -> None:
        self._root = directory
        self.max_bytes = max_bytes
        self._write_rows = write
        self._touch_rows = touch
        self._lock = threading.Lock()  # guards the segments and counters
        self._segments: deque[_Segment] = deque()
        self._directory: Path | None = None
        self._written = 0
        self._committed = 0
        self._touches: dict[int | str, datetime] = {}  # token id -> when last used, not yet written
        self._touched: dict[int | str, float] = {}  # token id -> when last noted (monotonic)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._progress = threading.Condition()
        self._adopted_at = 0.0
        self._counter = 0

    # --- writing (the event loop) -------------------------------------------------------

    @property
    def pending_bytes(self) -> int:
        return self._written - self._committed

    def has_room(self) -> bool:
        return self.pending_bytes < self.max_bytes

    def touch(self, token_id: int | str) -> None:
        """Note that a token was used; written with the next batch, at most once a minute per
        token (never a write per request)."""
        now = time.monotonic()
        last = self._touched.get(token_id)
        if last is not None and now - last < TOUCH_EVERY:
            return
        if len(self._touched) > 100_000:
            self._touched.clear()  # bounded; a token seen again is written again, once
        self._touched[token_id] = now
        with self._lock:
            self._touches[token_id] = datetime.now(UTC)
        self._ensure_thread()

    def forget_uses(self) -> None:
        """Forget which tokens were noted lately (test isolation: ids repeat between tests)."""
        self._touched.clear()

    def record(self, row: dict[str, Any]) -> None:
        """Put one row on disk (raises SpoolError if it cannot); it reaches the database shortly."""
        line = _line(row)
        with self._lock:
            if not self.has_room():
                raise SpoolError(
                    f"the audit spool holds {self.pending_bytes} bytes not yet in the database "
                    "(its limit, MCPNEST_SPOOL_MAX_BYTES); refusing calls until the database catches up"
                )
            segment = self._current_segment()
            try:
                written = os.write(segment.fd, line)
            except OSError as exc:
                raise SpoolError(f"the audit spool cannot be written ({exc.strerror})") from None
            if written != len(line):  # a short write (disk full): the tail is quarantined on replay
                raise SpoolError("the audit spool is full (short write)")
            segment.size += written
            self._written += written
        self._ensure_thread()

    def _current_segment(self) -> _Segment:
        if self._segments and self._segments[-1].size < SEGMENT_BYTES:
            return self._segments[-1]
        directory = self._spool_directory()
        self._counter += 1
        path = directory / f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}-{self._counter}.jsonl"
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # ours while this process lives
        segment = _Segment(path=path, fd=fd)
        self._segments.append(segment)
        return segment

    def _spool_directory(self) -> Path:
        if self._directory is None:
            directory = self._root
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._directory = directory
        return self._directory

    # --- replaying (the thread) ------------------------------------------------------------

    def start(self) -> None:
        """Start replaying now (at process start: a dead process's rows are adopted at once)."""
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._progress:
            if self._thread is None or not self._thread.is_alive():
                self._stopping.clear()
                self._thread = threading.Thread(target=self._run, name="mcpnest-audit-recorder", daemon=True)
                self._thread.start()

    def _write(self, rows: list[dict[str, Any]]) -> bool:
        """Write rows to the audit chain; False if the database is not answering."""
        try:
            self._write_rows(rows)
            return True
        except Exception as exc:
            # The audit service writes or quarantines every row it can; what reaches us is the
            # database itself failing. Nothing is lost: the rows stay in the spool.
            logger.warning("audit database unavailable (%s); %d rows wait in the spool", type(exc).__name__, len(rows))
            return False

    def _replay_own(self) -> int | None:
        """One batch from our own segments: rows written, or None if the database failed."""
        with self._lock:
            if not self._segments:
                return 0
            segment = self._segments[0]
            start, end = segment.offset, segment.size
        data = os.pread(segment.fd, min(end - start, 4 * 1024 * 1024), start) if end > start else b""
        lines = data[: data.rfind(b"\n") + 1].split(b"\n")[:-1][:BATCH]
        consumed = sum(len(line) + 1 for line in lines)
        rows = _lines(b"\n".join(lines))
        if rows and not self._write(rows):
            return None
        with self._lock:
            segment.offset += consumed
            self._committed += consumed
            if segment.offset == segment.size and segment is not self._segments[-1]:
                self._segments.popleft()
                segment.path.unlink(missing_ok=True)
                os.close(segment.fd)
        with self._progress:
            self._progress.notify_all()
        return len(rows)

    def _adopt_orphans(self) -> bool:
        """Replay the segments of dead processes; False if the database failed meanwhile."""
        directory = self._spool_directory()
        with self._lock:
            own = {segment.path for segment in self._segments}
        for path in sorted(directory.glob("*.jsonl")):
            if path in own:
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue  # another process adopted it meanwhile
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its writer is alive
                if os.fstat(fd).st_nlink == 0:
                    continue  # adopted and removed by another process before we locked it
                with os.fdopen(os.dup(fd), "rb") as file:
                    rows = _lines(file.read())
                logger.warning("replaying %d audit rows left in the spool by a stopped process (%s)", len(rows), path)
                for start in range(0, len(rows), BATCH):
                    if not self._write(rows[start : start + BATCH]):
                        return False  # keep the file; try again later
                path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        return True

    def _touch_tokens(self) -> None:
        with self._lock:
            touches = dict(self._touches)
        try:
            self._touch_rows(touches)
        except Exception:
            logger.warning("could not record when %d tokens were last used", len(touches))
        finally:
            # Only now (written, or given up on): flush() waits for these to be done.
            with self._lock:
                for token_id, used_at in touches.items():
                    if self._touches.get(token_id) == used_at:
                        del self._touches[token_id]
        with self._progress:
            self._progress.notify_all()

    def _run(self) -> None:
        backoff = INTERVAL
        while True:
            if time.monotonic() - self._adopted_at >= ADOPT_EVERY and self._adopt_orphans():
                self._adopted_at = time.monotonic()
            written = self._replay_own()
            if written is None:  # the database failed: wait, then retry the same rows
                self._wake.wait(backoff)
                self._wake.clear()
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = INTERVAL
            with self._lock:
                touched = bool(self._touches)
            if touched:
                self._touch_tokens()
            if written >= BATCH:
                continue  # a backlog: go on at once
            if self._stopping.is_set() and self.pending_bytes == 0:
                return
            self._wake.wait(INTERVAL)
            self._wake.clear()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row (and token use) this process recorded is in the database."""
        self._ensure_thread()
        deadline = time.monotonic() + timeout
        with self._progress:
            while self.pending_bytes > 0 or self._touches:
                self._wake.set()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._progress.wait(min(remaining, 0.1))
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """At a graceful shutdown: write what is spooled, then remove our consumed segments.
        What cannot be written in time stays in the spool for the next process."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        with self._lock:
            if self.pending_bytes == 0:
                while self._segments:
                    segment = self._segments.popleft()
                    segment.path.unlink(missing_ok=True)
                    os.close(segment.fd)
