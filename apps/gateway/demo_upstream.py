"""The demo's upstream: a small real MCP server (the official ``mcp`` SDK, Streamable HTTP)
that ``make run`` starts on 127.0.0.1 next to the portal, so the demo token lists and calls
real tools through the gateway. Not for production: it exists to show the product."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

from mcp.server import MCPServer

HOST = "127.0.0.1"
PORT = int(os.environ.get("MCPNEST_DEMO_UPSTREAM_PORT", "8765"))
SLUG = "tools"
TOOLS = ("echo", "add", "word_count", "utc_now")


def url() -> str:
    return f"http://{HOST}:{PORT}/mcp"


def build() -> MCPServer:
    server = MCPServer("mcpnest-demo-tools", version="1.0")

    @server.tool(description="Echo the text back.")
    def echo(text: str) -> str:
        return text

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool(description="Count the words in a text.")
    def word_count(text: str) -> int:
        return len(re.findall(r"\w+", text))

    @server.tool(description="The current time in UTC (ISO 8601).")
    def utc_now() -> str:
        return datetime.now(UTC).isoformat(timespec="seconds")

    return server


def serve(port: int = PORT) -> None:
    import uvicorn

    app = build().streamable_http_app()
    uvicorn.run(app, host=HOST, port=port, log_level="warning")
