"""The whole protocol through the gateway, with the official SDK client over a real uvicorn:
requests an upstream sends the client while answering a call (sampling, elicitation),
answered by the client and routed back; a client that cannot take them; resource
subscriptions with their updates, and list changes, on a 2025 session's GET stream."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx2
import pytest
from asgiref.sync import sync_to_async
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server import MCPServer
from mcp.types import (
    CreateMessageResult,
    ElicitResult,
    ResourceUpdatedNotification,
    TextContent,
    ToolListChangedNotification,
)

from apps.gateway.services import server_add
from apps.workspaces.services import workspace_set_rate_limit
from tests.gateway.conformance_fixture import build_conformance_server
from tests.gateway.upstream import running

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore:The .* capability is deprecated as of 2026-07-28"),
]


@pytest.fixture(scope="module")
def conformance_upstream():
    with running(build_conformance_server()) as server:
        yield server


@pytest.fixture
def url_and_token(cast, issue, gateway, conformance_upstream):
    access = cast.access(cast.alice)
    server_add(access=access, slug="conf", url=conformance_upstream.url)
    workspace_set_rate_limit(access=access, per_minute=100_000)
    return f"{gateway()}/api/gw/acme", issue(cast.carol)


def _client(url: str, token: str, **callbacks) -> tuple[httpx2.AsyncClient, Client]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return http, Client(streamable_http_client(url, http_client=http), mode="legacy", **callbacks)


def test_sampling_and_elicitation_reach_the_client_and_its_answers_the_upstream(url_and_token):
    url, token = url_and_token
    asked: list[str] = []

    async def sampling(context, params):
        asked.append(params.messages[0].content.text)
        return CreateMessageResult(
            role="assistant", content=TextContent(type="text", text="sampled: 42"), model="test-model"
        )

    async def elicitation(context, params):
        asked.append(params.message)
        return ElicitResult(action="accept", content={"response": "yes, through the gateway"})

    async def session():
        http, client = _client(url, token, sampling_callback=sampling, elicitation_callback=elicitation)
        async with http, client:
            sampled = await client.call_tool("test_sampling", {"prompt": "What is the answer?"})
            elicited = await client.call_tool("test_elicitation", {"message": "Proceed?"})
        return sampled, elicited

    sampled, elicited = asyncio.run(session())
    assert asked == ["What is the answer?", "Proceed?"]
    assert not sampled.is_error and "sampled: 42" in sampled.content[0].text
    assert not elicited.is_error and "yes, through the gateway" in elicited.content[0].text


def test_a_client_without_the_capability_makes_the_upstream_fail_fast_not_hang(url_and_token):
    url, token = url_and_token

    async def session():
        http, client = _client(url, token)  # declares neither sampling nor elicitation
        async with http, client:
            return await asyncio.wait_for(client.call_tool("test_sampling", {"prompt": "hello?"}), 10)

    answer = asyncio.run(session())
    assert "does not take sampling/createMessage requests" in answer.content[0].text


def test_resource_updates_and_list_changes_reach_the_sessions_get_stream(url_and_token):
    url, token = url_and_token
    received: list[object] = []
    both = asyncio.Event()

    async def on_message(message) -> None:
        root = getattr(message, "root", message)
        if isinstance(root, ResourceUpdatedNotification | ToolListChangedNotification):
            received.append(root)
            if len({type(r) for r in received}) == 2:
                both.set()

    async def session():
        http, client = _client(url, token, message_handler=on_message)
        async with http, client:
            before = {tool.name for tool in (await client.list_tools()).tools}
            await client.subscribe_resource("test://watched-resource")
            await asyncio.sleep(0.5)  # the client's GET stream opens in the background
            await client.call_tool("mcpnest_update_watched_resource", {})
            await asyncio.wait_for(both.wait(), 10)
            after = {tool.name for tool in (await client.list_tools()).tools}
            await client.unsubscribe_resource("test://watched-resource")
        return before, after

    before, after = asyncio.run(session())
    # The list change dropped the gateway's cached catalog (kept 30 s otherwise).
    assert "mcpnest_removed_later" in before and "mcpnest_removed_later" not in after
    updated = next(r for r in received if isinstance(r, ResourceUpdatedNotification))
    assert str(updated.params.uri) == "test://watched-resource"


# --- cancellation ----------------------------------------------------------------------------

URL = "/api/gw/acme"
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def build_waiter() -> tuple[MCPServer, threading.Event]:
    server = MCPServer("waiter", version="1.0")
    cancelled = threading.Event()

    @server.tool(description="Waits half a minute, unless cancelled.")
    async def wait() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "waited"

    return server, cancelled


async def test_a_clients_cancellation_stops_the_call_upstream_and_is_on_record(cast, issue, asgi_client, rows):
    server, cancelled = build_waiter()
    with running(server) as upstream:

        def setup():
            server_add(access=cast.access(cast.alice), slug="waiter", url=upstream.url)
            return issue(cast.carol)

        token = await sync_to_async(setup)()
        async with asgi_client(token) as client:
            opened = await client.post(
                URL,
                json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
                headers=ACCEPT,
            )  # fmt: skip
            headers = {
                **ACCEPT,
                "Mcp-Session-Id": opened.headers["mcp-session-id"],
                "MCP-Protocol-Version": "2025-11-25",
            }
            call = asyncio.ensure_future(
                client.post(URL, json={"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                                       "params": {"name": "wait", "arguments": {}}}, headers=headers)
            )  # fmt: skip
            await asyncio.sleep(1.0)  # the call reaches the upstream
            assert not call.done()
            note = await client.post(
                URL,
                json={"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}},
                headers=headers,
            )
            assert note.status_code == 202
            answer = await asyncio.wait_for(call, 5)
        assert answer.json()["error"]["code"] == -32800
        assert await asyncio.to_thread(cancelled.wait, 5), "the upstream's tool was not cancelled"
    (row,) = await sync_to_async(rows)(tool_name="wait")
    assert row.status == 499  # closed before the answer, on record all the same


def test_a_2026_client_hears_list_changes_and_updates_on_its_listen_stream(url_and_token):
    url, token = url_and_token

    async def session():
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
        async with http, Client(streamable_http_client(url, http_client=http), mode="auto") as client:
            events = []
            async with client.listen(
                tools_list_changed=True, resource_subscriptions=["test://watched-resource"]
            ) as subscription:
                honored = subscription.honored
                await client.call_tool("mcpnest_update_watched_resource", {})
                async with asyncio.timeout(10):
                    async for event in subscription:
                        events.append(event)
                        if {type(e).__name__ for e in events} >= {"ToolsListChanged", "ResourceUpdated"}:
                            break
            return honored, events

    honored, events = asyncio.run(session())
    assert honored.tools_list_changed and honored.resource_subscriptions == ["test://watched-resource"]
    updated = next(e for e in events if type(e).__name__ == "ResourceUpdated")
    assert updated.uri == "test://watched-resource"


def test_a_clients_progress_on_a_relayed_request_reaches_the_upstream_that_asked(url_and_token):
    """Raw protocol: the upstream's request (with a progress token) arrives on the session's
    GET stream under the gateway's ids; the client's progress and answer, POSTed back with
    those ids, reach the upstream under its own."""
    url, token = url_and_token
    base = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}

    async def session():
        async with httpx2.AsyncClient(headers=base, timeout=30) as http:
            hello = {"protocolVersion": "2025-11-25", "capabilities": {"sampling": {}}, "clientInfo": {"name": "raw"}}
            opened = await http.post(url, json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": hello})
            headers = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
            await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
            asked: asyncio.Future = asyncio.get_running_loop().create_future()

            async def read_get_stream():
                async with http.stream("GET", url, headers={**headers, "Accept": "text/event-stream"}) as stream:
                    async for line in stream.aiter_lines():
                        if line.startswith("data: ") and '"sampling/createMessage"' in line:
                            asked.set_result(json.loads(line[len("data: ") :]))
                            return

            reader = asyncio.ensure_future(read_get_stream())
            await asyncio.sleep(0.5)  # the GET stream is open
            call = asyncio.ensure_future(
                http.post(
                    url,
                    json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": "mcpnest_sample_with_progress", "arguments": {}}},
                    headers=headers,
                )
            )  # fmt: skip
            request = await asyncio.wait_for(asked, 10)
            sealed_token = request["params"]["_meta"]["progressToken"]
            progress = {"progressToken": sealed_token, "progress": 0.5, "total": 1.0}
            noted = await http.post(
                url, json={"jsonrpc": "2.0", "method": "notifications/progress", "params": progress}, headers=headers
            )
            result = {"role": "assistant", "content": {"type": "text", "text": "done"}, "model": "m"}
            answered = await http.post(
                url, json={"jsonrpc": "2.0", "id": request["id"], "result": result}, headers=headers
            )
            response = await asyncio.wait_for(call, 10)
            reader.cancel()
            return request, noted, answered, response

    request, noted, answered, response = asyncio.run(session())
    assert request["id"].startswith("mcpnest-relay:") and noted.status_code == answered.status_code == 202
    if response.headers["content-type"].startswith("text/event-stream"):
        body = json.loads([line for line in response.text.splitlines() if line.startswith("data: ")][-1][6:])
    else:
        body = response.json()
    assert body["result"]["content"][0]["text"] == "done; progress seen: [0.5]"
