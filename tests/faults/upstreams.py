"""Upstream servers for the fault tests, all on 127.0.0.1 in threads of the test process.

* ``serve_mcp``: a real MCP SDK server (tests/gateway/upstream.py's ``build_server``, or
  ``build_slow_server`` with a ``sleep`` tool) served by uvicorn, optionally recording
  every JSON-RPC request it receives (to prove the gateway never forwarded something).
* ``GarbageUpstream``: a raw asyncio HTTP/1.1 server that speaks just enough MCP (2025
  ``initialize``, ``tools/list``) to be added and approved, then answers ``tools/call``
  with garbage chosen by the tool's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from typing import Any

import uvicorn
from mcp.server import MCPServer

from tests.faults.procs import free_port
from tests.gateway.upstream import build_server


def build_slow_server(name: str = "slow") -> MCPServer:
    """The fixture server's tools plus ``sleep(seconds)``."""
    server = build_server(name)

    @server.tool(description="Sleep for the given number of seconds, then answer.")
    async def sleep(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return f"slept {seconds}"

    return server


class _RecordRequests:
    """ASGI wrapper: remember (method, params.name) of every JSON-RPC POST, then pass it on."""

    def __init__(self, app) -> None:
        self.app = app
        self.seen: list[tuple[str | None, Any]] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        if isinstance(request, dict):
            params = request.get("params") if isinstance(request.get("params"), dict) else {}
            self.seen.append((request.get("method"), params.get("name")))
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


class ServedApp:
    """An ASGI app served by uvicorn in a daemon thread on a free 127.0.0.1 port."""

    def __init__(self, app, *, path: str = "/mcp") -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{path}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", timeout_graceful_shutdown=2
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"upstream-{self.port}", daemon=True)

    @property
    def seen(self) -> list[tuple[str | None, Any]]:
        return getattr(self.app, "seen", [])

    def start(self) -> ServedApp:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"upstream on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True  # graceful: in-flight calls get 2 s (timeout_graceful_shutdown)
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=10)


@contextlib.contextmanager
def serve_mcp(server: MCPServer | None = None, *, record: bool = False, json_response: bool = True):
    app = (server or build_server("faults")).streamable_http_app(json_response=json_response)
    served = ServedApp(_RecordRequests(app) if record else app).start()
    try:
        yield served
    finally:
        served.stop()


# --- the garbage upstream --------------------------------------------------------------------

HUGE_BYTES = 20 * 1024 * 1024
GARBAGE_CASES: dict[str, str] = {
    "code_string": 'error.code is the string "abc"',
    "code_null": "error.code is null",
    "error_text": 'error is the string "text"',
    "result_text": 'result is the string "not an object"',
    "code_huge": "error.code is 2**40",
    "code_float": "error.code is 1.5e300",
    "sse_not_json": "an SSE response whose data line is not JSON",
    "sse_no_reply": "an SSE stream that ends without a reply",
    "sse_cut": "an SSE stream cut off mid-way (connection closed inside a chunked body)",
    "json_not_json": "Content-Type application/json with a body that is not JSON",
    "empty_body": "Content-Type application/json with an empty body",
    "html_502": "HTTP 502 with an HTML body",
    "huge": "a valid 20 MB JSON result",
}

_REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 405: "Method Not Allowed", 502: "Bad Gateway"}


class GarbageUpstream:
    """A raw HTTP/1.1 server (keep-alive, Content-Length or chunked requests) that answers
    ``server/discover`` with -32601 (so the gateway falls back to ``initialize``), answers
    ``initialize`` properly with an ``Mcp-Session-Id``, 202 to notifications, lists one
    tool per garbage case and answers ``tools/call`` with that garbage."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.calls: list[str] = []  # the tool name of every tools/call received
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"garbage-{self.port}", daemon=True)
        self._huge: bytes | None = None

    # --- lifecycle -----------------------------------------------------------------

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._server = loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port, limit=1 << 20)
        )
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.sleep(0.05))
            loop.close()

    def start(self) -> GarbageUpstream:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("garbage upstream did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._loop.is_closed():
            return

        async def shutdown():
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            asyncio.get_running_loop().stop()

        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        self._thread.join(timeout=10)

    # --- HTTP ------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                verb = lines[0].split(" ", 1)[0]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        key, value = line.split(":", 1)
                        headers[key.strip().lower()] = value.strip()
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    body = await self._read_chunked(reader)
                else:
                    body = await reader.readexactly(int(headers.get("content-length") or 0))
                keep_alive = await self._respond(verb, body, writer)
                if not keep_alive or headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return body
            body += await reader.readexactly(size)
            await reader.readexactly(2)

    @staticmethod
    async def _send(
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes | list[bytes] = b"",
        content_type: str | None = "application/json",
        headers: dict[str, str] | None = None,
    ) -> bool:
        parts = body if isinstance(body, list) else [body]
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        if content_type:
            head.append(f"Content-Type: {content_type}")
        head.append(f"Content-Length: {sum(len(p) for p in parts)}")
        head.extend(f"{k}: {v}" for k, v in (headers or {}).items())
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        try:
            for part in parts:
                writer.write(part)
                await writer.drain()
        except ConnectionError:
            return False
        return True

    async def _respond(self, verb: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
        if verb != "POST":
            return await self._send(writer, 405, b"", None, {"Allow": "POST"})
        try:
            message = json.loads(body)
        except ValueError:
            return await self._send(writer, 400, b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}')
        if not isinstance(message, dict) or "id" not in message:
            return await self._send(writer, 202, b"", None)  # notifications

        message_id = message["id"]

        def reply(**fields) -> bytes:
            return json.dumps({"jsonrpc": "2.0", "id": message_id, **fields}).encode()

        method = message.get("method")
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        if method == "server/discover":
            return await self._send(writer, 200, reply(error={"code": -32601, "message": "Method not found"}))
        if method == "initialize":
            result = {
                "protocolVersion": "2025-11-25",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "garbage", "version": "0.0.1"},
            }
            return await self._send(writer, 200, reply(result=result), headers={"Mcp-Session-Id": "garbage-session"})
        if method == "ping":
            return await self._send(writer, 200, reply(result={}))
        if method == "tools/list":
            tools = [
                {
                    "name": name,
                    "description": f"Answers garbage: {what}.",
                    "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
                }
                for name, what in GARBAGE_CASES.items()
            ]
            return await self._send(writer, 200, reply(result={"tools": tools}))
        if method != "tools/call":
            return await self._send(writer, 200, reply(error={"code": -32601, "message": f"no {method}"}))

        name = params.get("name")
        self.calls.append(str(name))
        sse = "text/event-stream"
        if name == "code_string":
            return await self._send(writer, 200, reply(error={"code": "abc", "message": "x"}))
        if name == "code_null":
            return await self._send(writer, 200, reply(error={"code": None, "message": "x"}))
        if name == "error_text":
            return await self._send(writer, 200, reply(error="text"))
        if name == "result_text":
            return await self._send(writer, 200, reply(result="not an object"))
        if name == "code_huge":
            return await self._send(writer, 200, reply(error={"code": 2**40, "message": "x"}))
        if name == "code_float":
            return await self._send(writer, 200, reply(error={"code": 1.5e300, "message": "x"}))
        if name == "sse_not_json":
            return await self._send(writer, 200, b"event: message\ndata: this is not json\n\n", sse)
        if name == "sse_no_reply":
            log = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "hi"}}
            frames = b"id: 1\ndata: \n\n" + b"event: message\ndata: " + json.dumps(log).encode() + b"\n\n"
            return await self._send(writer, 200, frames, sse)
        if name == "sse_cut":
            head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            frame = b"id: 1\ndata: \n\n"
            writer.write(head.encode() + f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            await asyncio.sleep(0.05)
            writer.transport.abort()  # no terminating chunk: the stream is cut
            return False
        if name == "json_not_json":
            return await self._send(writer, 200, b"{this is not json")
        if name == "empty_body":
            return await self._send(writer, 200, b"")
        if name == "html_502":
            page = b"<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
            return await self._send(writer, 502, page, "text/html")
        if name == "huge":
            if self._huge is None:
                self._huge = b"a" * HUGE_BYTES
            prefix = b'{"jsonrpc":"2.0","id":' + json.dumps(message_id).encode() + b',"result":{"content":[{"type":'
            prefix += b'"text","text":"'
            return await self._send(writer, 200, [prefix, self._huge, b'"}],"isError":false}}'])
        return await self._send(writer, 200, reply(error={"code": -32602, "message": f"Unknown tool: {name}"}))


@contextlib.contextmanager
def garbage_upstream():
    server = GarbageUpstream().start()
    try:
        yield server
    finally:
        server.stop()
