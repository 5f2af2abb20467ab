"""The bridge's HTTP side: a plain ASGI app.

* ``/mcp``: Streamable HTTP, the 2025 revisions. ``initialize`` is answered from the
  child's own initialize result (the bridge did the one handshake) with a session id of
  ours; a request is answered as JSON, or as an event stream when the child sends progress
  or a request for that call before its answer; notifications and responses get 202;
  GET opens the session's stream; DELETE ends the session. ``server/discover`` gets
  404/-32601, so a dual-era client (the gateway, the SDK's ``auto`` mode) falls back to
  ``initialize``. A client that goes away cancels its call in the child.
* ``POST /tools/list`` and ``POST /tools/call``: the plain contract (``{"tools": [...]}``;
  ``{"name", "arguments"}`` -> the tool's result).
* ``GET /healthz``: 200 once the handshake is done and while the child lives, else 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from bridge.mux import Child, ChildGone, Session, internal_error
from relay.protocol import CLIENT_CAPABILITY_OF, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MAX_SESSIONS = 10_000  # the oldest session is ended beyond this
KEEPALIVE = 15.0  # seconds between comments on an idle GET stream (proxies close silent ones)
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
NOT_READY = {"code": -32000, "message": "the MCP server is not ready"}


class Disconnected(Exception):
    pass


class Refused(Exception):
    """Answer the request with this status and JSON body, and do nothing else."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status, self.body = status, body


def _rpc_error(code: int, message: str, request_id: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


async def _respond(send: Send, status: int, body: Any = None, headers: list[tuple[bytes, bytes]] = ()) -> None:
    content = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    head = [(b"content-type", b"application/json")] if body is not None else []
    await send({"type": "http.response.start", "status": status, "headers": head + list(headers)})
    await send({"type": "http.response.body", "body": content})


def _event(message: dict[str, Any]) -> dict[str, Any]:
    data = json.dumps(message, separators=(",", ":"))
    return {"type": "http.response.body", "body": f"event: message\ndata: {data}\n\n".encode(), "more_body": True}


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _read_json(receive: Receive, limit: int) -> Any:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        body += message.get("body", b"")
        if len(body) > limit:
            raise Refused(413, _rpc_error(INVALID_REQUEST, f"the message is over {limit} bytes"))
        if not message.get("more_body"):
            break
    try:
        return json.loads(body)
    except ValueError:
        raise Refused(400, _rpc_error(PARSE_ERROR, "the body is not JSON")) from None


class BridgeApp:
    def __init__(self, child: Child, *, max_message_bytes: int) -> None:
        self.child = child
        self.limit = max_message_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        route = (scope["method"], scope["path"].rstrip("/") or "/")
        handler = {
            ("POST", "/mcp"): self._post,
            ("GET", "/mcp"): self._get,
            ("DELETE", "/mcp"): self._delete,
            ("GET", "/healthz"): self._healthz,
            ("POST", "/tools/list"): self._tools_list,
            ("POST", "/tools/call"): self._tools_call,
        }.get(route)
        if handler is None:
            known = route[1] in {"/mcp", "/healthz", "/tools/list", "/tools/call"}
            await _respond(send, 405 if known else 404, {"error": "method not allowed" if known else "not found"})
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not _origin_allowed(headers):
            await _respond(send, 403, _rpc_error(INVALID_REQUEST, "Origin not allowed"))
            return
        try:
            await handler(headers, receive, send)
        except Refused as refused:
            await _respond(send, refused.status, refused.body)
        except Disconnected:
            pass  # the client left while we read its body

    # --- health and the plain contract ----------------------------------------------------

    async def _healthz(self, headers: dict[str, str], receive: Receive, send: Send) -> None:
        child = self.child
        if child.ready:
            info = (child.initialize_result or {}).get("serverInfo")
            await _respond(send, 200, {"status": "ok", "server": info})
        else:
            await _respond(send, 503, {"status": "failed" if child.gone.is_set() else "starting"})

    async def _tools_list(self, headers: dict[str, str], receive: Receive, send: Send) -> None:
        # The body (if any) says nothing: the whole list is the answer.

        async def fetch() -> dict[str, Any]:
            tools: list[Any] = []
            cursor = None
            while True:
                reply = await self.child.request("tools/list", {"cursor": cursor} if cursor else {})
                result = reply.get("result")
                if not isinstance(result, dict):
                    return reply
                tools.extend(result.get("tools") or [])
                cursor = result.get("nextCursor")
                if not isinstance(cursor, str) or not cursor:
                    return {"result": {"tools": tools}}

        await self._plain(send, fetch)

    async def _tools_call(self, headers: dict[str, str], receive: Receive, send: Send) -> None:
        body = await _read_json(receive, self.limit)
        if not (
            isinstance(body, dict) and isinstance(body.get("name"), str) and isinstance(body.get("arguments", {}), dict)
        ):
            raise Refused(400, {"error": 'expected {"name": "<tool>", "arguments": {...}}'})
        params = {"name": body["name"], "arguments": body.get("arguments") or {}}
        await self._plain(send, lambda: self.child.request("tools/call", params))

    async def _plain(self, send: Send, ask: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        """The plain contract's answer: the result, 502 with the child's error, or 503."""
        if not self.child.ready:
            await _respond(send, 503, {"error": NOT_READY})
            return
        try:
            reply = await ask()
        except ChildGone as exc:
            await _respond(send, 503, {"error": internal_error(str(exc))})
            return
        if isinstance(reply.get("result"), dict):
            await _respond(send, 200, reply["result"])
        else:
            await _respond(send, 502, {"error": reply.get("error")})

    # --- Streamable HTTP ------------------------------------------------------------------

    def _session(self, headers: dict[str, str]) -> Session:
        """The request's session (``Refused`` if none is usable)."""
        if not self.child.ready:
            raise Refused(503, _rpc_error(NOT_READY["code"], NOT_READY["message"]))
        version = headers.get("mcp-protocol-version")
        if version and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            supported = ", ".join(HANDSHAKE_PROTOCOL_VERSIONS)
            raise Refused(400, _rpc_error(INVALID_REQUEST, f"unsupported MCP-Protocol-Version; use {supported}"))
        session_id = headers.get("mcp-session-id")
        if not session_id:
            raise Refused(400, _rpc_error(INVALID_REQUEST, "Missing Mcp-Session-Id: initialize first"))
        session = self.child.sessions.get(session_id)
        if session is None:
            raise Refused(404, _rpc_error(INVALID_REQUEST, "Unknown or ended session: initialize again"))
        return session

    async def _post(self, headers: dict[str, str], receive: Receive, send: Send) -> None:
        message = await _read_json(receive, self.limit)
        if not isinstance(message, dict):
            raise Refused(400, _rpc_error(INVALID_REQUEST, "expected one JSON-RPC message (batches are not supported)"))
        method = message.get("method")
        if method == "initialize":
            await self._initialize(message, send)
            return
        if method == "server/discover" and "mcp-session-id" not in headers:
            # The child speaks the 2025 revisions; a dual-era client falls back to initialize.
            error = _rpc_error(METHOD_NOT_FOUND, "server/discover is not supported: initialize", message.get("id"))
            await _respond(send, 404, error)
            return
        session = self._session(headers)
        try:
            if method is None:
                await self.child.answer_relayed(session, message)
            elif "id" not in message:
                await self.child.client_notification(session, message)
            elif method == "ping":
                await _respond(send, 200, {"jsonrpc": "2.0", "id": message["id"], "result": {}})
                return
            else:
                await self._call(session, message, receive, send)
                return
        except ChildGone:
            pass  # /healthz says so; the bridge is about to exit
        await _respond(send, 202)

    async def _initialize(self, message: dict[str, Any], send: Send) -> None:
        child = self.child
        if not child.ready:
            await _respond(send, 503, _rpc_error(NOT_READY["code"], NOT_READY["message"], message.get("id")))
            return
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        result = dict(child.initialize_result or {})
        requested, agreed = params.get("protocolVersion"), result.get("protocolVersion")
        if requested in HANDSHAKE_PROTOCOL_VERSIONS and (not isinstance(agreed, str) or requested <= agreed):
            result["protocolVersion"] = requested
        declared = params.get("capabilities") if isinstance(params.get("capabilities"), dict) else {}
        session = Session(
            id=secrets.token_urlsafe(24),
            version=str(result.get("protocolVersion")),
            capabilities=frozenset(name for name in CLIENT_CAPABILITY_OF.values() if name in declared),
        )
        while len(child.sessions) >= MAX_SESSIONS:
            await child.end_session(next(iter(child.sessions.values())))
        child.sessions[session.id] = session
        reply = {"jsonrpc": "2.0", "id": message.get("id"), "result": result}
        await _respond(send, 200, reply, [(b"mcp-session-id", session.id.encode())])

    async def _call(self, session: Session, message: dict[str, Any], receive: Receive, send: Send) -> None:
        """Relay one request; JSON if the reply comes first, else an event stream."""
        call = await self.child.begin(
            message["method"], message.get("params"), session=session, client_id=message["id"]
        )
        disconnect = asyncio.ensure_future(_disconnected(receive))
        streaming = False
        try:
            async with contextlib.aclosing(self._messages(call, disconnect)) as messages:
                async for out in messages:
                    final = "result" in out or "error" in out
                    if final and not streaming:
                        await _respond(send, 200, out)
                        return
                    if not streaming:
                        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
                        streaming = True
                    await send(_event(out))
            await send({"type": "http.response.body", "body": b""})
        except Disconnected:
            await self.child.cancel(call, "the client closed its request")
        finally:
            disconnect.cancel()
            self.child.close_call(call)

    async def _messages(self, call, disconnect: asyncio.Future) -> AsyncIterator[dict[str, Any]]:
        """What goes to the caller: events for its call, in order, then the reply."""
        while True:
            if not call.events.empty():
                yield call.events.get_nowait()
                continue
            if call.reply.done():
                yield self._reply(call)
                return
            getter = asyncio.ensure_future(call.events.get())
            done, _ = await asyncio.wait({call.reply, getter, disconnect}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield getter.result()
                continue
            getter.cancel()
            if disconnect in done:
                raise Disconnected

    @staticmethod
    def _reply(call) -> dict[str, Any]:
        try:
            reply = call.reply.result()
        except ChildGone as exc:
            return {"jsonrpc": "2.0", "id": call.client_id, "error": internal_error(str(exc))}
        answer = {"jsonrpc": "2.0", "id": call.client_id}
        if isinstance(reply.get("error"), dict):
            answer["error"] = reply["error"]
        else:
            answer["result"] = reply.get("result") if isinstance(reply.get("result"), dict) else {}
        return answer

    async def _get(self, headers: dict[str, str], receive: Receive, send: Send) -> None:
        """The session's stream: what the child sends unprompted, and requests for it."""
        session = self._session(headers)
        queue: asyncio.Queue = asyncio.Queue()
        session.streams.add(queue)
        disconnect = asyncio.ensure_future(_disconnected(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, disconnect}, timeout=KEEPALIVE, return_when="FIRST_COMPLETED")
                if getter not in done:
                    getter.cancel()
                    if disconnect in done:
                        return
                    await send({"type": "http.response.body", "body": b": keepalive\n\n", "more_body": True})
                    continue
                message = getter.result()
                if message is None:  # the session ended, or the child did
                    break
                await send(_event(message))
            await send({"type": "http.response.body", "body": b""})
        finally:
            disconnect.cancel()
            session.streams.discard(queue)

    async def _delete(self, headers: dict[str, str], receive: Receive, send: Send) -> None:
        session = self._session(headers)
        await self.child.end_session(session)
        await _respond(send, 200)


def _origin_allowed(headers: dict[str, str]) -> bool:
    """DNS rebinding: a browser's Origin must name this host (non-browser clients send none)."""
    origin = headers.get("origin")
    if not origin:
        return True
    host = urlsplit(origin).netloc.lower()
    return host == headers.get("host", "").lower() or urlsplit(origin).hostname in {"localhost", "127.0.0.1", "::1"}
