"""A stdio MCP server for the bridge's tests, written with the official SDK.

With ``START_DELAY=seconds`` it is slow to start; with ``REQUIRE_ENV=NAME`` it refuses to
start when ``NAME`` is empty, the way servers that need credentials do; with
``CRASH_AFTER=seconds`` it dies that long after starting.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

import mcp_types as types
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from pydantic import BaseModel

server = MCPServer("bridge-fixture", version="1.0")


class Colour(BaseModel):
    colour: str


@server.tool()
def echo(text: str) -> str:
    """Return the text."""
    return text


@server.tool()
async def sleep(ms: int, tag: str = "") -> str:
    """Sleep ``ms`` milliseconds, then return the tag."""
    await asyncio.sleep(ms / 1000)
    return tag or f"slept {ms}"


@server.tool()
async def progress(steps: int, ctx: Context) -> str:
    """Report ``steps`` progress notifications, then finish."""
    for step in range(1, steps + 1):
        await ctx.report_progress(step, steps, f"step {step}")
        await asyncio.sleep(0.01)
    return f"done {steps}"


@server.tool()
async def sample(prompt: str, ctx: Context) -> str:
    """Ask the client's model (sampling) and return its answer."""
    result = await ctx.session.create_message(
        [types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))], max_tokens=50
    )
    return f"model said: {result.content.text}"


@server.tool()
async def ask_colour(ctx: Context) -> str:
    """Ask the user for a colour (elicitation)."""
    answer = await ctx.elicit("Which colour?", Colour)
    return f"{answer.action}: {answer.data.colour if answer.data else '-'}"


def main() -> None:
    time.sleep(float(os.environ.get("START_DELAY", "0")))
    required = os.environ.get("REQUIRE_ENV")
    if required and not os.environ.get(required, "").strip():
        print(f"error: {required} is not set", file=sys.stderr, flush=True)
        sys.exit(1)
    crash_after = float(os.environ.get("CRASH_AFTER", "0"))
    if crash_after:
        threading.Timer(crash_after, os._exit, args=(5,)).start()
    print("bridge-fixture starting", file=sys.stderr, flush=True)
    server.run()


if __name__ == "__main__":
    main()
