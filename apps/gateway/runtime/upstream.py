"""Talking to upstream MCP servers: one pooled HTTP client, one MCP session per upstream.

The gateway speaks to each upstream in the era it speaks:

* the 2025 revisions: ``initialize`` once, reuse ``Mcp-Session-Id`` for every call,
  re-initialize when the upstream answers 404 (it forgot the session);
* 2026-07-28: stateless requests that carry ``_meta`` and the routing headers.

The era is settled once per upstream (a ``server/discover`` probe, as the SDK's ``auto``
mode does); no call opens a new connection or a new handshake. A member's token is never
sent upstream: only the server's own configured headers are.
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
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    PROTOCOL_VERSION_META_KEY,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION, MODERN_PROTOCOL_VERSIONS

from apps.gateway.runtime.http1 import UpstreamTransport

logger = logging.getLogger(__name__)

CLIENT_INFO = {"name": "mcpnest-gateway", "version": "1.0"}
NAME_BEARING = {"tools/call": "name", "resources/read": "uri", "prompts/get": "name"}

Notify = Callable[[dict[str, Any]], Awaitable[None]]


class UpstreamError(Exception):
    """The upstream could not be reached or answered outside the protocol."""

    def __init__(self, message: str, *, status: int = 502, timeout: bool = False):
        super().__init__(message)
        self.status = status
        self.timeout = timeout


@dataclass(frozen=True)
class UpstreamConfig:
    server_id: int
    slug: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> tuple:
        return (self.server_id, self.url, self.headers)


_clients: dict[int, httpx2.AsyncClient] = {}


def http_client() -> httpx2.AsyncClient:
    """The pooled client of the running event loop (clients cannot cross loops)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(id(loop))
    if client is None or client.is_closed:
        limits = httpx2.Limits(max_connections=200, max_keepalive_connections=100, keepalive_expiry=60)
        client = httpx2.AsyncClient(
            timeout=httpx2.Timeout(30.0, connect=5.0),
            limits=limits,
            # httpx2's default transport costs ~0.5 ms of CPU a call; see runtime.http1.
            transport=UpstreamTransport(limits=limits),
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

    async def _post(
        self, message: dict[str, Any], *, timeout: float, notify: Notify | None = None
    ) -> tuple[int, dict[str, Any] | None, httpx2.Headers]:
        """POST one message; return (HTTP status, the JSON-RPC reply or None, headers)."""
        client = http_client()
        body = json.dumps(message, separators=(",", ":"))
        try:
            request = client.build_request(
                "POST",
                self._url,
                content=body,
                headers=self._headers(message.get("method"), message.get("params")),
                timeout=timeout,
            )
            response = await client.send(request, stream=True)
        except httpx2.TimeoutException:
            raise UpstreamError(f"upstream {self.config.slug} timed out", status=504, timeout=True) from None
        except httpx2.HTTPError as exc:
            raise UpstreamError(f"upstream {self.config.slug} is unreachable ({type(exc).__name__})") from None
        try:
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type == "text/event-stream":
                reply = None
                async for event in httpx2.EventSource(response):
                    if not event.data:
                        continue  # priming event
                    data = json.loads(event.data)
                    if "id" in data and ("result" in data or "error" in data):
                        if data.get("id") == message.get("id"):
                            reply = data
                            break
                    elif notify is not None and "method" in data and "id" not in data:
                        await notify(data)
                return response.status_code, reply, response.headers
            raw = await response.aread()
            if content_type == "application/json" and raw:
                try:
                    data = json.loads(raw)
                except ValueError:
                    raise UpstreamError(f"upstream {self.config.slug} sent invalid JSON") from None
                return response.status_code, data if isinstance(data, dict) else None, response.headers
            return response.status_code, None, response.headers
        except httpx2.TimeoutException:
            raise UpstreamError(f"upstream {self.config.slug} timed out", status=504, timeout=True) from None
        except httpx2.HTTPError as exc:
            raise UpstreamError(f"upstream {self.config.slug} broke the connection ({type(exc).__name__})") from None
        finally:
            await response.aclose()

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
            versions = [v for v in MODERN_PROTOCOL_VERSIONS if v in (result.get("supportedVersions") or [])]
            if versions:
                self.protocol_version = versions[-1]
                self.capabilities = result.get("capabilities") or {}
                self.server_info = (result.get("_meta") or {}).get("io.modelcontextprotocol/serverInfo") or {}
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
            detail = (reply or {}).get("error", {}).get("message") if reply else f"HTTP {status}"
            raise UpstreamError(f"upstream {self.config.slug} refused initialize: {detail}")
        version = result.get("protocolVersion")
        self.protocol_version = version if version in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION
        self.session_id = headers.get("mcp-session-id")
        self.capabilities = result.get("capabilities") or {}
        self.server_info = result.get("serverInfo") or {}
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
        except httpx2.HTTPError as exc:
            raise UpstreamError(f"upstream {self.config.slug} is unreachable ({type(exc).__name__})") from None
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if response.status_code != 200 or content_type != "text/event-stream":
            await response.aclose()
            self.era = None
            raise UpstreamError(
                f"upstream {self.config.slug} speaks neither Streamable HTTP nor HTTP+SSE "
                f"(GET answered {response.status_code} {content_type or 'without a content type'})"
            )
        events = aiter(httpx2.EventSource(response))
        try:
            first = await asyncio.wait_for(anext(events), timeout)
        except (TimeoutError, StopAsyncIteration, httpx2.HTTPError):
            await response.aclose()
            self.era = None
            raise UpstreamError(f"upstream {self.config.slug} sent no endpoint event on its SSE stream") from None
        if first.event != "endpoint" or not first.data:
            await response.aclose()
            self.era = None
            raise UpstreamError(f"upstream {self.config.slug} opened its SSE stream without an endpoint event")
        self.era, self.session_id = "sse", None
        self._endpoint = self._url.join(first.data.strip())
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
            raise UpstreamError(f"upstream {self.config.slug} refused initialize over SSE")
        self.protocol_version = result.get("protocolVersion") or HANDSHAKE_PROTOCOL_VERSIONS[0]
        self.capabilities = result.get("capabilities") or {}
        self.server_info = result.get("serverInfo") or {}
        await self._sse_send({"jsonrpc": "2.0", "method": "notifications/initialized"}, timeout)

    async def _read_sse(self, events, response: httpx2.Response) -> None:
        try:
            async for event in events:
                if event.event != "message" or not event.data:
                    continue
                try:
                    data = json.loads(event.data)
                except ValueError:
                    continue
                if "id" in data and ("result" in data or "error" in data):
                    future = self._pending.pop(data["id"], None)
                    if future is not None and not future.done():
                        future.set_result(data)
                elif data.get("method") == "notifications/progress":
                    notify = self._progress.get((data.get("params") or {}).get("progressToken"))
                    if notify is not None:
                        await notify(data)
        except (httpx2.HTTPError, asyncio.CancelledError):
            pass
        finally:
            await response.aclose()
            # The stream is the connection: without it, start over on the next call.
            self.ready, self.era = False, None
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(UpstreamError(f"upstream {self.config.slug} closed its SSE stream"))
            self._pending.clear()

    async def _sse_send(self, message: dict[str, Any], timeout: float) -> None:
        client = http_client()
        try:
            response = await client.post(
                self._endpoint,
                content=json.dumps(message, separators=(",", ":")),
                headers={"content-type": "application/json", **dict(self.config.headers)},
                timeout=timeout,
            )
        except httpx2.TimeoutException:
            raise UpstreamError(f"upstream {self.config.slug} timed out", status=504, timeout=True) from None
        except httpx2.HTTPError as exc:
            raise UpstreamError(f"upstream {self.config.slug} is unreachable ({type(exc).__name__})") from None
        if response.status_code >= 400:
            raise UpstreamError(f"upstream {self.config.slug} refused a message (HTTP {response.status_code})")

    async def _sse_request(
        self, method: str, params: dict[str, Any] | None, *, timeout: float, notify: Notify | None = None
    ) -> dict[str, Any]:
        message_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": message_id, "method": method}
        if params:
            message["params"] = params
        future = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        token = ((params or {}).get("_meta") or {}).get("progressToken") if isinstance(params, dict) else None
        if notify is not None and token is not None:
            self._progress[token] = notify
        try:
            await self._sse_send(message, timeout)
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise UpstreamError(f"upstream {self.config.slug} timed out", status=504, timeout=True) from None
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
                raise UpstreamError(f"upstream {self.config.slug} answered HTTP {status} without a JSON-RPC reply")
            return reply
        raise UpstreamError(f"upstream {self.config.slug} keeps losing its session")

    async def list_all(self, method: str, key: str, *, timeout: float) -> list[dict[str, Any]]:
        """Drain every page of a list method (tools/list, resources/list, …)."""
        items: list[dict[str, Any]] = []
        cursor = None
        for _ in range(100):  # a buggy paginator must not hang the gateway
            reply = await self.request(method, {"cursor": cursor} if cursor else None, timeout=timeout)
            if "error" in reply:
                raise UpstreamError(f"upstream {self.config.slug} {method} failed: {reply['error'].get('message')}")
            result = reply.get("result") or {}
            items.extend(item for item in result.get(key, []) if isinstance(item, dict))
            cursor = result.get("nextCursor")
            if not cursor:
                break
        return items


_upstreams: dict[tuple, Upstream] = {}


def upstream_for(config: UpstreamConfig) -> Upstream:
    """The process-wide connection state for an upstream (new when its URL or headers change)."""
    loop_key = (id(asyncio.get_running_loop()), *config.key)
    upstream = _upstreams.get(loop_key)
    if upstream is None:
        upstream = _upstreams[loop_key] = Upstream(config=config)
    return upstream
