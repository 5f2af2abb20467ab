"""Talking to a gateway process: request bodies, 2025 sessions, and ``check_reply``, which
asserts what every gateway response promises (never an HTTP 500, never HTML: a JSON-RPC
message as JSON or SSE, or an empty 202/204) and returns the JSON-RPC reply it carries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx2

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
PROTOCOL = "2025-11-25"
TIMEOUT = httpx2.Timeout(20.0, connect=5.0)


def new_uid() -> str:
    """A prefix that makes this test's JSON-RPC ids unique in the audit trail."""
    return "f" + uuid.uuid4().hex[:11]


def rpc_bytes(method: str, id: Any = None, **params) -> bytes:
    """The JSON-RPC request as bytes. ``json.dumps`` writes ASCII only, so a NUL or a lone
    surrogate in an id or a name travels as a ``\\u0000`` / ``\\ud800`` escape, as a
    hostile client would send it."""
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if id is not None:
        body["id"] = id
    if params:
        body["params"] = params
    return json.dumps(body).encode("ascii")


def call_bytes(id: Any, tool: str = "echo", arguments: dict | None = None) -> bytes:
    return rpc_bytes("tools/call", id, name=tool, arguments={"text": "hello"} if arguments is None else arguments)


def gw_url(base: str, slug: str = "acme") -> str:
    return f"{base}/api/gw/{slug}"


# --- what every response promises ---------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    content: bytes
    message: dict[str, Any] | None  # the JSON-RPC response (for SSE: the stream's last one)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    sse: bool = False

    @property
    def error(self) -> dict[str, Any] | None:
        return (self.message or {}).get("error")

    @property
    def result(self) -> dict[str, Any] | None:
        return (self.message or {}).get("result")

    def describe(self) -> str:
        return describe(self.status, self.headers, self.content)


def describe(status: int, headers: dict[str, str], content: bytes, limit: int = 400) -> str:
    ctype = headers.get("content-type", "")
    shown = content[:limit].decode("utf-8", "replace")
    more = f"… ({len(content)} bytes)" if len(content) > limit else ""
    return f"HTTP {status} content-type={ctype!r} body={shown!r}{more}"


def _check_message(message: Any, what: str) -> None:
    assert isinstance(message, dict) and message.get("jsonrpc") == "2.0", f"not a JSON-RPC message: {what}"
    if "method" in message:
        return  # a notification (SSE) or a server request
    assert "id" in message, f"a JSON-RPC response without an id: {what}"
    assert ("result" in message) != ("error" in message), f"needs exactly one of result/error: {what}"
    if "error" in message:
        error = message["error"]
        assert isinstance(error, dict), f"error must be an object: {what}"
        code = error.get("code")
        assert isinstance(code, int) and not isinstance(code, bool), f"error.code must be an integer: {what}"
        assert -(2**31) <= code < 2**31, f"error.code outside 32-bit range: {what}"
        assert isinstance(error.get("message"), str), f"error.message must be a string: {what}"
    else:
        assert isinstance(message["result"], dict), f"result must be an object: {what}"


def parse_sse(text: str) -> list[dict[str, Any]]:
    messages = []
    for event in text.replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(line[5:].lstrip(" ") for line in event.split("\n") if line.startswith("data:"))
        if data.strip():
            messages.append(json.loads(data))
    return messages


def check_reply(status: int, headers: dict[str, str], content: bytes, *, where: str = "") -> Reply:
    """Assert the gateway's promises about one response; return what it carries."""
    headers = {k.lower(): v for k, v in headers.items()}
    what = f"{where}: {describe(status, headers, content)}" if where else describe(status, headers, content)
    assert status != 500, f"HTTP 500 from the gateway — {what}"
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    assert "html" not in ctype and content.lstrip()[:1] != b"<", f"an HTML body from the gateway — {what}"
    if status in (202, 204) and not content:
        return Reply(status, headers, content, None)
    if ctype == "text/event-stream":
        try:
            messages = parse_sse(content.decode("utf-8"))
        except ValueError as exc:
            raise AssertionError(f"an SSE stream with a data line that is not JSON ({exc}) — {what}") from None
        for message in messages:
            _check_message(message, what)
        replies = [m for m in messages if "method" not in m]
        assert replies, f"an SSE stream that ends without a JSON-RPC reply — {what}"
        assert replies[-1] is messages[-1], f"messages after the reply in an SSE stream — {what}"
        return Reply(status, headers, content, replies[-1], [m for m in messages if "method" in m], sse=True)
    assert ctype == "application/json", f"neither JSON nor SSE — {what}"
    try:
        message = json.loads(content)
    except ValueError:
        raise AssertionError(f"a JSON content type with a body that is not JSON — {what}") from None
    _check_message(message, what)
    return Reply(status, headers, content, message)


def check_httpx(response: httpx2.Response, *, where: str = "") -> Reply:
    return check_reply(response.status_code, dict(response.headers), response.content, where=where)


def assert_retry_after(reply: Reply, *, where: str = "") -> None:
    value = reply.headers.get("retry-after", "")
    assert value.strip().isdigit(), f"{where} HTTP {reply.status} needs a Retry-After (seconds): {reply.describe()}"


# --- sessions and calls -------------------------------------------------------------------


def auth(token: str) -> dict[str, str]:
    return {**ACCEPT, "Authorization": f"Bearer {token}"}


def _initialize_body() -> bytes:
    return rpc_bytes(
        "initialize", "init", protocolVersion=PROTOCOL, capabilities={}, clientInfo={"name": "faults", "version": "1"}
    )


def _session_headers(token: str, response: httpx2.Response, base: str) -> dict[str, str]:
    reply = check_httpx(response, where=f"initialize on {base}")
    assert reply.status == 200 and reply.result, f"initialize failed on {base}: {reply.describe()}"
    session = response.headers.get("mcp-session-id")
    assert session, f"initialize on {base} returned no Mcp-Session-Id"
    return {**auth(token), "Mcp-Session-Id": session, "MCP-Protocol-Version": PROTOCOL}


def open_session(base: str, token: str, slug: str = "acme") -> dict[str, str]:
    """Initialize a 2025 session; returns the headers for its requests (any process serves
    it: session ids are signed)."""
    with httpx2.Client(timeout=TIMEOUT) as client:
        response = client.post(gw_url(base, slug), content=_initialize_body(), headers=auth(token))
    return _session_headers(token, response, base)


def post(
    client: httpx2.Client, base: str, body: bytes, headers: dict[str, str], *, slug: str = "acme", where: str = ""
) -> Reply:
    response = client.post(gw_url(base, slug), content=body, headers=headers)
    return check_httpx(response, where=where or f"POST {gw_url(base, slug)}")


async def apost(
    client: httpx2.AsyncClient,
    base: str,
    body: bytes,
    headers: dict[str, str],
    *,
    slug: str = "acme",
    where: str = "",
) -> Reply:
    response = await client.post(gw_url(base, slug), content=body, headers=headers)
    return check_httpx(response, where=where or f"POST {gw_url(base, slug)}")


def async_client(connections: int = 16, timeout: httpx2.Timeout = TIMEOUT) -> httpx2.AsyncClient:
    limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx2.AsyncClient(timeout=timeout, limits=limits)


@dataclass
class Outcome:
    replies: dict[Any, Reply] = field(default_factory=dict)
    failures: dict[Any, str] = field(default_factory=dict)  # id -> transport error (no complete response)


async def run_calls(
    base: str,
    headers: dict[str, str],
    ids: Iterable[Any],
    *,
    concurrency: int = 4,
    slug: str = "acme",
    tool: str = "echo",
    arguments: dict | None = None,
    timeout: httpx2.Timeout = TIMEOUT,
) -> Outcome:
    """Call ``tool`` once per id, ``concurrency`` calls at a time over keep-alive connections.
    Promise violations (500, HTML, not JSON-RPC) raise at once."""
    pending = deque(ids)
    outcome = Outcome()

    async def worker(client: httpx2.AsyncClient) -> None:
        while pending:
            call_id = pending.popleft()
            try:
                reply = await apost(client, base, call_bytes(call_id, tool, arguments), headers, slug=slug)
            except httpx2.HTTPError as exc:
                # The cause says what the transport saw (a reset, an early close, a timeout).
                outcome.failures[call_id] = f"{type(exc).__name__}: {exc} ({exc.__cause__!r})"
                continue
            outcome.replies[call_id] = reply

    async with async_client(concurrency, timeout) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return outcome


# --- raw HTTP: bodies too big for a normal client --------------------------------------------


@dataclass
class Upload:
    status: int
    headers: dict[str, str]
    content: bytes
    sent: int  # body bytes the server took before it answered (or the whole body)


def _read_response(sock: socket.socket, deadline: float) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"the gateway closed the connection without an HTTP response (got {data[:200]!r})")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    length = headers.get("content-length")
    while True:
        if length is not None and len(body) >= int(length):
            body = body[: int(length)]
            break
        if headers.get("transfer-encoding", "").lower() == "chunked" and body.endswith(b"0\r\n\r\n"):
            break
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        body += chunk
    if headers.get("transfer-encoding", "").lower() == "chunked":
        decoded, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2 :]
        body = decoded
    return status, headers, body


def upload(
    port: int, path: str, headers: dict[str, str], *, total: int, chunked: bool = False, timeout: float = 60.0
) -> Upload:
    """POST a ``total``-byte body 1 MB at a time (``Content-Length``, or chunked without
    one), stopping as soon as the server answers; return its response."""
    deadline = time.monotonic() + timeout
    block = b" " * (1 << 20)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        sent, finished = 0, False
        try:
            while sent < total:
                if time.monotonic() > deadline:
                    raise AssertionError(f"sending {total} bytes took over {timeout}s ({sent} sent, no answer)")
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break  # the server answered before the end of the body
                piece = block[: min(len(block), total - sent)]
                sock.settimeout(max(0.1, deadline - time.monotonic()))
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece)
                sent += len(piece)
            else:
                finished = True
            if finished and chunked:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading: its answer should be waiting
        except TimeoutError:
            raise AssertionError(f"the gateway stopped reading after {sent} bytes without answering") from None
        status, response_headers, content = _read_response(sock, deadline)
    return Upload(status, response_headers, content, sent)


class RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: one connection, one request
    at a time, microseconds of CPU per request (httpx costs milliseconds), for floods."""

    def __init__(self, port: int, *, timeout: float = 20.0) -> None:
        self.port = port
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        self._reader = self._writer = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        return await asyncio.wait_for(self._post(path, body, headers), self.timeout)

    async def _post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        reader = self._reader
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        response_headers = {}
        for line in lines[1:]:
            if line:
                key, _, value = line.partition(":")
                response_headers[key.strip().lower()] = value.strip()
        if "content-length" in response_headers:
            content = await reader.readexactly(int(response_headers["content-length"]))
        elif response_headers.get("transfer-encoding", "").lower() == "chunked":
            content = b""
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16):
                content += (await reader.readexactly(size + 2))[:-2]
            await reader.readuntil(b"\r\n")  # the (empty) trailer section
        else:
            content = await reader.read()
            await self.close()
        if response_headers.get("connection", "").lower() == "close":
            await self.close()
        return check_reply(status, response_headers, content, where=f"POST {path}")
