"""Talking to upstream MCP servers: one pooled HTTP client, one MCP session per upstream.

The gateway speaks to each upstream in the era it speaks:

* the 2025 revisions: ``initialize`` once, reuse ``Mcp-Session-Id`` for every call,
  re-initialize when the upstream answers 404 (it forgot the session);
* 2026-07-28: stateless requests that carry ``_meta`` and the routing headers.

The era is settled once per upstream (a ``server/discover`` probe, as the SDK's ``auto``
mode does); no call opens a new connection or a new handshake. A member's token is never
sent upstream: only the server's own configured headers are.

Whatever an upstream sends, a call ends in a result or an ``UpstreamError``: JSON that is
not JSON-RPC, error objects of the wrong shape, streams that end without the reply and
answers over MCPNEST_GATEWAY_MAX_RESPONSE_BYTES (reading stops there and the connection
is closed) are all refusals that name the upstream, never an exception of another kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
from django.conf import settings
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    PROTOCOL_VERSION_META_KEY,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION, MODERN_PROTOCOL_VERSIONS

from apps.gateway.runtime.http1 import UpstreamTransport
from apps.gateway.runtime.limits import BUSY, BUSY_STATUS, Busy, call_limits

logger = logging.getLogger(__name__)

CLIENT_INFO = {"name": "mcpnest-gateway", "version": "1.0"}
NAME_BEARING = {"tools/call": "name", "resources/read": "uri", "prompts/get": "name"}
# Requests in flight to all upstreams from one process. Far above the per-workspace and
# per-upstream limits (runtime.limits), so those are what a busy tenant runs into.
MAX_CONNECTIONS = 2000

UPSTREAM_ERROR = -32000  # the gateway's JSON-RPC code for "the upstream failed"
INT32 = range(-(2**31), 2**31)  # JSON-RPC codes are integers; clients hold them in 32 bits

Notify = Callable[[dict[str, Any]], Awaitable[None]]


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


def _kind(value: Any) -> str:
    """A JSON value's type, for messages about malformed replies."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _refusal(slug: str, error: Any) -> UpstreamError:
    """What to tell the caller for an upstream's ``error`` member."""
    if not isinstance(error, dict):
        return failure(slug, f"sent a malformed error ({_kind(error)}, not an error object)")
    if "code" not in error:
        return failure(slug, "sent a malformed error (no code)")
    code, message = error["code"], error.get("message")
    if not isinstance(code, int) or isinstance(code, bool):
        return failure(slug, f"sent a malformed error (code {_short(code)})")
    if not isinstance(message, str):
        return failure(slug, f"sent a malformed error (code {code} with {_kind(message)} as its message)")
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
        raise failure(slug, f"sent a malformed result ({_kind(result)}, not an object)")
    if not isinstance(result.get("_meta", {}), dict):
        raise failure(slug, "sent a malformed result (its _meta is not an object)")
    return result


def _json_object(text: str | bytes) -> dict[str, Any] | None:
    """The JSON object in ``text``, or None for anything else (invalid JSON, an array, too deep)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


async def _read_capped(response: httpx2.Response, limit: int, slug: str) -> bytes:
    """The whole body, refused (and left unread, so its connection is closed) past ``limit``."""
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise _too_large(slug, limit)
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():  # decoded: a compressed body counts as it expands
        size += len(chunk)
        if size > limit:
            raise _too_large(slug, limit)
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class UpstreamConfig:
    """How to reach one upstream server, and how much of the gateway one caller's call may use.

    ``timeout_seconds`` and ``max_concurrency`` are the server's own settings; None means
    the process-wide defaults (MCPNEST_GATEWAY_UPSTREAM_TIMEOUT and
    MCPNEST_GATEWAY_UPSTREAM_CONCURRENCY), read when used so a settings change applies.
    """

    server_id: int
    slug: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    timeout_seconds: float | None = None
    max_concurrency: int | None = None

    @property
    def key(self) -> tuple:
        # What identifies the connection: a new timeout or limit reuses the session.
        return (self.server_id, self.url, self.headers)

    @property
    def timeout(self) -> float:
        """Seconds a call may wait on this upstream (to connect, or for each read)."""
        return self.timeout_seconds or settings.MCPNEST_GATEWAY_UPSTREAM_TIMEOUT


_clients: dict[int, httpx2.AsyncClient] = {}


def http_client() -> httpx2.AsyncClient:
    """The pooled client of the running event loop (clients cannot cross loops)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(id(loop))
    if client is None or client.is_closed:
        limits = httpx2.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=100, keepalive_expiry=60)
        client = httpx2.AsyncClient(
            timeout=httpx2.Timeout(30.0, connect=5.0),
            limits=limits,
            # httpx2's default transport costs ~0.5 ms of CPU a call; see runtime.http1.
            # Waiting for a free connection is bounded like waiting for a tenant's slot.
            transport=UpstreamTransport(limits=limits, pool_timeout=settings.MCPNEST_GATEWAY_QUEUE_SECONDS),
            follow_redirects=False,
        )
        _clients[id(loop)] = client
    return client


@contextlib.asynccontextmanager
async def isolated() -> AsyncIterator[None]:
    """For one-off work on a loop of its own (approving a server, the portal's tool picker):
    on exit, close that loop's HTTP client and forget its upstream sessions, so nothing is
    left behind and the gateway's own pooled connections are never touched."""
    loop_id = id(asyncio.get_running_loop())
    try:
        yield
    finally:
        client = _clients.pop(loop_id, None)
        if client is not None:
            await client.aclose()
        for key in [key for key in _upstreams if key[0] == loop_id]:
            reader = getattr(_upstreams.pop(key), "_reader", None)
            if reader is not None:
                reader.cancel()


@dataclass
class Upstream:
    """One upstream server's connection state inside this gateway process."""

    config: UpstreamConfig
    era: str | None = None  # "legacy" | "modern"
    ready: bool = False  # the era is settled (and, for legacy, the session open)
    protocol_version: str = LATEST_HANDSHAKE_VERSION
    session_id: str | None = None
    server_info: dict[str, Any] = field(default_factory=dict)
    capabilities: dict[str, Any] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    # --- wire ---------------------------------------------------------------

    @functools.cached_property
    def _url(self) -> httpx2.URL:
        return httpx2.URL(self.config.url)  # parsed once, not on every call

    def _fail(self, detail: str, **kwargs: Any) -> UpstreamError:
        return failure(self.config.slug, detail, **kwargs)

    def _timed_out(self) -> UpstreamError:
        return self._fail("timed out", status=504, timeout=True)

    def _pool_busy(self, exc: httpx2.PoolTimeout) -> UpstreamError:
        return self._fail(
            f"was not called: {exc}, and none freed within MCPNEST_GATEWAY_QUEUE_SECONDS; retry later",
            code=BUSY,
            status=BUSY_STATUS,
        )

    def _headers(self, method: str | None, params: dict | None) -> dict[str, str]:
        headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        headers.update(self.config.headers)
        if self.era == "modern":
            headers["mcp-protocol-version"] = self.protocol_version
            if method:
                headers["mcp-method"] = method
                name_key = NAME_BEARING.get(method)
                if name_key and params and isinstance(params.get(name_key), str):
                    headers["mcp-name"] = params[name_key]
        elif self.era == "legacy":
            headers["mcp-protocol-version"] = self.protocol_version
            if self.session_id:
                headers["mcp-session-id"] = self.session_id
        return headers

    async def _send(self, method: str, url: httpx2.URL, **options: Any) -> httpx2.Response:
        """Send one request and return the streaming response; transport failures become
        UpstreamErrors that name this upstream."""
        client = http_client()
        try:
            return await client.send(client.build_request(method, url, **options), stream=True)
        except httpx2.PoolTimeout as exc:
            raise self._pool_busy(exc) from None
        except httpx2.TimeoutException:
            raise self._timed_out() from None
        except httpx2.HTTPError as exc:
            raise self._fail(f"is unreachable ({type(exc).__name__})") from None

    async def _post(
        self, message: dict[str, Any], *, timeout: float, notify: Notify | None = None
    ) -> tuple[int, dict[str, Any] | None, httpx2.Headers]:
        """POST one message; return (HTTP status, the JSON-RPC reply or None, headers)."""
        response = await self._send(
            "POST",
            self._url,
            content=json.dumps(message, separators=(",", ":")),
            headers=self._headers(message.get("method"), message.get("params")),
            timeout=timeout,
        )
        limit = settings.MCPNEST_GATEWAY_MAX_RESPONSE_BYTES
        try:
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type == "text/event-stream":
                reply = None
                received = 0  # the data of every event of this call, replies and notifications alike
                async for event in httpx2.EventSource(response, max_event_size=limit):
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
                    elif notify is not None and "method" in data and "id" not in data:
                        await notify(data)
                if reply is None and "id" in message and response.status_code < 300:
                    raise self._fail(f"ended its event stream without answering (HTTP {response.status_code})")
                return response.status_code, reply, response.headers
            raw = await _read_capped(response, limit, self.config.slug)
            if content_type == "application/json" and raw:
                data = _json_object(raw)
                if data is None and "id" in message and response.status_code < 300:
                    raise self._fail("sent a body that is not a JSON-RPC message (invalid JSON, or not an object)")
                return response.status_code, data, response.headers
            return response.status_code, None, response.headers
        except httpx2.SSEError:  # one event over the limit (the only SSEError once the type is checked)
            raise _too_large(self.config.slug, limit) from None
        except httpx2.TimeoutException:
            raise self._timed_out() from None
        except httpx2.HTTPError as exc:
            raise self._fail(f"broke the connection ({type(exc).__name__})") from None
        finally:
            await response.aclose()  # unread data left: the connection is closed, not reused

    # --- era and session ------------------------------------------------------

    def _modern_meta(self) -> dict[str, Any]:
        return {
            PROTOCOL_VERSION_META_KEY: self.protocol_version,
            CLIENT_CAPABILITIES_META_KEY: {},
            CLIENT_INFO_META_KEY: CLIENT_INFO,
        }

    async def _connect(self, timeout: float) -> None:
        # Probe the modern era first; anything but a usable discover result means legacy.
        self.era, self.session_id = "modern", None
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
        self.era, self.session_id = "legacy", None
        self.protocol_version = LATEST_HANDSHAKE_VERSION
        message = {
            "jsonrpc": "2.0",
            "id": next(self._ids),
            "method": "initialize",
            "params": {"protocolVersion": LATEST_HANDSHAKE_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO},
        }
        self.era = None  # no version/session headers on initialize
        try:
            status, reply, headers = await self._post(message, timeout=timeout)
        finally:
            self.era = "legacy"
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
        session_id = headers.get("mcp-session-id")
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
        client = http_client()
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
        events = aiter(httpx2.EventSource(response, max_event_size=settings.MCPNEST_GATEWAY_MAX_RESPONSE_BYTES))
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
        self.era, self.session_id = "sse", None
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
                elif data.get("method") == "notifications/progress":
                    token = _object(data.get("params")).get("progressToken")
                    notify = self._progress.get(token) if isinstance(token, str | int) else None
                    if notify is not None:
                        await notify(data)
        except httpx2.SSEError:
            closed = _too_large(self.config.slug, settings.MCPNEST_GATEWAY_MAX_RESPONSE_BYTES)
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
            content=json.dumps(message, separators=(",", ":")),
            headers={"content-type": "application/json", **dict(self.config.headers)},
            timeout=timeout,
        )
        try:
            # The answer comes on the stream; this body ("Accepted") is read only to keep
            # the connection, and never past the response limit.
            await _read_capped(response, settings.MCPNEST_GATEWAY_MAX_RESPONSE_BYTES, self.config.slug)
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
    ) -> dict[str, Any]:
        """A caller's request: it takes a slot of this upstream's and of the workspace's
        (``runtime.limits``; busy past MCPNEST_GATEWAY_QUEUE_SECONDS), waits at most the
        upstream's timeout, and returns the reply's result. Raises ``UpstreamError``
        (``UpstreamRefused`` for the upstream's own JSON-RPC error), nothing else."""
        limits = call_limits()
        try:
            held = await limits.acquire(workspace_id, workspace_slug, self.config)
        except Busy as exc:
            raise UpstreamError(str(exc), code=BUSY, status=BUSY_STATUS) from None
        try:
            reply = await self.request(method, params, timeout=self.config.timeout, notify=notify)
        finally:
            limits.release(held)
        return result_of(self.config.slug, reply)

    async def request(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float = 30.0, notify: Notify | None = None
    ) -> dict[str, Any]:
        """Send one request; return the upstream's JSON-RPC reply (``result`` or ``error``)."""
        await self.ensure_connected(min(timeout, 10.0))
        if self.era == "sse":
            return await self._sse_request(method, params, timeout=timeout, notify=notify)
        for attempt in range(2):
            params_out = dict(params or {})
            if self.era == "modern":
                meta = dict(params_out.get("_meta") or {})
                meta.update(self._modern_meta())
                params_out["_meta"] = meta
            message = {"jsonrpc": "2.0", "id": next(self._ids), "method": method}
            if params_out:
                message["params"] = params_out
            stale_session = self.session_id
            status, reply, _ = await self._post(message, timeout=timeout, notify=notify)
            if status == 404 and self.era == "legacy" and attempt == 0:
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
                raise self._fail(f"sent a malformed {method} result ({key} is {_kind(page)}, not an array)")
            items.extend(item for item in page if isinstance(item, dict))
            cursor = result.get("nextCursor")
            if not cursor or not isinstance(cursor, str):
                break
        return items


_upstreams: dict[tuple, Upstream] = {}


def upstream_for(config: UpstreamConfig) -> Upstream:
    """The process-wide connection state for an upstream (new when its URL or headers change)."""
    loop_key = (id(asyncio.get_running_loop()), *config.key)
    upstream = _upstreams.get(loop_key)
    if upstream is None:
        upstream = _upstreams[loop_key] = Upstream(config=config)
    elif upstream.config is not config:
        upstream.config = config  # same connection; its timeout or limit may have changed
    return upstream
