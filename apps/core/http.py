"""Small request helpers shared by the portal, the API and the gateway."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_address(remote_addr: str, forwarded_for: str) -> str | None:
    """The caller's IP: the peer's address, or the one our trusted proxies saw
    (``MCPNEST_TRUSTED_PROXY_COUNT`` hops back in ``X-Forwarded-For``)."""
    hops = settings.MCPNEST_TRUSTED_PROXY_COUNT
    if hops and forwarded_for:
        chain = [part.strip() for part in forwarded_for.split(",") if part.strip()]
        if len(chain) >= hops:
            return chain[-hops]
    return remote_addr or None


def client_ip(request: HttpRequest) -> str | None:
    return client_address(request.META.get("REMOTE_ADDR", ""), request.META.get("HTTP_X_FORWARDED_FOR", ""))
