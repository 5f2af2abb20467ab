"""A lean HTTP/1.1 transport under the gateway's httpx2 client to upstream MCP servers.

Every tool call crosses this client once, so its cost is the gateway's cost. httpx2's
default transport (httpcore2 over anyio and h11) spends about 0.5 ms of CPU per request in
general-purpose machinery; this one about 0.1 ms: asyncio streams, one write per request,
a keep-alive pool per origin, bodies framed by Content-Length, chunked encoding or the
connection's end. Everything above it is still httpx2 (timeouts, headers, ``Response``,
``EventSource``, exceptions), and proxies configured in the environment still go through
httpx2's own transports. Out of scope, because MCP upstreams do not need them: HTTP/2,
``101 Switching Protocols``, request trailers.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx2

MAX_HEAD_BYTES = 64 * 1024  # status line and headers; also the longest chunk-size line
READ_SIZE = 64 * 1024
WRITE_BUFFER_HIGH = 256 * 1024  # wait for the socket only past this much unsent data


class _Connection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def reusable(self, now: float, expiry: float) -> bool:
        # An idle connection the server closed has seen EOF by now (the loop read the FIN).
        return not self.reader.at_eof() and not self.writer.is_closing() and now - self.idle_since < expiry

    def close(self) -> None:
        self.writer.close()


class UpstreamTransport(httpx2.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 (and HTTPS); one per event loop. Of httpx2's ``Limits``,
    ``max_connections`` bounds the requests in flight (beyond it callers wait, up to the pool
    timeout and at most ``pool_timeout`` seconds, whatever the request's own timeouts),
    ``max_keepalive_connections`` the idle connections kept per upstream."""

    def __init__(
        self, *, limits: httpx2.Limits, verify: ssl.SSLContext | bool = True, pool_timeout: float | None = None
    ) -> None:
        self._max_connections = limits.max_connections
        self._pool_timeout = pool_timeout
        self._max_idle = limits.max_keepalive_connections or 0
        self._expiry = limits.keepalive_expiry if limits.keepalive_expiry is not None else 5.0
        self._verify = verify
        self._ssl_context: ssl.SSLContext | None = None
        self._slots: asyncio.Semaphore | None = None
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx2.ConnectError(f"unsupported URL scheme {url.scheme!r}", request=request)
        origin = (url.scheme, url.raw_host.decode("ascii"), url.port or (443 if url.scheme == "https" else 80))
        body = b"".join([part async for part in request.stream])
        if request.headers.get("transfer-encoding", "").lower() == "chunked":
            body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), url.raw_path)]
        head.extend(b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw)
        head.append(b"\r\n")

        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_connections)
        if self._slots.locked():
            wait = timeouts.get("pool")
            if self._pool_timeout is not None and (wait is None or wait > self._pool_timeout):
                wait = self._pool_timeout
            try:
                async with asyncio.timeout(wait):
                    await self._slots.acquire()
            except TimeoutError:
                raise httpx2.PoolTimeout(
                    f"all {self._max_connections} upstream connections are in use", request=request
                ) from None
        else:
            await self._slots.acquire()

        connection = None
        try:
            connection = self._checkout(origin) or await self._connect(origin, timeouts.get("connect"), request)
            connection.writer.write(b"".join(head) + body)
            if connection.writer.transport.get_write_buffer_size() > WRITE_BUFFER_HIGH:
                try:
                    async with asyncio.timeout(timeouts.get("write")):
                        await connection.writer.drain()
                except TimeoutError:
                    raise httpx2.WriteTimeout("timed out sending the request", request=request) from None
                except OSError as exc:
                    raise httpx2.WriteError(str(exc) or type(exc).__name__, request=request) from None
            status, reason, version, headers = await _read_head(connection.reader, timeouts.get("read"), request)
            while 100 <= status < 200 and status != 101:  # interim responses (103 Early Hints…)
                status, reason, version, headers = await _read_head(connection.reader, timeouts.get("read"), request)
            stream = _Body(self, origin, connection, request, status, version, headers, timeouts.get("read"))
        except BaseException:
            if connection is not None:
                connection.close()
            self._slots.release()
            raise
        return httpx2.Response(
            status,
            headers=headers,
            stream=stream,
            extensions={"http_version": version, "reason_phrase": reason},
        )

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()

    # --- the pool ------------------------------------------------------------------------

    def _checkout(self, origin: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()  # the most recently used: warmest, least likely timed out
            if connection.reusable(now, self._expiry):
                return connection
            connection.close()
        return None

    def _checkin(self, origin: tuple[str, str, int], connection: _Connection) -> None:
        idle = self._idle.setdefault(origin, [])
        now = time.monotonic()
        while idle and not idle[0].reusable(now, self._expiry):
            idle.pop(0).close()  # the oldest: expired, or closed by the server meanwhile
        if self._closed or len(idle) >= self._max_idle:
            connection.close()
            return
        connection.idle_since = now
        idle.append(connection)

    def _release(self) -> None:
        assert self._slots is not None
        self._slots.release()

    async def _connect(
        self, origin: tuple[str, str, int], timeout: float | None, request: httpx2.Request
    ) -> _Connection:
        scheme, host, port = origin
        context = None
        if scheme == "https":
            if self._ssl_context is None:
                verify = self._verify
                self._ssl_context = verify if isinstance(verify, ssl.SSLContext) else httpx2.create_ssl_context(verify)
            context = self._ssl_context
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=context, server_hostname=host if context else None, limit=MAX_HEAD_BYTES
                )
        except TimeoutError:
            raise httpx2.ConnectTimeout(f"timed out connecting to {host}:{port}", request=request) from None
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is an OSError)
            raise httpx2.ConnectError(str(exc) or type(exc).__name__, request=request) from None
        return _Connection(reader, writer)


async def _read_head(
    reader: asyncio.StreamReader, timeout: float | None, request: httpx2.Request
) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
    try:
        async with asyncio.timeout(timeout):
            block = await reader.readuntil(b"\r\n\r\n")
    except TimeoutError:
        raise httpx2.ReadTimeout("timed out waiting for the response", request=request) from None
    except asyncio.IncompleteReadError:
        raise httpx2.RemoteProtocolError("server disconnected without sending a response", request=request) from None
    except asyncio.LimitOverrunError:
        raise httpx2.RemoteProtocolError("response headers too large", request=request) from None
    except OSError as exc:
        raise httpx2.ReadError(str(exc) or type(exc).__name__, request=request) from None
    lines = block[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise httpx2.RemoteProtocolError(f"malformed status line {lines[0][:100]!r}", request=request)
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        # No obsolete line folding, no whitespace before the colon (RFC 9112 §5).
        if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise httpx2.RemoteProtocolError(f"malformed header line {line[:100]!r}", request=request)
        headers.append((name, value.strip()))
    return int(code), reason, version, headers


class _Body(httpx2.AsyncByteStream):
    """The response body, framed per RFC 9112 §6.3; hands the connection back once read."""

    def __init__(
        self,
        transport: UpstreamTransport,
        origin: tuple[str, str, int],
        connection: _Connection,
        request: httpx2.Request,
        status: int,
        version: bytes,
        headers: list[tuple[bytes, bytes]],
        timeout: float | None,
    ) -> None:
        self._transport = transport
        self._origin = origin
        self._connection = connection
        self._request = request
        self._timeout = timeout
        self._closed = False
        self._chunked = False
        self._length: int | None = None
        connection_tokens: set[bytes] = set()
        lengths = set()
        for name, value in headers:
            lower = name.lower()
            if lower == b"transfer-encoding":
                self._chunked = value.lower().endswith(b"chunked")
            elif lower == b"content-length":
                lengths.add(value)
            elif lower == b"connection":
                connection_tokens.update(token.strip().lower() for token in value.split(b","))
        if request.method == "HEAD" or status in (204, 304):
            self._length = 0
        elif not self._chunked and lengths:
            if len(lengths) > 1 or not next(iter(lengths)).isdigit():
                raise httpx2.RemoteProtocolError("invalid Content-Length", request=request)
            self._length = int(next(iter(lengths)))
        # Without a length the body ends when the server closes: nothing to reuse then.
        framed = self._chunked or self._length is not None
        if version == b"HTTP/1.1":
            self._keep_alive = framed and b"close" not in connection_tokens
        else:
            self._keep_alive = framed and b"keep-alive" in connection_tokens
        self._complete = self._length == 0

    async def _read(self, read: Callable[..., Awaitable[bytes]], *args: Any) -> bytes:
        try:
            async with asyncio.timeout(self._timeout):
                return await read(*args)
        except TimeoutError:
            raise httpx2.ReadTimeout("timed out reading the response", request=self._request) from None
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            raise httpx2.RemoteProtocolError("incomplete response body", request=self._request) from None
        except OSError as exc:
            raise httpx2.ReadError(str(exc) or type(exc).__name__, request=self._request) from None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        reader = self._connection.reader
        if self._chunked:
            while True:
                size_line = await self._read(reader.readuntil, b"\r\n")
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise httpx2.RemoteProtocolError("malformed chunk size", request=self._request) from None
                if size == 0:
                    while await self._read(reader.readuntil, b"\r\n") != b"\r\n":
                        pass  # trailer fields: ignored
                    break
                while size:
                    data = await self._read(reader.read, min(size, READ_SIZE))
                    if not data:
                        raise httpx2.RemoteProtocolError("incomplete chunked body", request=self._request)
                    size -= len(data)
                    yield data
                if await self._read(reader.readexactly, 2) != b"\r\n":
                    raise httpx2.RemoteProtocolError("malformed chunk end", request=self._request)
        elif self._length is not None:
            remaining = self._length
            while remaining:
                data = await self._read(reader.read, min(remaining, READ_SIZE))
                if not data:
                    raise httpx2.RemoteProtocolError("incomplete response body", request=self._request)
                remaining -= len(data)
                yield data
        else:
            while data := await self._read(reader.read, READ_SIZE):
                yield data
        self._complete = True

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._complete and self._keep_alive:
            self._transport._checkin(self._origin, self._connection)
        else:
            self._connection.close()  # a body left half-read cannot be followed by another response
        self._transport._release()
