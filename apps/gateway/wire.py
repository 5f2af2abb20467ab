"""The gateway's HTTP request and reply: plain objects built from, and sent as, ASGI messages.

The gateway serves every request of ``/api/gw/<slug>`` itself (``apps.gateway.asgi``), not
through Django's handler: building an ``HttpRequest`` (its ``META``, a spooled body file,
URL resolving) and turning an ``HttpResponse`` back into ASGI messages was a fifth of the
gateway's CPU per call, and the gateway uses none of what they offer (sessions, cookies,
middleware, forms). What it does need of Django's request is here, with Django's rules:
the host checked against ``ALLOWED_HOSTS`` (``USE_X_FORWARDED_HOST`` honoured), the
scheme behind a TLS proxy (``SECURE_PROXY_SSL_HEADER``), and the client's address
(``apps.core.http.client_address``).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from apps.core.http import client_address
from relay.codec import wire_json

# Django's own defaults for ALLOWED_HOSTS = [] under DEBUG.
DEBUG_HOSTS = [".localhost", "127.0.0.1", "[::1]"]


@functools.lru_cache(maxsize=256)  # a client sends the same Host with every request
def _host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    domain, _ = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed)


@dataclass(slots=True)
class Request:
    method: str
    # Header names in lower case; a repeated header's values joined by "," (as Django's
    # META joins them). ``raw_headers`` keeps each line, for the checks that count them.
    headers: dict[str, str]
    raw_headers: list[tuple[bytes, bytes]]
    query_string: bytes
    body: bytes
    scheme: str  # as the ASGI server saw it (see ``secure_scheme``)
    remote_addr: str
    server: tuple[str, int] | None

    @classmethod
    def from_scope(cls, scope: dict[str, Any], body: bytes) -> Request:
        raw_headers = scope.get("headers") or []
        headers: dict[str, str] = {}
        for name, value in raw_headers:
            # Whitespace around a value is not part of it (RFC 9110 §5.5); httptools keeps it.
            key, text = name.decode("latin-1").lower(), value.decode("latin-1").strip(" \t")
            headers[key] = f"{headers[key]},{text}" if key in headers else text
        client = scope.get("client")
        server = scope.get("server")
        return cls(
            method=scope["method"],
            headers=headers,
            raw_headers=list(raw_headers),
            query_string=scope.get("query_string") or b"",
            body=body,
            scheme=scope.get("scheme") or "http",
            remote_addr=client[0] if client else "",
            server=(server[0], server[1]) if server and server[1] is not None else None,
        )

    def host(self) -> str | None:
        """The request's host (``host[:port]``) if ``ALLOWED_HOSTS`` allows it, else None:
        Django's ``HttpRequest.get_host()`` rules, without the exception."""
        if settings.USE_X_FORWARDED_HOST and "x-forwarded-host" in self.headers:
            host = self.headers["x-forwarded-host"]
        elif "host" in self.headers:
            host = self.headers["host"]
        elif self.server is not None:
            name, port = self.server
            host = name if port == (443 if self.secure_scheme() == "https" else 80) else f"{name}:{port}"
        else:
            return None
        allowed = settings.ALLOWED_HOSTS
        if settings.DEBUG and not allowed:
            allowed = DEBUG_HOSTS
        return host if _host_allowed(host, tuple(allowed)) else None

    def secure_scheme(self) -> str:
        """The scheme the client used: behind a TLS proxy, what ``SECURE_PROXY_SSL_HEADER`` says."""
        proxy_header = settings.SECURE_PROXY_SSL_HEADER
        if proxy_header:
            meta_name, secure_value = proxy_header
            value = self.headers.get(meta_name.removeprefix("HTTP_").replace("_", "-").lower())
            if value is not None:
                return "https" if value.split(",", 1)[0].strip() == secure_value else "http"
        return self.scheme

    def client_ip(self) -> str:
        return client_address(self.remote_addr, self.headers.get("x-forwarded-for", "")) or ""

    def query_has(self, name: str) -> bool:
        return bool(self.query_string) and name in parse_qs(self.query_string.decode("latin-1"), keep_blank_values=True)


@dataclass(slots=True)
class Reply:
    """An answer: a whole body, or (``stream``) a body sent as it is produced (SSE)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = "application/json"
    stream: AsyncIterator[bytes] | None = None

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
        return cls(status, wire_json(value), headers or {})

    def text(self) -> str:
        return self.body.decode()

    def asgi_headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in self.headers.items()]
        if self.content_type is not None:
            headers.append((b"content-type", self.content_type.encode("latin-1")))
        if self.stream is None and self.status not in (204, 304):
            headers.append((b"content-length", str(len(self.body)).encode()))
        return headers

    async def send(self, send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.asgi_headers()})
        if self.stream is None:
            await send({"type": "http.response.body", "body": self.body})
            return
        stream = self.stream
        try:
            async for part in stream:
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await stream.aclose()  # its ``finally`` (closing the session's queue) runs now
