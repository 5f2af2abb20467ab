"""The bridge over the real npm ``@modelcontextprotocol/server-everything`` (stdio)."""

from __future__ import annotations

import asyncio

import mcp_types as types
import pytest

from tests.bridge.clients import sdk_client, text_of
from tests.bridge.conftest import EVERYTHING, NODE

if not (NODE.exists() and EVERYTHING.exists()):
    reason = f"server-everything is not installed ({EVERYTHING}; npm install in tests/interop)"
    print(f"skipping tests/bridge/test_everything.py: {reason}")
    pytest.skip(reason, allow_module_level=True)

CALL_TIMEOUT = 30


@pytest.fixture(scope="module")
def everything_bridge():
    from tests.bridge.conftest import launch

    bridge = launch(f"{NODE} {EVERYTHING} stdio")
    bridge.wait_ready(timeout=30)
    yield bridge
    bridge.stop()


async def test_tools_are_listed_and_concurrent_calls_answered_in_kind(everything_bridge):
    async with sdk_client(everything_bridge.mcp) as alice:
        names = {tool.name for tool in (await alice.list_tools()).tools}
        assert {"echo", "get-sum", "trigger-long-running-operation"} <= names
        sums = await asyncio.wait_for(
            asyncio.gather(*(alice.call_tool("get-sum", {"a": i, "b": 1000}) for i in range(50))), CALL_TIMEOUT
        )
        assert [text_of(r).split()[-1].rstrip(".") for r in sums] == [str(i + 1000) for i in range(50)]


async def test_progress_and_sampling_pass_through(everything_bridge):
    progress: list[float] = []

    async def record(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async def sampling(context, params) -> types.CreateMessageResult:
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="sampled!"), model="carol-llm"
        )

    async with sdk_client(everything_bridge.mcp, sampling_callback=sampling) as carol:
        done = await asyncio.wait_for(
            carol.call_tool("trigger-long-running-operation", {"duration": 0.3, "steps": 3}, progress_callback=record),
            CALL_TIMEOUT,
        )
        assert "completed" in text_of(done)
        assert progress == [1, 2, 3]
        sampled = await asyncio.wait_for(
            carol.call_tool("trigger-sampling-request", {"prompt": "hi", "maxTokens": 10}), CALL_TIMEOUT
        )
        assert "sampled!" in str(sampled.content)


async def test_what_the_server_sends_unprompted_reaches_open_get_streams(everything_bridge):
    logged: asyncio.Queue = asyncio.Queue()

    async def on_log(params) -> None:
        await logged.put(params)

    async with sdk_client(everything_bridge.mcp, logging_callback=on_log) as alice:
        await alice.call_tool("toggle-simulated-logging", {})
        try:
            message = await asyncio.wait_for(logged.get(), CALL_TIMEOUT)
        finally:
            await alice.call_tool("toggle-simulated-logging", {})
    assert message.level
