"""A lean HTTP/1.1 transport under the gateway's httpx2 client to upstream MCP servers.

Every tool call crosses this client once, so its cost is the gateway's cost. httpx2's
default transport (httpcore2 over anyio and h11) spends about 0.5 ms of CPU per request in
general-purpose machinery; this one about 0.1 ms: asyncio streams, one write per request,
a keep-alive pool per origin, bodies framed by Content-Length, chunked encoding or the
connection's end. Under an ``httpx2.AsyncClient`` (``handle_async_request``) everything above
it is still httpx2 (timeouts, headers, ``Response``, ``EventSource``, exceptions).

The gateway's own POSTs skip even that: ``UpstreamTransport.exchange`` takes a whole request
as bytes (its head encoded once per upstream by the caller, see ``header_lines``) and hands
back an ``Exchange``: the status, the raw header fields and the body to iterate, with no
``httpx2.Request``, ``Response`` or ``Headers`` built per call. Both entry points share the
pool, the in-flight bound, the timeouts, the parser and the errors (httpx2's exception types,
without a ``request`` on the fast path). ``origin`` says whether a URL may take the fast path.

Proxies: an ``httpx2.AsyncClient`` given a ``transport=`` ignores ``HTTP_PROXY`` and the
like, so this transport reads them itself. When it is built (not per request) it takes
``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` (either case) from the
environment through httpx2's own rules, and sends each request whose URL they proxy through
an ``httpx2.AsyncHTTPTransport(proxy=...)`` for that proxy (absolute-form requests to an
``http://`` proxy, ``CONNECT`` tunnels for ``https://`` URLs), under the same ``Limits``,
TLS verification and in-flight bound. Requests the environment does not proxy, and all
requests when ``trust_env=False``, take the fast path. Out of scope, because MCP upstreams
do not need them: HTTP/2, ``101 Switching Protocols``, request trailers.

Responses are parsed to the grammar h11 accepts (RFC 9112), checked against h11 on the same
bytes by ``tests/relay/test_http1_h11.py``, refusing a little more: only ``HTTP/1.0`` and
``HTTP/1.1``, lines ended by CRLF only, no obsolete line folding (a gateway may refuse it,
RFC 9112 §5.2). The status line and headers may take ``MAX_HEAD_BYTES`` (h11's own default
is 16 KiB; httpcore2 raises it to 100 KiB), and so may a chunk-size line and the trailers;
past that the response is refused, never buffered without bound.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx2
from httpx2._utils import URLPattern, get_environment_proxies

MAX_HEAD_BYTES = 64 * 1024  # status line and headers; also a chunk-size line, and the trailers
READ_SIZE = 64 * 1024
WRITE_BUFFER_HIGH = 256 * 1024  # wait for the socket only past this much unsent data

# RFC 9112's grammar as h11 (0.16) spells it: a token, a colon, OWS, a value of visible
# characters (and obs-text) separated by spaces or tabs, OWS. CR, LF and NUL never pass.
_FIELD_VALUE = rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?"
_HEADER_LINE = re.compile(rb"([-!#$%&'*+.^_`|~0-9a-zA-Z]+):[ \t]*(" + _FIELD_VALUE + rb")[ \t]*")
_STATUS_LINE = re.compile(rb"(HTTP/1\.[01]) ([0-9]{3})(?: ((?:[ \t]|[^\x00\s])*))?")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,20})[ \t]*(?:;[^\r\n]*)?\r\n")  # extensions ignored
_LENGTH = re.compile(rb"[0-9]{1,20}")
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_BREAKS_FRAMING = re.compile(rb"[\r\n\x00]")

Origin = tuple[str, str, int]  # scheme, host, port: what a pooled connection is for


def header_lines(fields: list[tuple[bytes, bytes]]) -> bytes:
    """Request header fields as lines of a request head. A name that is not a token, or a value
    with CR, LF or NUL, raises ``httpx2.LocalProtocolError`` (h11 refuses them too): written as
    they are, they would end the head early or add fields of the sender's choosing (a tool name,
    which a caller supplies, goes out in ``Mcp-Name``)."""
    for name, value in fields:
        if not _TOKEN.fullmatch(name) or _BREAKS_FRAMING.search(value):
            raise httpx2.LocalProtocolError(f"invalid request header {name[:100]!r}")
    return b"".join([b"%s: %s\r\n" % field for field in fields])


def _origin(url: httpx2.URL) -> Origin:
    return (url.scheme, url.raw_host.decode("ascii"), url.port or (443 if url.scheme == "https" else 80))


class _Connection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def reusable(self, now: float, expiry: float) -> bool:
        # An idle connection the server closed has seen EOF by now (the loop read the FIN).
        # Bytes the server sent unasked (past the last response) would be read as the next
        # request's response: such a connection is dropped, as httpcore2 drops it.
        reader = self.reader
        return (
            not reader.at_eof()
            and not reader._buffer  # private, but StreamReader has no public "bytes buffered"
            and not self.writer.is_closing()
            and now - self.idle_since < expiry
        )

    def close(self) -> None:
        self.writer.close()


class UpstreamTransport(httpx2.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 (and HTTPS); one per event loop. Of httpx2's ``Limits``,
    ``max_connections`` bounds the requests in flight, proxied or not (beyond it callers wait,
    up to the pool timeout and at most ``pool_timeout`` seconds, whatever the request's own
    timeouts), ``max_keepalive_connections`` the idle connections kept per upstream. With
    ``trust_env`` (the default) the environment's proxy settings, as they are when the
    transport is built, apply: see the module's docstring."""

    def __init__(
        self,
        *,
        limits: httpx2.Limits,
        verify: ssl.SSLContext | bool = True,
        pool_timeout: float | None = None,
        trust_env: bool = True,
    ) -> None:
        self._max_connections = limits.max_connections
        self._pool_timeout = pool_timeout
        self._max_idle = limits.max_keepalive_connections or 0
        self._expiry = limits.keepalive_expiry if limits.keepalive_expiry is not None else 5.0
        self._verify = verify
        self._ssl_context: ssl.SSLContext | None = None
        self._slots: asyncio.Semaphore | None = None
        self._idle: dict[Origin, list[_Connection]] = {}
        self._closed = False
        # (pattern, its proxy's transport or None for "not proxied"), most specific first,
        # exactly as httpx2.AsyncClient mounts them when it builds its own transports.
        self._proxy_routes: list[tuple[URLPattern, httpx2.AsyncHTTPTransport | None]] = []
        self._proxy_transports: dict[str, httpx2.AsyncHTTPTransport] = {}
        if trust_env:
            for key, proxy_url in sorted(get_environment_proxies().items(), key=lambda item: URLPattern(item[0])):
                transport = None
                if proxy_url is not None:
                    transport = self._proxy_transports.get(proxy_url)
                    if transport is None:
                        transport = self._proxy_transports[proxy_url] = httpx2.AsyncHTTPTransport(
                            verify=verify, limits=limits, proxy=httpx2.Proxy(url=proxy_url)
                        )
                self._proxy_routes.append((URLPattern(key), transport))

    def _proxy_for(self, url: httpx2.URL) -> httpx2.AsyncHTTPTransport | None:
        """The transport through the proxy the environment sets for ``url``, if any."""
        for pattern, transport in self._proxy_routes:
            if pattern.matches(url):
                return transport
        return None

    def origin(self, url: httpx2.URL) -> Origin | None:
        """Where ``exchange`` sends requests for ``url``; None when it cannot (a proxy carries
        them, or the scheme is not HTTP): those go through ``handle_async_request``. Settled
        once per URL: the proxy settings are fixed when the transport is built."""
        if url.scheme not in ("http", "https") or (self._proxy_routes and self._proxy_for(url) is not None):
            return None
        return _origin(url)

    async def exchange(self, origin: Origin, request: bytes, timeout: float | None) -> Exchange:
        """Send ``request`` (a whole non-HEAD request: request line, header lines, blank line,
        body framed by its Content-Length) to ``origin`` (from ``origin(url)``) and return the
        response once its head is in. ``timeout`` bounds the wait for a free slot (capped by
        ``pool_timeout``), the connect, the send, and each read. The caller reads the body
        (iterating the ``Exchange``) and must ``aclose()`` it: that frees the slot and hands a
        fully read keep-alive connection back to the pool."""
        return await self._exchange(origin, request, pool=timeout, connect=timeout, write=timeout, read=timeout)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx2.ConnectError(f"unsupported URL scheme {url.scheme!r}", request=request)
        if self._proxy_routes and (proxied := self._proxy_for(url)) is not None:
            return await self._via_proxy(proxied, request, timeouts)
        body = b"".join([part async for part in request.stream])
        if request.headers.get("transfer-encoding", "").lower() == "chunked":
            body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
        try:
            lines = header_lines(request.headers.raw)
        except httpx2.LocalProtocolError as exc:
            exc.request = request
            raise
        head = b"%s %s HTTP/1.1\r\n%s\r\n" % (request.method.encode("ascii"), url.raw_path, lines)
        exchange = await self._exchange(
            _origin(url),
            head + body,
            pool=timeouts.get("pool"),
            connect=timeouts.get("connect"),
            write=timeouts.get("write"),
            read=timeouts.get("read"),
            head=request.method == "HEAD",
            request=request,
        )
        return exchange.response()

    async def _exchange(
        self,
        origin: Origin,
        data: bytes,
        *,
        pool: float | None,
        connect: float | None,
        write: float | None,
        read: float | None,
        head: bool = False,
        request: httpx2.Request | None = None,
    ) -> Exchange:
        await self._acquire(pool, request)
        assert self._slots is not None
        connection = None
        try:
            connection = self._checkout(origin) or await self._connect(origin, connect, request)
            connection.writer.write(data)
            if connection.writer.transport.get_write_buffer_size() > WRITE_BUFFER_HIGH:
                try:
                    async with asyncio.timeout(write):
                        await connection.writer.drain()
                except TimeoutError:
                    raise httpx2.WriteTimeout("timed out sending the request", request=request) from None
                except OSError as exc:
                    raise httpx2.WriteError(str(exc) or type(exc).__name__, request=request) from None
            status, reason, version, headers = await _read_head(connection.reader, read, request)
            while 100 <= status < 200 and status != 101:  # interim responses (103 Early Hints…)
                status, reason, version, headers = await _read_head(connection.reader, read, request)
            return Exchange(self, origin, connection, request, status, reason, version, headers, read, head)
        except BaseException:
            if connection is not None:
                connection.close()
            self._slots.release()
            raise

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
        for transport in self._proxy_transports.values():
            await transport.aclose()

    # --- the pool ------------------------------------------------------------------------

    async def _acquire(self, wait: float | None, request: httpx2.Request | None) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_connections)
        if self._slots.locked():
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

    async def _via_proxy(
        self, transport: httpx2.AsyncHTTPTransport, request: httpx2.Request, timeouts: dict[str, float | None]
    ) -> httpx2.Response:
        await self._acquire(timeouts.get("pool"), request)
        try:
            response = await transport.handle_async_request(request)
        except BaseException:
            self._release()
            raise
        response.stream = _Releasing(response.stream, self)
        return response

    def _checkout(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()  # the most recently used: warmest, least likely timed out
            if connection.reusable(now, self._expiry):
                return connection
            connection.close()
        return None

    def _checkin(self, origin: Origin, connection: _Connection) -> None:
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

    async def _connect(self, origin: Origin, timeout: float | None, request: httpx2.Request | None) -> _Connection:
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


class _Releasing(httpx2.AsyncByteStream):
    """A proxied response's body: frees the in-flight slot when closed."""

    def __init__(self, stream: httpx2.AsyncByteStream, transport: UpstreamTransport) -> None:
        self._stream = stream
        self._transport = transport
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._stream:
            yield part

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._stream.aclose()
        finally:
            self._transport._release()


def _header_fields(lines: list[bytes], request: httpx2.Request | None) -> list[tuple[bytes, bytes]]:
    fields = []
    for line in lines:
        match = _HEADER_LINE.fullmatch(line)
        if match is None:  # also obsolete line folding, and whitespace before the colon
            raise httpx2.RemoteProtocolError(f"malformed header line {line[:100]!r}", request=request)
        fields.append((match[1], match[2]))
    return fields


async def _read_head(
    reader: asyncio.StreamReader, timeout: float | None, request: httpx2.Request | None
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
    status = _STATUS_LINE.fullmatch(lines[0])
    if status is None or status[2][:1] == b"0":
        raise httpx2.RemoteProtocolError(f"malformed status line {lines[0][:100]!r}", request=request)
    return int(status[2]), status[3] or b"", status[1], _header_fields(lines[1:], request)


class Exchange(httpx2.AsyncByteStream):
    """A response whose head is read: ``status``, ``reason``, ``version`` and the raw header
    ``headers`` as received; iterating it yields the body, framed per RFC 9112 §6.3 (not
    decoded: a Content-Encoding is the caller's). Closing it hands the connection back once
    the body is read, or closes it, and frees the in-flight slot."""

    def __init__(
        self,
        transport: UpstreamTransport,
        origin: Origin,
        connection: _Connection,
        request: httpx2.Request | None,
        status: int,
        reason: bytes,
        version: bytes,
        headers: list[tuple[bytes, bytes]],
        timeout: float | None,
        head: bool,
    ) -> None:
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        self._transport = transport
        self._origin = origin
        self._connection = connection
        self._request = request
        self._timeout = timeout
        self._closed = False
        self._chunked = False
        self.length: int | None = None  # of the body, when the response says (Content-Length)
        connection_tokens: set[bytes] = set()
        lengths: set[bytes] = set()
        for name, value in headers:
            lower = name.lower()
            if lower == b"transfer-encoding":
                # Only a lone "chunked": any other coding would hand httpx2 an encoded body.
                if self._chunked or value.lower() != b"chunked":
                    raise httpx2.RemoteProtocolError(f"unsupported Transfer-Encoding {value[:100]!r}", request=request)
                self._chunked = True
            elif lower == b"content-length":
                lengths.update(length.strip() for length in value.split(b","))  # "5, 5" is 5 (RFC 9110 §8.6)
            elif lower == b"connection":
                connection_tokens.update(token.strip().lower() for token in value.split(b","))
        if lengths and (len(lengths) > 1 or not _LENGTH.fullmatch(next(iter(lengths)))):
            raise httpx2.RemoteProtocolError("invalid Content-Length", request=request)
        if head or status in (204, 304):
            self.length = 0
        elif not self._chunked and lengths:
            self.length = int(next(iter(lengths)))
        # Without a length the body ends when the server closes: nothing to reuse then.
        framed = self._chunked or self.length is not None
        if version == b"HTTP/1.1":
            self._keep_alive = framed and b"close" not in connection_tokens
        else:
            self._keep_alive = framed and b"keep-alive" in connection_tokens
        self._complete = self.length == 0

    def response(self, request: httpx2.Request | None = None) -> httpx2.Response:
        """This exchange as an ``httpx2.Response`` streaming its body (decoded as httpx2 decodes)."""
        return httpx2.Response(
            self.status,
            headers=self.headers,
            stream=self,
            request=request,
            extensions={"http_version": self.version, "reason_phrase": self.reason},
        )

    async def _read(self, read: Callable[..., Awaitable[bytes]], *args: Any) -> bytes:
        try:
            async with asyncio.timeout(self._timeout):
                return await read(*args)
        except TimeoutError:
            raise httpx2.ReadTimeout("timed out reading the response", request=self._request) from None
        except asyncio.IncompleteReadError:
            raise httpx2.RemoteProtocolError("incomplete response body", request=self._request) from None
        except asyncio.LimitOverrunError:
            raise httpx2.RemoteProtocolError("chunk-size or trailer line too long", request=self._request) from None
        except OSError as exc:
            raise httpx2.ReadError(str(exc) or type(exc).__name__, request=self._request) from None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        reader = self._connection.reader
        if self._chunked:
            while True:
                size_line = await self._read(reader.readuntil, b"\r\n")
                match = _CHUNK_SIZE.fullmatch(size_line)
                if match is None:
                    raise httpx2.RemoteProtocolError("malformed chunk size", request=self._request)
                size = int(match[1], 16)
                if size == 0:
                    trailers = []  # read, checked like headers, then dropped (httpx2 has no place for them)
                    budget = MAX_HEAD_BYTES
                    while (line := await self._read(reader.readuntil, b"\r\n")) != b"\r\n":
                        budget -= len(line)
                        if budget < 0:
                            raise httpx2.RemoteProtocolError("response trailers too large", request=self._request)
                        trailers.append(line[:-2])
                    _header_fields(trailers, self._request)
                    break
                while size:
                    data = await self._read(reader.read, min(size, READ_SIZE))
                    if not data:
                        raise httpx2.RemoteProtocolError("incomplete chunked body", request=self._request)
                    size -= len(data)
                    yield data
                if await self._read(reader.readexactly, 2) != b"\r\n":
                    raise httpx2.RemoteProtocolError("malformed chunk end", request=self._request)
        elif self.length is not None:
            remaining = self.length
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
