"""Start an MCP server over stdio, list its tools, and call a tool it does not have.

Run by ``apps.configtools.generator.check`` as a separate process (inside its sandbox),
never imported by Django: ``python lister.py <seconds> <command> [args…]``. It prints one JSON object,
``{"tools": [...], "unknown_tool": "<how the server answered>"}``, and exits 0; on any failure
it prints the error to stderr and exits 1. The server's stderr goes to our stderr.
"""

from __future__ import annotations

import json
import sys

import anyio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

UNKNOWN = "mcpnest_check_no_such_tool"


async def main(seconds: float, command: str, args: list[str]) -> dict:
    params = StdioServerParameters(command=command, args=args)
    with anyio.fail_after(seconds):
        return await _ask(params)


async def _ask(params: StdioServerParameters) -> dict:
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        listed = await session.list_tools()
        tools = [
            {"name": tool.name, "description": tool.description or "", "inputSchema": tool.input_schema}
            for tool in listed.tools
        ]
        try:
            answer = await session.call_tool(UNKNOWN, {})
        except MCPError as exc:  # a JSON-RPC error: what the spec asks for
            unknown = f"error {exc.error.code}: {exc.error.message}"
        else:
            if not answer.is_error:
                raise RuntimeError(f"calling an unknown tool ({UNKNOWN}) did not fail")
            unknown = "tool error: " + " ".join(getattr(block, "text", "") for block in answer.content)
    return {"tools": tools, "unknown_tool": unknown}


if __name__ == "__main__":
    try:
        result = anyio.run(main, float(sys.argv[1]), sys.argv[2], sys.argv[3:])
    except TimeoutError:
        print(f"No answer to initialize and tools/list within {sys.argv[1]} seconds.", file=sys.stderr)
        sys.exit(1)
    except BaseException as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result))
