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
            del _upstreams[key]


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
