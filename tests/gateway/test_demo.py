"""`make run`'s demo: the printed token lists and calls the demo MCP server's real tools
through the gateway, and the demo's audit rows name that server and those tools."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from apps.audit.models import ToolCall
from apps.gateway import demo_upstream
from apps.gateway.models import ToolPin, UpstreamServer
from apps.hosting.models import Instance
from tests.gateway.test_transport import ACCEPT, rpc
from tests.gateway.upstream import running

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo_server(monkeypatch):
    with running(demo_upstream.build()) as server:
        monkeypatch.setattr(demo_upstream, "PORT", server.port)
        yield server


async def test_the_demo_token_lists_and_calls_real_tools(demo_server, asgi_client, notes):
    out = StringIO()
    await sync_to_async(call_command)("seed_demo", stdout=out)
    printed = out.getvalue()
    token = re.search(r"\(shown once\): (mng_[0-9a-f]{48})", printed).group(1)
    # The credentials come last, after everything else the command says.
    assert printed.rstrip().splitlines()[-1].startswith("Your gateway token")
    server = await UpstreamServer.objects.aget(workspace__slug="demo", slug=demo_upstream.SLUG)
    assert server.status == UpstreamServer.Status.APPROVED
    pinned = {name async for name in ToolPin.objects.filter(server=server).values_list("tool_name", flat=True)}
    assert pinned == set(demo_upstream.TOOLS)

    async with asgi_client(token) as client:
        hello = rpc("initialize", protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "demo"})
        session = (await client.post("/api/gw/demo", json=hello, headers=ACCEPT)).headers["mcp-session-id"]
        headers = {**ACCEPT, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
        listed = (await client.post("/api/gw/demo", json=rpc("tools/list", id=2), headers=headers)).json()
        added = await client.post(
            "/api/gw/demo", json=rpc("tools/call", id=3, name="add", arguments={"a": 2, "b": 3}), headers=headers
        )
    # The demo's own server, and the hosted notes server the demo deployed (process runtime).
    hosted = await Instance.objects.select_related("image").aget(workspace__slug="demo", image__slug="notes")
    assert hosted.status == Instance.Status.RUNNING, hosted.error
    notes = {f"{hosted.tool_prefix}{name}" for name in ("add_note", "list_notes", "search_notes")}
    assert {tool["name"] for tool in listed["result"]["tools"]} == set(demo_upstream.TOOLS) | notes
    assert added.json()["result"]["content"][0]["text"] == "5"

    # The demo's history names only servers and tools that exist.
    named = {
        (slug, tool)
        async for slug, tool in ToolCall.objects.filter(workspace__slug="demo", method="tools/call").values_list(
            "server_slug", "tool_name"
        )
    }
    assert named and {slug for slug, _ in named} == {demo_upstream.SLUG}
    assert {tool for _, tool in named} <= set(demo_upstream.TOOLS)
