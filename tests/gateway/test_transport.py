"""The Streamable HTTP transport at /api/gw/<slug>: sessions, headers and every kind of bad input."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/gw/acme"
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def rpc(method, id=1, **params):
    body = {"jsonrpc": "2.0", "method": method}
    if id is not None:
        body["id"] = id
    if params:
        body["params"] = params
    return body


async def _initialize(client, version="2025-11-25"):
    response = await client.post(
        URL,
        json=rpc("initialize", protocolVersion=version, capabilities={}, clientInfo={"name": "pytest", "version": "9"}),
        headers=ACCEPT,
    )
    assert response.status_code == 200, response.text
    return response.headers["mcp-session-id"], response.json()["result"]


@pytest.fixture
def carol_token(cast, issue):
    return issue(cast.carol)


async def test_initialize_answers_gateway_identity_and_mints_a_session(asgi_client, carol_token):
    async with asgi_client(carol_token) as client:
        session, result = await _initialize(client)
    assert result["protocolVersion"] == "2025-11-25"
    assert result["serverInfo"]["name"] == "mcpnest"
    assert set(result["capabilities"]) == {"tools", "resources", "prompts", "completions"}
    assert all(0x21 <= ord(c) <= 0x7E for c in session)


async def test_unknown_protocol_version_is_answered_with_the_latest(asgi_client, carol_token):
    async with asgi_client(carol_token) as client:
        _, result = await _initialize(client, version="1999-01-01")
    assert result["protocolVersion"] == "2025-11-25"


async def test_session_rules(asgi_client, carol_token, cast, issue):
    async with asgi_client(carol_token) as client:
        missing = await client.post(URL, json=rpc("ping"), headers=ACCEPT)
        assert missing.status_code == 400 and "Mcp-Session-Id" in missing.json()["error"]["message"]
        unknown = await client.post(URL, json=rpc("ping"), headers={**ACCEPT, "Mcp-Session-Id": "forged"})
        assert unknown.status_code == 404
        session, _ = await _initialize(client)
        headers = {**ACCEPT, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
        ok = await client.post(URL, json=rpc("ping"), headers=headers)
        assert ok.status_code == 200 and ok.json() == {"jsonrpc": "2.0", "id": 1, "result": {}}
        note = await client.post(URL, json=rpc("notifications/initialized", id=None), headers=headers)
        assert note.status_code == 202 and note.content == b""
        bad_version = await client.post(URL, json=rpc("ping"), headers={**headers, "MCP-Protocol-Version": "2099-1-1"})
        assert bad_version.status_code == 400
        assert (await client.delete(URL, headers={"Mcp-Session-Id": session})).status_code == 204
        ended = await client.post(URL, json=rpc("ping"), headers=headers)
        assert ended.status_code == 404
    # A session is bound to the token that created it.
    other = await sync_to_async(issue)(cast.bob)
    async with asgi_client(carol_token) as client:
        session, _ = await _initialize(client)
    async with asgi_client(other) as client:
        stolen = await client.post(URL, json=rpc("ping"), headers={**ACCEPT, "Mcp-Session-Id": session})
    assert stolen.status_code == 404


async def test_get_opens_a_2025_sessions_stream_only(asgi_client, carol_token):
    """The stream itself (resource updates, list changes) is tested over uvicorn in test_protocol.py."""
    async with asgi_client(carol_token) as client:
        sessionless = await client.get(URL, headers={"Accept": "text/event-stream"})
        modern = await client.get(URL, headers={"Accept": "text/event-stream", "MCP-Protocol-Version": "2026-07-28"})
        unknown = await client.get(URL, headers={"Accept": "text/event-stream", "Mcp-Session-Id": "forged"})
        session, _ = await _initialize(client)
        no_sse = await client.get(URL, headers={"Accept": "application/json", "Mcp-Session-Id": session})
    assert sessionless.status_code == 400 and "Mcp-Session-Id" in sessionless.json()["error"]["message"]
    assert modern.status_code == 405 and modern.headers["Allow"] == "POST"
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == -32001
    assert no_sse.status_code == 406


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        (b"{not json", 400, -32700, "not valid JSON"),
        (b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', 400, -32600, "Batches"),
        (b'"hello"', 400, -32600, "JSON-RPC 2.0"),
        (b'{"id":1,"method":"ping"}', 400, -32600, "jsonrpc"),
        (b'{"jsonrpc":"2.0","id":1}', 400, -32600, "method is missing"),
        (b'{"jsonrpc":"2.0","id":null,"method":"ping"}', 400, -32600, "id must be"),
        (b'{"jsonrpc":"2.0","id":1,"method":42}', 400, -32600, "method must be a string"),
    ],
)
async def test_malformed_messages(asgi_client, carol_token, body, status, code, words):
    async with asgi_client(carol_token) as client:
        session, _ = await _initialize(client)
        response = await client.post(URL, content=body, headers={**ACCEPT, "Mcp-Session-Id": session})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and words in error["message"]


async def test_unknown_method_and_bad_params(asgi_client, carol_token):
    async with asgi_client(carol_token) as client:
        session, _ = await _initialize(client)
        headers = {**ACCEPT, "Mcp-Session-Id": session}
        unknown = await client.post(URL, json=rpc("tools/explode"), headers=headers)
        assert unknown.json()["error"]["code"] == -32601
        assert "tools/explode" in unknown.json()["error"]["message"]
        bad = await client.post(
            URL, json={"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": []}, headers=headers
        )
        assert bad.json()["error"]["code"] == -32602
        no_name = await client.post(URL, json=rpc("tools/call", arguments={}), headers=headers)
        assert no_name.json()["error"]["code"] == -32602 and "params.name" in no_name.json()["error"]["message"]
        cursor = await client.post(URL, json=rpc("tools/list", cursor="nope"), headers=headers)
        assert cursor.json()["error"]["code"] == -32602


async def test_content_type_and_accept_are_checked(asgi_client, carol_token):
    async with asgi_client(carol_token) as client:
        wrong_type = await client.post(
            URL, content=b"{}", headers={"Accept": ACCEPT["Accept"], "Content-Type": "text/plain"}
        )
        assert wrong_type.status_code == 415
        wrong_accept = await client.post(URL, json=rpc("ping"), headers={"Accept": "application/json"})
        assert wrong_accept.status_code == 406


async def test_foreign_origin_is_refused(asgi_client, carol_token, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://portal.example.com"]
    initialize = rpc("initialize", protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "x"})
    async with asgi_client(carol_token) as client:
        statuses = {
            origin: (await client.post(URL, json=initialize, headers={**ACCEPT, "Origin": origin})).status_code
            for origin in (
                "http://evil.example",
                "http://testserver",  # the gateway's own origin
                "http://testserver:8080",  # an allowed host on another port: another origin
                "https://testserver",  # another scheme
                "http://localhost:8000",  # an allowed host name, but not this origin
                "https://portal.example.com",  # trusted
                "https://portal.example.com:8443",
            )
        }
    assert statuses == {
        "http://evil.example": 403,
        "http://testserver": 200,
        "http://testserver:8080": 403,
        "https://testserver": 403,
        "http://localhost:8000": 403,
        "https://portal.example.com": 200,
        "https://portal.example.com:8443": 403,
    }


async def test_authentication(asgi_client, cast, issue):
    async with asgi_client() as client:
        missing = await client.post(URL, json=rpc("ping"), headers=ACCEPT)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    async with asgi_client("mng_" + "0" * 48) as client:
        assert (await client.post(URL, json=rpc("ping"), headers=ACCEPT)).status_code == 401
    # A member of globex holds a valid token, but not for acme: refused, and acme's gateway tells it nothing.
    globex_token = await sync_to_async(issue)(cast.dave, workspace=cast.globex)
    async with asgi_client(globex_token) as client:
        response = await client.post(
            URL,
            json=rpc("initialize", protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "x"}),
            headers=ACCEPT,
        )
    assert response.status_code == 401


async def test_unknown_workspace_is_404(asgi_client, carol_token):
    async with asgi_client(carol_token) as client:
        response = await client.post("/api/gw/nope", json=rpc("ping"), headers=ACCEPT)
    assert response.status_code == 404


# --- 2026-07-28: stateless requests -------------------------------------------------------

MODERN = "2026-07-28"


def modern(method, id=1, **params):
    params["_meta"] = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "pytest-modern", "version": "2"},
    }
    return rpc(method, id=id, **params)


def modern_headers(method, name=None, version=MODERN):
    headers = {**ACCEPT, "MCP-Protocol-Version": version, "Mcp-Method": method}
    if name:
        headers["Mcp-Name"] = name
    return headers


async def test_modern_discover_and_lists_are_private_and_cacheable(asgi_client, carol_token, fix_server):
    async with asgi_client(carol_token) as client:
        discover = await client.post(URL, json=modern("server/discover"), headers=modern_headers("server/discover"))
        listed = await client.post(URL, json=modern("tools/list"), headers=modern_headers("tools/list"))
    assert discover.status_code == 200 and "mcp-session-id" not in discover.headers
    result = discover.json()["result"]
    assert MODERN in result["supportedVersions"] and "2025-11-25" in result["supportedVersions"]
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "mcpnest"
    tools = listed.json()["result"]
    assert tools["cacheScope"] == "private" and tools["ttlMs"] > 0 and tools["resultType"] == "complete"
    assert tools["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "mcpnest"


async def test_modern_header_checks(asgi_client, carol_token, fix_server):
    async with asgi_client(carol_token) as client:
        mismatch = await client.post(URL, json=modern("tools/list"), headers=modern_headers("tools/call"))
        wrong_name = await client.post(
            URL,
            json=modern("tools/call", name="echo", arguments={"text": "x"}),
            headers=modern_headers("tools/call", name="add"),
        )
        unsupported = await client.post(
            URL,
            json={
                **modern("tools/list"),
                "params": {
                    "_meta": {
                        "io.modelcontextprotocol/protocolVersion": "2099-01-01",
                        "io.modelcontextprotocol/clientCapabilities": {},
                    }
                },
            },
            headers=modern_headers("tools/list", version="2099-01-01"),
        )
        ping = await client.post(URL, json=modern("ping"), headers=modern_headers("ping"))
        get = await client.get(URL, headers={"Accept": "text/event-stream", "MCP-Protocol-Version": MODERN})
    assert mismatch.status_code == 400 and mismatch.json()["error"]["code"] == -32020
    assert wrong_name.status_code == 400 and wrong_name.json()["error"]["code"] == -32020
    assert unsupported.status_code == 400 and unsupported.json()["error"]["code"] == -32022
    assert MODERN in unsupported.json()["error"]["data"]["supported"]
    assert ping.status_code == 404 and ping.json()["error"]["code"] == -32601  # ping is gone in 2026-07-28
    assert get.status_code == 405


async def test_legacy_callers_get_no_modern_fields_from_modern_upstreams(asgi_client, carol_token, fix_server):
    # The fixture upstream speaks 2026-07-28 to the gateway; a 2025 caller must not see that.
    async with asgi_client(carol_token) as client:
        session, _ = await _initialize(client)
        listed = await client.post(URL, json=rpc("tools/list"), headers={**ACCEPT, "Mcp-Session-Id": session})
        called = await client.post(
            URL,
            json=rpc("tools/call", id=2, name="echo", arguments={"text": "hi"}),
            headers={**ACCEPT, "Mcp-Session-Id": session},
        )
    for result in (listed.json()["result"], called.json()["result"]):
        assert not {"resultType", "ttlMs", "cacheScope"} & set(result)
        assert "io.modelcontextprotocol/serverInfo" not in result.get("_meta", {})


@pytest.mark.parametrize(
    ("method", "params", "field"),
    [
        ("tools/call", {"name": "echo", "arguments": [1]}, "params.arguments"),
        ("tools/call", {"name": 5}, "params.name"),
        ("prompts/get", {"name": "greet", "arguments": {"who": 1}}, "params.arguments.who"),
        ("resources/read", {}, "params.uri"),
        ("completion/complete", {"ref": {"type": "ref/nothing"}, "argument": {"name": "a", "value": ""}}, "params.ref"),
        ("tools/list", {"cursor": 5}, "params.cursor"),
        ("resources/subscribe", {"uri": ["x"]}, "params.uri"),
    ],
)
async def test_params_of_the_wrong_shape_name_the_field(asgi_client, carol_token, method, params, field):
    async with asgi_client(carol_token) as client:
        session, _ = await _initialize(client)
        headers = {**ACCEPT, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
        response = await client.post(URL, json=rpc(method, **params), headers=headers)
    error = response.json()["error"]
    assert error["code"] == -32602
    assert error["data"]["field"].startswith(field) and method in error["message"]
