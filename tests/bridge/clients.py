"""The official SDK client, pointed at a bridge's /mcp."""

from __future__ import annotations

from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def sdk_client(url: str, *, mode: str = "legacy", **callbacks: Any) -> Client:
    http = httpx2.AsyncClient(timeout=30)
    return Client(streamable_http_client(url, http_client=http), mode=mode, **callbacks)


def text_of(result: Any) -> str:
    return result.content[0].text
