"""The official Python SDK client, unmodified, talking to the gateway in both eras."""

from __future__ import annotations

import httpx2
import pytest
from asgiref.sync import sync_to_async
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from apps.audit.models import ToolCall
from mcpnest.asgi import build_application

pytestmark = pytest.mark.django_db(transaction=True)


def _client(gateway, token: str, mode: str) -> Client:
    http = httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=build_application(gateway)),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    return Client(streamable_http_client("http://testserver/api/gw/acme", http_client=http), mode=mode)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_list_and_call_through_the_gateway(cast, fix_server, issue, mode, relay_gateway):
    token = await sync_to_async(issue)(cast.carol)
    async with _client(relay_gateway, token, mode) as client:
        tools = await client.list_tools()
        assert {t.name for t in tools.tools} >= {"echo", "add", "slow", "fail"}
        result = await client.call_tool("add", {"a": 2, "b": 3})
        assert result.content[0].text == "5"
        assert not result.is_error
    await sync_to_async(relay_gateway.recorder.flush)()
    row = await ToolCall.objects.aget(tool_name="add")
    assert (row.server_slug, row.status, row.member_id, row.method) == ("fix", 200, cast.carol.pk, "tools/call")
