"""The stdio child and the multiplexer over its one pipe.

Many HTTP callers share one stdio MCP server. Every request gets a fresh integer id on the
pipe (and its progress token a fresh one too); the reader task routes each response,
progress notification and server request back to the caller that owns it, and what
belongs to no call (list changes, resource updates, log messages) to every open GET
stream. Writes are whole lines appended to the pipe's buffer, so concurrent callers never
interleave and need no lock.

Requests the child sends (sampling, elicitation, roots) carry nothing on stdio that says
which call they belong to. One goes to a client when that is unambiguous: the calls in
flight all come from one session that declared the capability (it travels on the newest
call's stream), or no call is in flight and exactly one such session has a GET stream
open. Otherwise the child gets a JSON-RPC error at once, never a hang. ``ping`` is
answered here.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from relay.protocol import CLIENT_CAPABILITY_OF, INTERNAL_ERROR, METHOD_NOT_FOUND, RELAYED_CLIENT_CAPABILITIES

logger = logging.getLogger(__name__)

CLIENT_INFO = {"name": "mcpnest-bridge", "version": "1.0"}
HANDSHAKE_VERSION = "2025-11-25"
STDERR_LINE_MAX = 4000  # characters of one stderr line passed to the container log
STDERR_KEEP = 20  # last stderr lines kept for the exit message
STREAM_BACKLOG = 1000  # messages a GET stream holds for a client that reads slowly
STOP_GRACE = 2.0  # seconds the child gets to exit after its stdin closes


class ChildGone(Exception):
    """The child exited (or closed its stdout): nothing more will be answered."""


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", **message}, separators=(",", ":")).encode() + b"\n"


@dataclass(eq=False)
class Session:
    """A 2025-era client session of the bridge (``Mcp-Session-Id``), held in memory."""

    id: str
    version: str
    capabilities: frozenset[str]  # which child requests it takes: sampling, elicitation, roots
    streams: set[asyncio.Queue] = field(default_factory=set)  # its open GET streams
    relayed: set[str] = field(default_factory=set)  # ids of child requests waiting for its answer


@dataclass(eq=False)
class Call:
    """One request in flight on the pipe, for one caller."""

    session: Session | None  # None: the seed contract (/tools/*) or the bridge itself
    client_id: Any
    child_id: int
    client_token: Any = None  # the caller's progress token, if it sent one
    child_token: int | None = None
    reply: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    # What reaches the caller before the reply: progress, requests for it (SSE events).
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    started: float = field(default_factory=time.monotonic)


class Child:
    """The stdio MCP server: started, handshaken, multiplexed, drained, stopped."""

    def __init__(self, command: Sequence[str], *, max_message_bytes: int) -> None:
        self.command = list(command)
        self.max_message_bytes = max_message_bytes
        self.process: asyncio.subprocess.Process | None = None
        self.initialize_result: dict[str, Any] | None = None
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_KEEP)
        self.sessions: dict[str, Session] = {}
        self.gone = asyncio.Event()  # stdout closed: the child is dead or dying
        self._ids = itertools.count(1)
        self._calls: dict[int, Call] = {}
        self._progress: dict[int, Call] = {}
        self._relayed: dict[str, tuple[Any, Session]] = {}  # our id -> (the child's id, the session asked)
        self._tasks: list[asyncio.Task] = []

    @property
    def ready(self) -> bool:
        return self.initialize_result is not None and not self.gone.is_set()

    # --- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=self.max_message_bytes,
        )
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._drain_stderr())]

    async def handshake(self) -> dict[str, Any]:
        """``initialize`` (declaring every capability a client may bring) and
        ``notifications/initialized``; the result is what every client session is told."""
        params = {"protocolVersion": HANDSHAKE_VERSION, "capabilities": RELAYED_CLIENT_CAPABILITIES}
        reply = await self.request("initialize", {**params, "clientInfo": CLIENT_INFO})
        result = reply.get("result")
        if not isinstance(result, dict):
            raise ChildGone(f"the MCP server refused initialize: {json.dumps(reply.get('error'))[:300]}")
        await self.send({"method": "notifications/initialized"})
        self.initialize_result = result
        return result

    async def wait(self) -> int:
        """Until the child is gone; its exit code."""
        await self.gone.wait()
        assert self.process is not None
        try:
            code = await asyncio.wait_for(self.process.wait(), STOP_GRACE)
        except TimeoutError:
            self.process.kill()
            code = await self.process.wait()
        # Its last words: what is left in the stderr pipe.
        await asyncio.wait(self._tasks[1:], timeout=STOP_GRACE)
        return code

    async def stop(self) -> None:
        if self.process is None:
            return
        if self.process.returncode is None:
            with contextlib.suppress(OSError):
                assert self.process.stdin is not None
                self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), STOP_GRACE)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.terminate()
                try:
                    await asyncio.wait_for(self.process.wait(), STOP_GRACE)
                except TimeoutError:
                    self.process.kill()
                    await self.process.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- writing ----------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        if self.gone.is_set() or self.process is None or self.process.stdin is None:
            raise ChildGone("the MCP server has exited")
        self.process.stdin.write(encode(message))
        try:
            await self.process.stdin.drain()
        except (ConnectionError, BrokenPipeError):
            raise ChildGone("the MCP server closed its stdin") from None

    def open_call(self, session: Session | None, client_id: Any, params: Any) -> tuple[Call, Any]:
        """A new call and the params to send the child (its progress token replaced by ours)."""
        call = Call(session=session, client_id=client_id, child_id=next(self._ids))
        token = _object(_object(params).get("_meta")).get("progressToken")
        if isinstance(token, str | int) and not isinstance(token, bool):
            call.client_token, call.child_token = token, next(self._ids)
            params = {**params, "_meta": {**params["_meta"], "progressToken": call.child_token}}
            self._progress[call.child_token] = call
        self._calls[call.child_id] = call
        return call, params

    def close_call(self, call: Call) -> None:
        self._calls.pop(call.child_id, None)
        if call.child_token is not None:
            self._progress.pop(call.child_token, None)

    async def begin(
        self, method: str, params: Any = None, *, session: Session | None = None, client_id: Any = None
    ) -> Call:
        """Send a request for a caller; the call's ``reply`` and ``events`` carry what comes
        back. The caller closes it (``close_call``, or ``cancel`` if it gives up)."""
        call, params = self.open_call(session, client_id, params)
        message: dict[str, Any] = {"id": call.child_id, "method": method}
        if params is not None:
            message["params"] = params
        try:
            await self.send(message)
        except ChildGone:
            self.close_call(call)
            raise
        return call

    async def request(self, method: str, params: Any = None) -> dict[str, Any]:
        """Send a request of the bridge's own and wait for its reply (the whole message)."""
        call = await self.begin(method, params)
        try:
            return await call.reply
        finally:
            self.close_call(call)

    async def cancel(self, call: Call, reason: str) -> None:
        """The caller gave up: tell the child, forget the call."""
        self.close_call(call)
        if not call.reply.done():
            with contextlib.suppress(ChildGone):
                await self.send(
                    {"method": "notifications/cancelled", "params": {"requestId": call.child_id, "reason": reason}}
                )

    # --- what clients send about the child's requests -------------------------------------

    async def answer_relayed(self, session: Session, reply: dict[str, Any]) -> bool:
        """A client's answer to a request the child sent it; False if not ours for this session."""
        relayed_id = reply.get("id")
        found = self._relayed.get(relayed_id) if isinstance(relayed_id, str) else None
        if found is None or found[1] is not session:
            return False
        del self._relayed[relayed_id]
        session.relayed.discard(relayed_id)
        answer = {"id": found[0]}
        if isinstance(reply.get("error"), dict):
            answer["error"] = reply["error"]
        else:
            answer["result"] = _object(reply.get("result"))
        await self.send(answer)
        return True

    async def client_notification(self, session: Session, notification: dict[str, Any]) -> None:
        """A client's notification, with ids and tokens translated to the pipe's."""
        method, params = notification.get("method"), _object(notification.get("params"))
        if method == "notifications/initialized":
            return  # the bridge sent the child its own
        if method == "notifications/cancelled":
            request_id = params.get("requestId")
            call = next((c for c in self._calls.values() if c.session is session and c.client_id == request_id), None)
            if call is None:
                return
            params = {**params, "requestId": call.child_id}
        await self.send({"method": method, "params": params} if params else {"method": method})

    async def end_session(self, session: Session) -> None:
        """DELETE, or the bridge forgets it: the child's requests waiting on it get an error."""
        self.sessions.pop(session.id, None)
        for queue in session.streams:
            queue.put_nowait(None)
        for relayed_id in list(session.relayed):
            child_id, _ = self._relayed.pop(relayed_id, (None, None))
            with contextlib.suppress(ChildGone):
                await self._refuse(child_id, "the client session that was asked has ended")
        session.relayed.clear()

    # --- reading ----------------------------------------------------------------------------

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        stdout = self.process.stdout
        try:
            while True:
                try:
                    line = await stdout.readline()
                except ValueError:  # one message over max_message_bytes: its caller is told at exit
                    logger.error("the MCP server sent a message over %d bytes; dropped", self.max_message_bytes)
                    continue
                if not line:
                    break
                try:
                    message = json.loads(line)
                except ValueError:
                    self._log_stderr("[stdout, not JSON-RPC] " + line.decode(errors="replace"))
                    continue
                if isinstance(message, dict):
                    await self._dispatch(message)
        finally:
            self.gone.set()
            for call in list(self._calls.values()):
                if not call.reply.done():
                    call.reply.set_exception(ChildGone("the MCP server exited before answering"))
            for session in list(self.sessions.values()):
                for queue in session.streams:
                    queue.put_nowait(None)

    async def _dispatch(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if not isinstance(method, str):  # a response
            call = self._calls.get(message.get("id"))  # type: ignore[arg-type]
            if call is not None and not call.reply.done():
                call.reply.set_result(message)
            return
        if "id" in message:
            await self._child_request(message)
            return
        params = _object(message.get("params"))
        if method == "notifications/progress":
            call = self._progress.get(params.get("progressToken"))  # type: ignore[arg-type]
            if call is not None:
                call.events.put_nowait({**message, "params": {**params, "progressToken": call.client_token}})
            return
        if method == "notifications/cancelled":  # the child gave up a request it sent a client
            relayed_id = next((k for k, v in self._relayed.items() if v[0] == params.get("requestId")), None)
            if relayed_id is not None:
                _, session = self._relayed.pop(relayed_id)
                session.relayed.discard(relayed_id)
                self._broadcast({**message, "params": {**params, "requestId": relayed_id}}, [session])
            return
        self._broadcast(message, list(self.sessions.values()))

    def _broadcast(self, message: dict[str, Any], sessions: list[Session]) -> None:
        for session in sessions:
            for queue in session.streams:
                if queue.qsize() < STREAM_BACKLOG:  # a client that does not read loses messages, not our memory
                    queue.put_nowait(message)

    async def _child_request(self, request: dict[str, Any]) -> None:
        method, child_id = request.get("method"), request.get("id")
        if method == "ping":
            await self.send({"id": child_id, "result": {}})
            return
        needed = CLIENT_CAPABILITY_OF.get(method)  # type: ignore[arg-type]
        target, why = self._target_for(needed)
        if target is None:
            await self._refuse(child_id, f"{method} cannot reach a client of the MCPNest bridge: {why}")
            return
        session, queue = target
        relayed_id = "bridge-" + secrets.token_urlsafe(12)
        self._relayed[relayed_id] = (child_id, session)
        session.relayed.add(relayed_id)
        queue.put_nowait({**request, "id": relayed_id})

    def _target_for(self, needed: str | None) -> tuple[tuple[Session, asyncio.Queue] | None, str]:
        """(the session and the stream a child request goes to, or None and why not)."""
        if needed is None:
            return None, "the bridge relays only sampling, elicitation and roots requests"
        calls = sorted(self._calls.values(), key=lambda c: c.started)
        if calls:
            sessions = {call.session for call in calls}
            session = calls[-1].session
            if len(sessions) > 1:
                return None, "calls from more than one client are in flight, so it is unclear whom to ask"
            if session is None:
                return None, "the call in flight came through the bridge's plain HTTP contract"
            if needed not in session.capabilities:
                return None, f"the calling client did not declare the {needed} capability"
            return (session, calls[-1].events), ""
        listening = [s for s in self.sessions.values() if s.streams and needed in s.capabilities]
        if len(listening) != 1:
            return None, f"no call is in flight and {len(listening)} client sessions with a stream could take it"
        return (listening[0], next(iter(listening[0].streams))), ""

    async def _refuse(self, child_id: Any, message: str) -> None:
        if child_id is not None:
            await self.send({"id": child_id, "error": {"code": METHOD_NOT_FOUND, "message": message}})

    # --- stderr -----------------------------------------------------------------------------

    async def _drain_stderr(self) -> None:
        """Pass the child's stderr to ours line by line (each line bounded), never letting
        the pipe fill up and block the child; keep the last lines for the exit message."""
        assert self.process is not None and self.process.stderr is not None
        stderr, pending = self.process.stderr, b""
        while chunk := await stderr.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                self._log_stderr(line.decode(errors="replace"))
            if len(pending) > STDERR_LINE_MAX * 4:
                self._log_stderr(pending.decode(errors="replace"))
                pending = b""
        if pending:
            self._log_stderr(pending.decode(errors="replace"))

    def _log_stderr(self, line: str) -> None:
        line = line.rstrip("\r\n")
        if len(line) > STDERR_LINE_MAX:
            line = line[:STDERR_LINE_MAX] + " [cut]"
        self.stderr_tail.append(line)
        print(f"[mcp] {line}", file=sys.stderr, flush=True)


def internal_error(message: str) -> dict[str, Any]:
    return {"code": INTERNAL_ERROR, "message": message}
