"""The bridge over a stdio server written with the official SDK, driven by the SDK's client.

The cast: ``alice`` and ``bob`` are clients that call tools at the same time; ``carol``
answers sampling and elicitation requests; ``dave`` declares no capabilities at all.
"""

from __future__ import annotations

import asyncio
import random
import time

import httpx2
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from bridge.settings import Settings
from tests.bridge.clients import sdk_client, text_of
from tests.bridge.conftest import PYTHON_SERVER

CALL_TIMEOUT = 20  # no test may hang: a call that takes longer than this is a failure


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_client_lists_and_calls_tools(python_bridge, mode):
    async with sdk_client(python_bridge.mcp, mode=mode) as alice:
        tools = await alice.list_tools()
        assert {t.name for t in tools.tools} >= {"echo", "sleep", "progress", "sample", "ask_colour"}
        result = await alice.call_tool("echo", {"text": "hello"})
        assert text_of(result) == "hello"
        assert not result.is_error


async def test_concurrent_calls_each_get_their_own_answer(python_bridge):
    # Fifty calls at once from two sessions, finishing in a shuffled order.
    async with sdk_client(python_bridge.mcp) as alice, sdk_client(python_bridge.mcp) as bob:
        delays = random.Random(9).sample(range(0, 200, 4), 50)

        async def call(i: int) -> str:
            client = alice if i % 2 else bob
            result = await client.call_tool("sleep", {"ms": delays[i], "tag": f"call-{i}"})
            return text_of(result)

        started = time.monotonic()
        answers = await asyncio.wait_for(asyncio.gather(*(call(i) for i in range(50))), CALL_TIMEOUT)
        elapsed = time.monotonic() - started
    assert answers == [f"call-{i}" for i in range(50)]
    assert elapsed < 2.0, f"the calls were not run concurrently ({elapsed:.2f} s)"


async def test_progress_reaches_the_caller_that_asked(python_bridge):
    seen: dict[str, list[tuple[float, float | None, str | None]]] = {"alice": [], "bob": []}

    def recorder(name: str):
        async def record(progress: float, total: float | None, message: str | None) -> None:
            seen[name].append((progress, total, message))

        return record

    async with sdk_client(python_bridge.mcp) as alice, sdk_client(python_bridge.mcp) as bob:
        results = await asyncio.wait_for(
            asyncio.gather(
                alice.call_tool("progress", {"steps": 3}, progress_callback=recorder("alice")),
                bob.call_tool("progress", {"steps": 5}, progress_callback=recorder("bob")),
            ),
            CALL_TIMEOUT,
        )
    assert [text_of(r) for r in results] == ["done 3", "done 5"]
    assert seen["alice"] == [(i, 3, f"step {i}") for i in (1, 2, 3)]
    assert seen["bob"] == [(i, 5, f"step {i}") for i in (1, 2, 3, 4, 5)]


async def test_sampling_and_elicitation_reach_the_calling_client(python_bridge):
    asked: list[str] = []

    async def sampling(context, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append(params.messages[0].content.text)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="forty-two"), model="carol-llm"
        )

    async def elicitation(context, params) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"colour": "teal"})

    async with sdk_client(python_bridge.mcp, sampling_callback=sampling, elicitation_callback=elicitation) as carol:
        sampled = await asyncio.wait_for(carol.call_tool("sample", {"prompt": "the answer?"}), CALL_TIMEOUT)
        elicited = await asyncio.wait_for(carol.call_tool("ask_colour", {}), CALL_TIMEOUT)
    assert text_of(sampled) == "model said: forty-two"
    assert text_of(elicited) == "accept: teal"
    assert asked == ["the answer?", "Which colour?"]


async def test_a_client_without_the_capability_makes_the_child_get_an_error(python_bridge):
    async with sdk_client(python_bridge.mcp) as dave:
        # The SDK server passes the bridge's error on as the call's error.
        with pytest.raises(MCPError, match="did not declare the sampling capability"):
            await asyncio.wait_for(dave.call_tool("sample", {"prompt": "hi"}), CALL_TIMEOUT)
        # The pipe is still in good shape afterwards.
        assert text_of(await dave.call_tool("echo", {"text": "still here"})) == "still here"


async def test_the_streamable_http_edges(python_bridge):
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    async with httpx2.AsyncClient(base_url=python_bridge.url, headers=headers, timeout=10) as http:
        discover = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 0, "method": "server/discover"})
        assert discover.status_code == 404 and discover.json()["error"]["code"] == -32601
        assert (await http.post("/mcp", json=ping)).status_code == 400
        assert (await http.post("/mcp", json=ping, headers={"mcp-session-id": "nope"})).status_code == 404
        assert (await http.post("/mcp", json=[ping])).status_code == 400
        opened = await http.post("/mcp", json=init)
        assert opened.json()["result"]["protocolVersion"] == "2025-03-26"
        session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-03-26"}
        notified = await http.post(
            "/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session
        )
        assert notified.status_code == 202
        assert (await http.post("/mcp", json=ping, headers=session)).json() == {"jsonrpc": "2.0", "id": 2, "result": {}}
        foreign = await http.post("/mcp", json=ping, headers={**session, "origin": "http://evil.example"})
        assert foreign.status_code == 403
        assert (await http.delete("/mcp", headers=session)).status_code == 200
        assert (await http.post("/mcp", json=ping, headers=session)).status_code == 404


async def test_the_plain_http_contract(python_bridge):
    async with httpx2.AsyncClient(base_url=python_bridge.url, timeout=10) as http:
        listed = await http.post("/tools/list")
        assert listed.status_code == 200
        assert "echo" in {tool["name"] for tool in listed.json()["tools"]}
        called = await http.post("/tools/call", json={"name": "echo", "arguments": {"text": "plain"}})
        assert called.status_code == 200
        assert called.json()["content"][0]["text"] == "plain"
        assert (await http.post("/tools/call", json={"arguments": {}})).status_code == 400
        many = await asyncio.gather(
            *(
                http.post("/tools/call", json={"name": "sleep", "arguments": {"ms": 50, "tag": str(i)}})
                for i in range(20)
            )
        )
        assert [r.json()["content"][0]["text"] for r in many] == [str(i) for i in range(20)]


def test_healthz_answers_only_after_the_handshake(start_bridge):
    bridge = start_bridge(ready=False, START_DELAY="1.5")
    statuses = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and 200 not in statuses:
        statuses.append(bridge.health())
        time.sleep(0.05)
    assert 503 in statuses, statuses
    assert statuses[-1] == 200
    assert statuses.index(200) > statuses.index(503)


def test_a_missing_credential_is_named_when_the_server_will_not_start(start_bridge):
    bridge = start_bridge(
        ready=False,
        REQUIRE_ENV="GITHUB_TOKEN",
        GITHUB_TOKEN="",
        SLACK_TEAM="T123",
        MCP_REQUIRED_ENV="SLACK_TEAM, GITHUB_TOKEN",
    )
    assert bridge.process.wait(timeout=20) == 2
    log = bridge.stderr()
    assert "exited before its handshake (exit code 1); required variables that are empty: GITHUB_TOKEN\n" in log
    assert "[mcp] error: GITHUB_TOKEN is not set" in log  # the child's stderr reached the container log


def test_without_declared_variables_the_exit_message_quotes_the_server(start_bridge):
    bridge = start_bridge(ready=False, REQUIRE_ENV="API_KEY", API_KEY="")
    assert bridge.process.wait(timeout=20) == 2
    assert "its last stderr lines:\n  error: API_KEY is not set" in bridge.stderr()


def test_a_server_that_dies_later_fails_healthz_and_ends_the_bridge(start_bridge):
    bridge = start_bridge(CRASH_AFTER="1.5")
    assert bridge.health() == 200
    # A call in flight when the server dies gets an error, not a hang.
    with httpx2.Client(base_url=bridge.url, timeout=20) as http:
        cut_short = http.post("/tools/call", json={"name": "sleep", "arguments": {"ms": 10_000}})
    assert cut_short.status_code == 503
    assert "exited" in cut_short.json()["error"]["message"]
    assert bridge.process.wait(timeout=3) == 3
    assert bridge.health() != 200
    assert "the MCP server exited (exit code 5) after its handshake" in bridge.stderr()


def test_sigterm_stops_the_server_and_the_bridge(start_bridge):
    bridge = start_bridge()
    bridge.process.terminate()
    assert bridge.process.wait(timeout=10) == 0


def test_a_command_that_does_not_exist_is_reported(start_bridge):
    bridge = start_bridge("/nonexistent/mcp-server --stdio", ready=False)
    assert bridge.process.wait(timeout=20) == 2
    assert "cannot start MCP_COMMAND '/nonexistent/mcp-server'" in bridge.stderr()


def test_python_server_command_is_split_like_a_shell():
    assert PYTHON_SERVER.split()[-1].endswith("stdio_server.py")


def test_the_servers_own_variables_are_expanded_in_its_arguments_and_no_others():
    env = {
        "MCP_COMMAND": "mcp-server-postgres ${POSTGRES_URL} --label '${POSTGRES_URL}x' ${SECRET_KEY} $HOME",
        "MCP_REQUIRED_ENV": "POSTGRES_URL",
        "POSTGRES_URL": "postgres://u:p w@db/x",
        "SECRET_KEY": "not-for-the-server",
    }
    command = Settings.from_env(env).command
    # One argument each, spaces and all: no shell, no word splitting after expansion.
    assert command == (
        "mcp-server-postgres",
        "postgres://u:p w@db/x",
        "--label",
        "postgres://u:p w@db/xx",
        "${SECRET_KEY}",
        "$HOME",
    )
