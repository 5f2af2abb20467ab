"""Talking to upstream MCP servers: one pooled HTTP client, one MCP session per upstream
(``UpstreamPool``, owned by the gateway; a one-off caller builds and closes its own).

The gateway speaks to each upstream in the era it speaks:

* the 2025 revisions: ``initialize`` once, reuse ``Mcp-Session-Id`` for every call,
  re-initialize when the upstream answers 404 (it forgot the session);
* 2026-07-28: stateless requests that carry ``_meta`` and the routing headers.

The era is settled once per upstream (a ``server/discover`` probe, as the SDK's ``auto``
mode does); no call opens a new connection or a new handshake. A member's token is never
sent upstream: only the server's own configured headers are.

Whatever an upstream sends, a call ends in a result or an ``UpstreamError``: JSON that is
not JSON-RPC, error objects of the wrong shape, streams that end without the reply and
answers over ``Settings.max_response_bytes`` (reading stops there and the connection
is closed) are all refusals that name the upstream, never an exception of another kind.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import itertools
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx2
from httpx2._models import _is_known_encoding, _parse_content_type_charset
from httpx2._sse import ServerSentEvent, _SSEParser
from mcp.shared.inbound import encode_header_value
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    PROTOCOL_VERSION_META_KEY,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION, MODERN_PROTOCOL_VERSIONS

from relay.codec import parse_json, wire_json
from relay.config import Era, Settings, UpstreamConfig
from relay.http1 import Exchange, Origin, UpstreamTransport, header_lines
from relay.limits import BUSY, BUSY_STATUS, Busy, CallLimits
from relay.protocol import RELAYED_CLIENT_CAPABILITIES, json_kind

logger = logging.getLogger(__name__)

CLIENT_INFO = {"name": "mcpnest-gateway", "version": "1.0"}
NAME_BEARING = {"tools/call": "name", "resources/read": "uri", "prompts/get": "name"}
# Requests in flight to all upstreams from one process. Far above the per-workspace and
# per-upstream limits (runtime.limits), so those are what a busy tenant runs into.
MAX_CONNECTIONS = 2000
# 2025-era client sessions with an upstream session of their own, per gateway process
# (least recently used closed first).
MAX_CLIENT_SESSIONS = 2000
WATCH_IDLE_SECONDS = 300.0  # a silent listen stream is opened again after this long
STREAM_LINGER = 1.0  # seconds an answered event stream may take to end (in the background)
MAX_RELAYED = 1000  # ids of requests relayed to the client, remembered per upstream session

UPSTREAM_ERROR = -32000  # the gateway's JSON-RPC code for "the upstream failed"
INT32 = range(-(2**31), 2**31)  # JSON-RPC codes are integers; clients hold them in 32 bits
# The gateway's own protocol headers, set per call (``Upstream._call_headers``): a configured
# header of one of these names is not sent beside them.
PER_CALL_HEADERS = frozenset({b"mcp-protocol-version", b"mcp-session-id", b"mcp-method", b"mcp-name"})

Notify = Callable[[dict[str, Any]], Awaitable[None]]
# Called with a request the upstream sends while answering a call (sampling, elicitation,
# roots): relay it to the caller, or answer it (``Upstream.answer``). Never left unanswered.
OnRequest = Callable[[dict[str, Any], "Upstream"], Awaitable[None]]


class UpstreamError(Exception):
    """The upstream could not be reached, answered outside the protocol, or refused the call.

    ``str(exc)`` is the operator's wording (a server's health detail: "upstream fix timed
    out"); the caller is answered with ``code``, ``client_message`` and ``data``, and the
    audit row gets ``status``.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        timeout: bool = False,
        code: int = UPSTREAM_ERROR,
        data: Any = None,
        client_message: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.timeout = timeout
        self.code = code
        self.data = data
        self.client_message = client_message or message


class UpstreamRefused(UpstreamError):
    """The upstream answered with a well-formed JSON-RPC error: relayed to the caller as it is."""


def failure(slug: str, detail: str, **kwargs: Any) -> UpstreamError:
    """An ``UpstreamError`` worded for both readers: "upstream X <detail>" / "Upstream server X <detail>"."""
    return UpstreamError(f"upstream {slug} {detail}", client_message=f"Upstream server {slug} {detail}", **kwargs)


def _too_large(slug: str, limit: int) -> UpstreamError:
    if limit % 2**20 == 0:
        size = f"{limit // 2**20} MB"
    elif limit % 1024 == 0:
        size = f"{limit // 1024} KB"
    else:
        size = f"{limit} bytes"
    return failure(slug, f"answered more than {size}; the gateway's limit is MCPNEST_GATEWAY_MAX_RESPONSE_BYTES")


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _refusal(slug: str, error: Any) -> UpstreamError:
    """What to tell the caller for an upstream's ``error`` member."""
    if not isinstance(error, dict):
        return failure(slug, f"sent a malformed error ({json_kind(error)}, not an error object)")
    if "code" not in error:
        return failure(slug, "sent a malformed error (no code)")
    code, message = error["code"], error.get("message")
    if not isinstance(code, int) or isinstance(code, bool):
        return failure(slug, f"sent a malformed error (code {_short(code)})")
    if not isinstance(message, str):
        return failure(slug, f"sent a malformed error (code {code} with {json_kind(message)} as its message)")
    if code not in INT32:
        # Not a code a client can hold: -32000, and the message says whose and which it was.
        return UpstreamRefused(
            f"upstream {slug} answered error code {_short(code)}, beyond 32 bits: {message[:200]}",
            data=error.get("data"),
            client_message=f"Upstream server {slug} answered error code {_short(code)}, beyond 32 bits: {message}",
        )
    return UpstreamRefused(
        f"upstream {slug} answered error {code}: {message[:200]}",
        code=code,
        data=error.get("data"),
        client_message=message,
    )


def result_of(slug: str, reply: dict[str, Any]) -> dict[str, Any]:
    """The ``result`` of an upstream's JSON-RPC reply. An error reply raises ``UpstreamRefused``
    (code, message and data relayed as they are; a code beyond 32 bits becomes -32000, its
    message prefixed with the upstream's name and the code) and
    anything malformed an ``UpstreamError`` that says what was wrong."""
    if "error" in reply:
        raise _refusal(slug, reply["error"])
    if "result" not in reply:
        raise failure(slug, "sent a reply without a result")
    result = reply["result"]
    if not isinstance(result, dict):
        raise failure(slug, f"sent a malformed result ({json_kind(result)}, not an object)")
    if not isinstance(result.get("_meta", {}), dict):
        raise failure(slug, "sent a malformed result (its _meta is not an object)")
    return result


def _json_object(text: str | bytes) -> dict[str, Any] | None:
    """The JSON object in ``text``, or None for anything else (invalid JSON, an array, too deep)."""
    try:
        data = parse_json(text)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _field(fields: list[tuple[bytes, bytes]], name: bytes) -> str:
    """A response header's value ("" when absent; repeated fields joined by ", ", as httpx2 does)."""
    return b", ".join([value for key, value in fields if key.lower() == name]).decode("latin-1")


def _content_type(fields: list[tuple[bytes, bytes]]) -> str:
    return _field(fields, b"content-type").split(";")[0].strip().lower()


def _text_encoding(content_type: str) -> str:
    """How httpx2 decodes a body of this Content-Type as text: its known charset, else UTF-8."""
    if ";" not in content_type:
        return "utf-8"  # no charset parameter (the usual case): nothing to parse
    charset = _parse_content_type_charset(content_type)
    return charset if charset and _is_known_encoding(charset) else "utf-8"


async def _events(body: Exchange, limit: int, encoding: str) -> AsyncIterator[ServerSentEvent]:
    """The events of an event stream's body: ``httpx2.EventSource`` without an
    ``httpx2.Response`` around the body (its parser and its text decoding, step by step)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    parser = _SSEParser(limit)
    async for chunk in body:
        if text := decoder.decode(chunk):
            for event in parser.decode(text):
                yield event
    if text := decoder.decode(b"", True):
        for event in parser.decode(text):
            yield event
    for event in parser.flush():
        yield event


async def _read_capped(response: httpx2.Response | Exchange, limit: int, slug: str) -> bytes:
    """The whole body, refused (and left unread, so its connection is closed) past ``limit``.
    An ``Exchange`` is one without a Content-Encoding (``Upstream._open``): its bytes are the body."""
    if isinstance(response, Exchange):
        length, body = response.length, aiter(response)
    else:
        text = response.headers.get("content-length", "")
        length, body = int(text) if text.isdigit() else None, response.aiter_bytes()
    if length is not None and length > limit:
        raise _too_large(slug, limit)
    chunks, size = [], 0
    async for chunk in body:  # decoded: a compressed body counts as it expands
        size += len(chunk)
        if size > limit:
            raise _too_large(slug, limit)
        chunks.append(chunk)
    return b"".join(chunks)


class UpstreamPool:
    """The upstream side of one gateway (or of one one-off job: approving a server, the
    portal's tool picker): its HTTP client, its MCP session per upstream, and the
    concurrency slots of its callers. Bound to the event loop it is first used on (httpx2
    clients and semaphores cannot cross loops); ``aclose()`` ends it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limits = CallLimits()
        self._client: httpx2.AsyncClient | None = None
        self.transport: UpstreamTransport | None = None  # the client's
        self._sessions: dict[tuple, Upstream] = {}
        self._twins: OrderedDict[tuple, Upstream] = OrderedDict()  # per 2025-era client session, bounded

    async def __aenter__(self) -> UpstreamPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def client(self) -> httpx2.AsyncClient:
        if self._client is None or self._client.is_closed:
            limits = httpx2.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=100, keepalive_expiry=60)
            # httpx2's default transport costs ~0.5 ms of CPU a call; see relay.http1.
            # Waiting for a free connection is bounded like waiting for a tenant's slot.
            self.transport = UpstreamTransport(limits=limits, pool_timeout=self.settings.queue_seconds)
            self._client = httpx2.AsyncClient(
                timeout=httpx2.Timeout(30.0, connect=5.0),
                limits=limits,
                transport=self.transport,
                follow_redirects=False,
                # No cookies: the pool serves every tenant, so a cookie one tenant's upstream
                # set would ride on another tenant's calls to the same host. MCP needs none
                # (sessions are Mcp-Session-Id headers).
                cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            )
        return self._client

    def get(self, config: UpstreamConfig) -> Upstream:
        """The connection state for an upstream (new when its URL or headers change)."""
        upstream = self._sessions.get(config.key)
        if upstream is None:
            upstream = self._sessions[config.key] = Upstream(config=config, pool=self)
        elif upstream.config is not config:
            upstream.config = config  # same connection; its timeout or limit may have changed
        return upstream

    async def for_caller(self, config: UpstreamConfig, *, session: str | None = None) -> Upstream:
        """The connection a caller's call goes on: the upstream's own, but for a 2025-era
        client session (``session``) with an upstream that speaks both eras, a 2025-era
        upstream session of that client session's own (see ``Upstream.legacy_only``): what
        the upstream sends on it unprompted (requests, resource updates) is that client's."""
        upstream = self.get(config)
        if session is None:
            return upstream
        await upstream.ensure_connected(min(upstream.timeout, 10.0))
        if upstream.era is not Era.MODERN or upstream.legacy_refused:
            return upstream
        key = (*config.key, Era.LEGACY, session)
        twin = self._twins.get(key)
        if twin is None:
            twin = self._twins[key] = Upstream(config=config, pool=self, legacy_only=True)
            while len(self._twins) > MAX_CLIENT_SESSIONS:
                self._twins.popitem(last=False)[1].close()
        else:
            self._twins.move_to_end(key)
            if twin.config is not config:
                twin.config = config
        try:
            await twin.ensure_connected(min(upstream.timeout, 10.0))
        except UpstreamError as exc:
            logger.info("upstream %s speaks 2026-07-28 only (%s): 2025-era callers use it too", config.slug, exc)
            upstream.legacy_refused = True
            return upstream
        return twin

    async def aclose(self) -> None:
        for upstream in [*self._sessions.values(), *self._twins.values()]:
            upstream.close()
        self._sessions.clear()
        self._twins.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def _finish_stream(events: AsyncIterator, response: httpx2.Response | Exchange) -> None:
    """Read what is left of a call's event stream once its answer is in: a server closes it
    right after the answer (the spec's SHOULD), and a stream read to its end leaves the
    connection open for the next call. One the server keeps open past ``STREAM_LINGER`` is
    closed instead (and with it the connection)."""
    try:
        async with asyncio.timeout(STREAM_LINGER):
            async for _ in events:
                pass
    except (TimeoutError, httpx2.HTTPError):
        pass
    finally:
        await response.aclose()


@dataclass(frozen=True, slots=True)
class _Wire:
    """What every POST of one ``Upstream`` to its URL shares, worked out once per client."""

    client: httpx2.AsyncClient
    transport: UpstreamTransport
    origin: Origin | None  # None: the URL takes httpx2's path (a proxy carries it)
    head: bytes  # the request line and the header lines that never change (Host, User-Agent, …)
    request: httpx2.Request  # stands for the calls in the httpx2.Responses built around them


@dataclass
class Upstream:
    """One upstream server's connection state inside this gateway process."""

    config: UpstreamConfig
    pool: UpstreamPool
    era: Era | None = None
    ready: bool = False  # the era is settled (and, for legacy, the session open)
    # A 2025-era session with an upstream that speaks both eras, for 2025-era callers: only
    # there can it send them requests (sampling, elicitation) and resource updates.
    legacy_only: bool = False
    legacy_refused: bool = False  # a modern upstream that refused a 2025-era session
    listener: asyncio.Task | None = None  # reads the session's GET stream (``listen``) or listen stream (``watch``)
    watched: frozenset[str] = frozenset()  # resource URIs its watch asks for updates of
    listening: asyncio.Event = field(default_factory=asyncio.Event)  # set once the GET stream is open
    protocol_version: str = LATEST_HANDSHAKE_VERSION
    session_id: str | None = None
    server_info: dict[str, Any] = field(default_factory=dict)
    capabilities: dict[str, Any] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _answering: set = field(default_factory=set)
    _relayed: OrderedDict = field(default_factory=OrderedDict)  # our request id -> the client's
    _wire: _Wire | None = field(default=None, repr=False)

    # --- wire ---------------------------------------------------------------

    @functools.cached_property
    def _url(self) -> httpx2.URL:
        return httpx2.URL(self.config.url)  # parsed once, not on every call

    def _fail(self, detail: str, **kwargs: Any) -> UpstreamError:
        return failure(self.config.slug, detail, **kwargs)

    @property
    def timeout(self) -> float:
        """Seconds a call may wait on this upstream (to connect, or for each read)."""
        return self.config.timeout_seconds or self.pool.settings.upstream_timeout

    def close(self) -> None:
        """Forget the session (and stop reading its streams)."""
        for task in (getattr(self, "_reader", None), self.listener):
            if task is not None:
                task.cancel()
        self.ready = False

    def _timed_out(self) -> UpstreamError:
        return self._fail("timed out", status=504, timeout=True)

    def _pool_busy(self, exc: httpx2.PoolTimeout) -> UpstreamError:
        return self._fail(
            f"was not called: {exc}, and none freed within MCPNEST_GATEWAY_QUEUE_SECONDS; retry later",
            code=BUSY,
            status=BUSY_STATUS,
        )

    def _base_headers(self) -> dict[str, str]:
        headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        headers.update(self.config.headers)
        return headers

    def _call_headers(self, method: str | None, params: dict | None) -> list[tuple[str, str]]:
        """The headers of one message that follow from the era (``PER_CALL_HEADERS``)."""
        if self.era is Era.MODERN:
            headers = [("mcp-protocol-version", self.protocol_version)]
            if method:
                headers.append(("mcp-method", method))
                name_key = NAME_BEARING.get(method)
                if name_key and params and isinstance(params.get(name_key), str):
                    # A name or URI that would not survive as a header value (non-ASCII, control
                    # characters, edge whitespace) goes base64-wrapped, as the SDK's servers read it.
                    headers.append(("mcp-name", encode_header_value(params[name_key])))
            return headers
        if self.era is Era.LEGACY:
            headers = [("mcp-protocol-version", self.protocol_version)]
            if self.session_id:
                headers.append(("mcp-session-id", self.session_id))
            return headers
        return []

    def _headers(self, method: str | None, params: dict | None) -> dict[str, str]:
        return {**self._base_headers(), **dict(self._call_headers(method, params))}

    def _unreachable(self, exc: httpx2.HTTPError) -> UpstreamError:
        """A failure to send a request (or to get its response's head), worded for the caller."""
        if isinstance(exc, httpx2.PoolTimeout):
            return self._pool_busy(exc)
        if isinstance(exc, httpx2.TimeoutException):
            return self._timed_out()
        return self._fail(f"is unreachable ({type(exc).__name__})")

    async def _send(self, method: str, url: httpx2.URL, **options: Any) -> httpx2.Response:
        """Send one request through the httpx2 client and return the streaming response;
        transport failures become UpstreamErrors that name this upstream."""
        client = self.pool.client
        try:
            return await client.send(client.build_request(method, url, **options), stream=True)
        except httpx2.HTTPError as exc:
            raise self._unreachable(exc) from None

    def _wire_for(self, client: httpx2.AsyncClient) -> _Wire:
        transport = self.pool.transport
        assert transport is not None
        # The static headers as httpx2 would send them (the client's defaults merged with
        # ours, Host from the URL), taken from a request built once.
        headers = httpx2.Headers(client.headers)
        headers.update(self._base_headers())
        request = httpx2.Request("POST", self._url, headers=headers)
        origin = transport.origin(self._url)
        if any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in headers.raw):
            origin = None  # configured framing headers: left to httpx2's rules for them
        head = b""
        if origin is not None:
            fields = [
                (name, value)
                for name, value in request.headers.raw
                if name.lower() != b"content-length" and name.lower() not in PER_CALL_HEADERS
            ]
            head = b"POST %s HTTP/1.1\r\n%s" % (self._url.raw_path, header_lines(fields))
        return _Wire(client, transport, origin, head, request)

    async def _open(self, body: bytes, headers: list[tuple[str, str]], timeout: float) -> httpx2.Response | Exchange:
        """POST ``body`` (one JSON-RPC message, with the per-call ``headers``) to the upstream's
        URL and return the response once its head is in. The common case (no proxy,
        no Content-Encoding) is an ``Exchange`` of the transport, with no httpx2 object built
        per call; anything else an ``httpx2.Response``, as httpx2 sends and decodes it. Transport
        failures become UpstreamErrors that name this upstream."""
        client = self.pool.client
        wire = self._wire
        try:
            if wire is None or wire.client is not client:
                wire = self._wire = self._wire_for(client)
            if wire.origin is None:
                # httpx2's path: what it does per request (a proxy) applies.
                return await self._send(
                    "POST", self._url, content=body, headers={**self._base_headers(), **dict(headers)}, timeout=timeout
                )
            lines = header_lines([(name.encode("ascii"), value.encode("ascii")) for name, value in headers])
            request = b"%s%sContent-Length: %d\r\n\r\n%s" % (wire.head, lines, len(body), body)
            exchange = await wire.transport.exchange(wire.origin, request, timeout)
        except httpx2.HTTPError as exc:
            raise self._unreachable(exc) from None
        for name, _ in exchange.headers:
            if name.lower() == b"content-encoding":
                return exchange.response(wire.request)  # rare: httpx2 decodes the body
        return exchange

    async def _post(
        self,
        message: dict[str, Any],
        *,
        timeout: float,
        notify: Notify | None = None,
        on_request: OnRequest | None = None,
    ) -> tuple[int, dict[str, Any] | None, list[tuple[bytes, bytes]]]:
        """POST one message; return (HTTP status, the JSON-RPC reply or None, header fields)."""
        response = await self._open(
            wire_json(message),
            self._call_headers(message.get("method"), message.get("params")),
            timeout,
        )
        limit = self.pool.settings.max_response_bytes
        try:
            if isinstance(response, Exchange):
                status, fields = response.status, response.headers
            else:
                status, fields = response.status_code, response.headers.raw
            content_type = _content_type(fields)
            if content_type == "text/event-stream":
                reply = None
                received = 0  # the data of every event of this call, replies and notifications alike
                if isinstance(response, Exchange):
                    events = aiter(_events(response, limit, _text_encoding(_field(fields, b"content-type"))))
                else:
                    events = aiter(httpx2.EventSource(response, max_event_size=limit))
                async for event in events:
                    text = event.data
                    if not text:
                        continue  # priming event
                    received += len(text) if text.isascii() else len(text.encode())
                    if received > limit:
                        raise _too_large(self.config.slug, limit)
                    data = _json_object(text)
                    if data is None:
                        raise self._fail("sent an event that is not a JSON-RPC message (not a JSON object)")
                    if "id" in data and ("result" in data or "error" in data):
                        if data.get("id") == message.get("id"):
                            reply = data
                            break
                    elif "method" in data and "id" in data:
                        await self._server_request(data, on_request)
                    elif notify is not None and "method" in data:
                        await notify(self.outgoing(data))
                if reply is None and "id" in message and status < 300:
                    raise self._fail(f"ended its event stream without answering (HTTP {status})")
                if reply is not None:
                    # The rest of the stream is read after the answer goes out, not before.
                    self._in_background(_finish_stream(events, response))
                    response = None
                return status, reply, fields
            raw = await _read_capped(response, limit, self.config.slug)
            if content_type == "application/json" and raw:
                data = _json_object(raw)
                if data is None and "id" in message and status < 300:
                    raise self._fail("sent a body that is not a JSON-RPC message (invalid JSON, or not an object)")
                return status, data, fields
            return status, None, fields
        except httpx2.SSEError:  # one event over the limit (the only SSEError once the type is checked)
            raise _too_large(self.config.slug, limit) from None
        except httpx2.TimeoutException:
            raise self._timed_out() from None
        except httpx2.HTTPError as exc:
            raise self._fail(f"broke the connection ({type(exc).__name__})") from None
        finally:
            if response is not None:
                await response.aclose()  # unread data left: the connection is closed, not reused

    # --- requests from the upstream -------------------------------------------------------

    async def _server_request(self, request: dict[str, Any], on_request: OnRequest | None) -> None:
        if request.get("method") == "ping":
            await self.answer(request.get("id"), result={})
        elif on_request is None:
            await self.answer(
                request.get("id"),
                error={"code": -32601, "message": f"{request.get('method')} cannot reach the client of this call."},
            )
        else:
            await on_request(request, self)

    def relayed_as(self, request_id: Any, client_id: str) -> None:
        """Remember the id under which one of our requests went to the client (bounded)."""
        if isinstance(request_id, str | int):
            self._relayed[request_id] = client_id
            while len(self._relayed) > MAX_RELAYED:
                self._relayed.popitem(last=False)

    def outgoing(self, notification: dict[str, Any]) -> dict[str, Any]:
        """A notification on its way to the client: one that cancels a request of ours the
        client got under another id names that id."""
        if notification.get("method") == "notifications/cancelled":
            params = _object(notification.get("params"))
            request_id = params.get("requestId")
            if isinstance(request_id, str | int) and request_id in self._relayed:
                return {**notification, "params": {**params, "requestId": self._relayed[request_id]}}
        return notification

    def _in_background(self, job: Awaitable[None]) -> None:
        task = asyncio.ensure_future(job)
        self._answering.add(task)  # the loop holds tasks only weakly
        task.add_done_callback(self._answering.discard)

    async def send(
        self, notification: dict[str, Any], *, session_id: str | None = None, protocol_version: str | None = None
    ) -> None:
        """Send a notification (``method``, ``params``) on a 2025-era session: this one's or
        ``session_id`` (see ``answer``). Failures are logged, never raised."""
        await self._deliver({"jsonrpc": "2.0", **notification}, session_id, protocol_version)

    async def answer(
        self,
        request_id: Any,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        session_id: str | None = None,
        protocol_version: str | None = None,
    ) -> None:
        """Answer a request the upstream sent us on a 2025-era session: this one's, or
        ``session_id`` (the session the request came on, when its answer reaches another
        gateway process)."""
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id}
        if error is not None:
            reply["error"] = error
        else:
            reply["result"] = result or {}
        await self._deliver(reply, session_id, protocol_version)

    async def _deliver(self, message: dict[str, Any], session_id: str | None, protocol_version: str | None) -> None:
        if self.era is Era.SSE:
            try:
                await self._sse_send(message, self.timeout)
            except UpstreamError as exc:
                logger.warning("a message to upstream %s was not delivered: %s", self.config.slug, exc)
            return
        headers = [("mcp-protocol-version", protocol_version or self.protocol_version)]
        session = session_id or self.session_id
        if session:
            headers.append(("mcp-session-id", session))
        try:
            response = await self._open(wire_json(message), headers, self.timeout)
            await response.aclose()
        except UpstreamError as exc:
            # An unanswered request of the upstream's ends with its own timeout; nothing else to do.
            logger.warning("a message to upstream %s was not delivered: %s", self.config.slug, exc)

    async def listen(self, on_message: Notify, on_request: OnRequest | None = None) -> None:
        """Read this 2025-era session's GET stream (what the upstream sends unprompted:
        resource updates, list changes) until cancelled; reconnect after a failure."""
        backoff = 1.0
        while True:
            try:
                await self.ensure_connected(min(self.timeout, 10.0))
                headers = self._headers(None, None)
                headers["accept"] = "text/event-stream"
                request = self.pool.client.build_request(
                    "GET", self._url, headers=headers, timeout=httpx2.Timeout(self.timeout, read=None)
                )
                response = await self.pool.client.send(request, stream=True)
                try:
                    if response.status_code != 200:
                        self.listening.set()  # nothing to wait for
                        return  # the upstream offers no GET stream (405): nothing to read
                    self.listening.set()
                    backoff = 1.0
                    async for event in httpx2.EventSource(
                        response, max_event_size=self.pool.settings.max_response_bytes
                    ):
                        data = _json_object(event.data) if event.data else None
                        if data is None or "method" not in data:
                            continue
                        if "id" in data:
                            await self._server_request(data, on_request)
                        else:
                            await on_message(self.outgoing(data))
                finally:
                    await response.aclose()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the stream broke: the upstream restarts, the network fails
                logger.info("the GET stream of upstream %s ended (%s); reconnecting", self.config.slug, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def watch(self, on_message: Notify, uris: list[str]) -> None:
        """Hold a 2026-07-28 upstream's subscriptions/listen stream open (list changes, and
        updates of ``uris``) until cancelled; open it again when it ends or fails."""
        wanted = {"toolsListChanged": True, "promptsListChanged": True, "resourcesListChanged": True}
        if uris:
            wanted["resourceSubscriptions"] = uris

        async def relay(message: dict[str, Any]) -> None:
            if message.get("method") == "notifications/subscriptions/acknowledged":
                self.listening.set()  # the upstream listens: what changes from now on reaches us
            else:
                await on_message(message)

        backoff = 1.0
        while True:
            self.listening.clear()
            try:
                # The stream's answer comes only when the upstream ends it; until then every
                # frame is a notification (the acknowledgement first).
                reply = await self.request(
                    "subscriptions/listen", {"notifications": wanted}, timeout=WATCH_IDLE_SECONDS, notify=relay
                )
                if "error" in reply:  # it offers no listen stream: nothing to watch
                    self.listening.set()
                    logger.info("upstream %s refused subscriptions/listen: %s", self.config.slug, reply["error"])
                    return
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except UpstreamError as exc:
                if exc.timeout:
                    backoff = 1.0  # quiet for a while: listen again
                else:
                    logger.info("the listen stream of upstream %s ended (%s); listening again", self.config.slug, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    # --- era and session ------------------------------------------------------

    def _modern_meta(self) -> dict[str, Any]:
        return {
            PROTOCOL_VERSION_META_KEY: self.protocol_version,
            CLIENT_CAPABILITIES_META_KEY: {},
            CLIENT_INFO_META_KEY: CLIENT_INFO,
        }

    async def _connect(self, timeout: float) -> None:
        if self.legacy_only:
            await self._initialize(timeout)
            return
        # Probe the modern era first; anything but a usable discover result means legacy.
        self.era, self.session_id = Era.MODERN, None
        self.protocol_version = MODERN_PROTOCOL_VERSIONS[-1]
        probe = {
            "jsonrpc": "2.0",
            "id": next(self._ids),
            "method": "server/discover",
            "params": {"_meta": self._modern_meta()},
        }
        try:
            status, reply, _ = await self._post(probe, timeout=timeout)
        except UpstreamError:
            self.era = None
            raise
        result = (reply or {}).get("result") if status == 200 else None
        if isinstance(result, dict):
            supported = result.get("supportedVersions")
            versions = [v for v in MODERN_PROTOCOL_VERSIONS if isinstance(supported, list) and v in supported]
            if versions:
                self.protocol_version = versions[-1]
                self.capabilities = _object(result.get("capabilities"))
                self.server_info = _object(_object(result.get("_meta")).get("io.modelcontextprotocol/serverInfo"))
                return
        await self._initialize(timeout)

    async def _initialize(self, timeout: float) -> None:
        self.era, self.session_id = Era.LEGACY, None
        self.protocol_version = LATEST_HANDSHAKE_VERSION
        message = {
            "jsonrpc": "2.0",
            "id": next(self._ids),
            "method": "initialize",
            "params": {
                "protocolVersion": LATEST_HANDSHAKE_VERSION,
                "capabilities": RELAYED_CLIENT_CAPABILITIES,
                "clientInfo": CLIENT_INFO,
            },
        }
        self.era = None  # no version/session headers on initialize
        try:
            status, reply, headers = await self._post(message, timeout=timeout)
        finally:
            self.era = Era.LEGACY
        result = (reply or {}).get("result")
        if status in (400, 404, 405) and reply is None:
            # Not a Streamable HTTP endpoint: try the 2024-11-05 HTTP+SSE transport.
            await self._connect_sse(timeout)
            return
        if status != 200 or not isinstance(result, dict):
            self.era = None
            error = _object((reply or {}).get("error"))
            detail = error.get("message") if isinstance(error.get("message"), str) else f"HTTP {status}"
            raise self._fail(f"refused initialize: {detail[:200]}")
        version = result.get("protocolVersion")
        self.protocol_version = version if version in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION
        session_id = _field(headers, b"mcp-session-id")
        self.session_id = session_id if session_id and session_id.isascii() and session_id.isprintable() else None
        self.capabilities = _object(result.get("capabilities"))
        self.server_info = _object(result.get("serverInfo"))
        await self._post({"jsonrpc": "2.0", "method": "notifications/initialized"}, timeout=timeout)

    # --- the legacy HTTP+SSE transport (2024-11-05) ----------------------------------------
    #
    # A GET opens a long-lived event stream whose first event names the endpoint to POST
    # messages to; every reply and notification then arrives on that one stream, matched
    # to its request by id (and progress notifications by progress token).

    async def _connect_sse(self, timeout: float) -> None:
        client = self.pool.client
        headers = {"accept": "text/event-stream", **dict(self.config.headers)}
        try:
            request = client.build_request(
                "GET", self._url, headers=headers, timeout=httpx2.Timeout(timeout, read=None)
            )
            response = await client.send(request, stream=True)
        except httpx2.PoolTimeout as exc:
            raise self._pool_busy(exc) from None
        except httpx2.HTTPError as exc:
            raise self._fail(f"is unreachable ({type(exc).__name__})") from None
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if response.status_code != 200 or content_type != "text/event-stream":
            await response.aclose()
            self.era = None
            raise self._fail(
                "speaks neither Streamable HTTP nor HTTP+SSE "
                f"(GET answered {response.status_code} {content_type or 'without a content type'})"
            )
        events = aiter(httpx2.EventSource(response, max_event_size=self.pool.settings.max_response_bytes))
        try:
            first = await asyncio.wait_for(anext(events), timeout)
        except (TimeoutError, StopAsyncIteration, httpx2.HTTPError):
            await response.aclose()
            self.era = None
            raise self._fail("sent no endpoint event on its SSE stream") from None
        if first.event != "endpoint" or not first.data:
            await response.aclose()
            self.era = None
            raise self._fail("opened its SSE stream without an endpoint event")
        try:
            endpoint = self._url.join(first.data.strip())
        except (httpx2.InvalidURL, ValueError, TypeError):
            await response.aclose()
            self.era = None
            raise self._fail("sent an endpoint event that is not a URL") from None
        self.era, self.session_id = Era.SSE, None
        self._endpoint = endpoint
        self._pending: dict[Any, asyncio.Future] = {}
        self._progress: dict[Any, Notify] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read_sse(events, response))
        reply = await self._sse_request(
            "initialize",
            {"protocolVersion": HANDSHAKE_PROTOCOL_VERSIONS[0], "capabilities": {}, "clientInfo": CLIENT_INFO},
            timeout=timeout,
        )
        result = reply.get("result")
        if not isinstance(result, dict):
            raise self._fail("refused initialize over SSE")
        version = result.get("protocolVersion")
        self.protocol_version = version if isinstance(version, str) and version else HANDSHAKE_PROTOCOL_VERSIONS[0]
        self.capabilities = _object(result.get("capabilities"))
        self.server_info = _object(result.get("serverInfo"))
        await self._sse_send({"jsonrpc": "2.0", "method": "notifications/initialized"}, timeout)

    async def _read_sse(self, events, response: httpx2.Response) -> None:
        closed = self._fail("closed its SSE stream")
        try:
            async for event in events:
                if event.event != "message" or not event.data:
                    continue
                data = _json_object(event.data)
                if data is None:
                    # Nothing on this shared stream says whose it was: the call it was meant
                    # for, if any, ends with its timeout.
                    logger.warning("upstream %s sent an SSE event that is not a JSON object", self.config.slug)
                    continue
                message_id = data.get("id")
                if isinstance(message_id, str | int) and ("result" in data or "error" in data):
                    future = self._pending.pop(message_id, None)
                    if future is not None and not future.done():
                        future.set_result(data)
                elif "method" in data and isinstance(message_id, str | int):
                    # A request on the shared stream names no call of ours: refuse it, so
                    # the upstream does not wait for an answer that never comes.
                    self._in_background(self._server_request(data, None))
                elif data.get("method") == "notifications/progress":
                    token = _object(data.get("params")).get("progressToken")
                    notify = self._progress.get(token) if isinstance(token, str | int) else None
                    if notify is not None:
                        await notify(data)
        except httpx2.SSEError:
            closed = _too_large(self.config.slug, self.pool.settings.max_response_bytes)
        except (httpx2.HTTPError, asyncio.CancelledError):
            pass
        except Exception:
            logger.exception("reading the SSE stream of upstream %s failed", self.config.slug)
        finally:
            await response.aclose()
            # The stream is the connection: without it, start over on the next call.
            self.ready, self.era = False, None
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(closed)
            self._pending.clear()

    async def _sse_send(self, message: dict[str, Any], timeout: float) -> None:
        response = await self._send(
            "POST",
            self._endpoint,
            content=wire_json(message),
            headers={"content-type": "application/json", **dict(self.config.headers)},
            timeout=timeout,
        )
        try:
            # The answer comes on the stream; this body ("Accepted") is read only to keep
            # the connection, and never past the response limit.
            await _read_capped(response, self.pool.settings.max_response_bytes, self.config.slug)
        except httpx2.TimeoutException:
            raise self._timed_out() from None
        except httpx2.HTTPError as exc:
            raise self._fail(f"broke the connection ({type(exc).__name__})") from None
        finally:
            await response.aclose()
        if response.status_code >= 400:
            raise self._fail(f"refused a message (HTTP {response.status_code})")

    async def _sse_request(
        self, method: str, params: dict[str, Any] | None, *, timeout: float, notify: Notify | None = None
    ) -> dict[str, Any]:
        message_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": message_id, "method": method}
        if params:
            message["params"] = params
        future = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        token = _object(_object(params).get("_meta")).get("progressToken")
        if not isinstance(token, str | int):
            token = None
        if notify is not None and token is not None:
            self._progress[token] = notify
        try:
            await self._sse_send(message, timeout)
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise self._timed_out() from None
        finally:
            self._pending.pop(message_id, None)
            if token is not None:
                self._progress.pop(token, None)

    async def ensure_connected(self, timeout: float = 10.0) -> None:
        if self.ready:
            return
        async with self._lock:
            if not self.ready:
                await self._connect(timeout)
                self.ready = True

    # --- calls --------------------------------------------------------------------

    async def call(
        self,
        method: str,
        params: dict[str, Any] | None,
        *,
        workspace_id: int,
        workspace_slug: str,
        notify: Notify | None = None,
        on_request: OnRequest | None = None,
    ) -> dict[str, Any]:
        """A caller's request: it takes a slot of this upstream's and of the workspace's
        (``runtime.limits``; busy past MCPNEST_GATEWAY_QUEUE_SECONDS), waits at most the
        upstream's timeout, and returns the reply's result. Raises ``UpstreamError``
        (``UpstreamRefused`` for the upstream's own JSON-RPC error), nothing else."""
        limits = self.pool.limits
        try:
            held = await limits.acquire(workspace_id, workspace_slug, self.config, self.pool.settings)
        except Busy as exc:
            raise UpstreamError(str(exc), code=BUSY, status=BUSY_STATUS) from None
        try:
            reply = await self.request(method, params, timeout=self.timeout, notify=notify, on_request=on_request)
        finally:
            limits.release(held)
        return result_of(self.config.slug, reply)

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float = 30.0,
        notify: Notify | None = None,
        on_request: OnRequest | None = None,
    ) -> dict[str, Any]:
        """Send one request; return the upstream's JSON-RPC reply (``result`` or ``error``)."""
        await self.ensure_connected(min(timeout, 10.0))
        if self.era is Era.SSE:
            return await self._sse_request(method, params, timeout=timeout, notify=notify)
        for attempt in range(2):
            params_out = dict(params or {})
            if self.era is Era.MODERN:
                meta = dict(params_out.get("_meta") or {})
                meta.update(self._modern_meta())
                params_out["_meta"] = meta
            message = {"jsonrpc": "2.0", "id": next(self._ids), "method": method}
            if params_out:
                message["params"] = params_out
            stale_session = self.session_id
            try:
                status, reply, _ = await self._post(message, timeout=timeout, notify=notify, on_request=on_request)
            except asyncio.CancelledError:
                if self.era is Era.LEGACY:
                    # A 2025 upstream may go on working after its stream closes: tell it.
                    self._in_background(self.send({"method": "notifications/cancelled", "params": {
                        "requestId": message["id"], "reason": "The client cancelled the call."}}))  # fmt: skip
                raise
            if status == 404 and self.era is Era.LEGACY and attempt == 0:
                # The upstream forgot our session (restart): handshake again, once.
                async with self._lock:
                    if self.session_id == stale_session:
                        await self._initialize(min(timeout, 10.0))
                continue
            if reply is None:
                raise self._fail(f"answered HTTP {status} without a JSON-RPC reply")
            return reply
        raise self._fail("keeps losing its session")

    async def list_all(self, method: str, key: str, *, timeout: float) -> list[dict[str, Any]]:
        """Drain every page of a list method (tools/list, resources/list, …)."""
        items: list[dict[str, Any]] = []
        cursor = None
        for _ in range(100):  # a buggy paginator must not hang the gateway
            reply = await self.request(method, {"cursor": cursor} if cursor else None, timeout=timeout)
            try:
                result = result_of(self.config.slug, reply)
            except UpstreamRefused as exc:
                raise self._fail(f"{method} failed: {exc.client_message[:200]}") from None
            page = result.get(key, [])
            if not isinstance(page, list):
                raise self._fail(f"sent a malformed {method} result ({key} is {json_kind(page)}, not an array)")
            items.extend(item for item in page if isinstance(item, dict))
            cursor = result.get("nextCursor")
            if not cursor or not isinstance(cursor, str):
                break
        return items
