"""The whole sign-in, with real processes on 127.0.0.1: MCPNest under uvicorn (its public URL
its own address), the official Python SDK's ``OAuthClientProvider`` as the MCP client, a
loopback callback server, and Carol in headless Chromium signing in and clicking Allow,
the client registered by DCR or known by its metadata document (CIMD). Then the SDK lists
and calls tools through the gateway in both protocol eras, refreshes its token (rotated,
still bound to the gateway) without a second sign-in, and the audit trail names the
client and Carol."""

from __future__ import annotations

import asyncio
import hashlib
import time
from contextlib import ExitStack

import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from oauth2_provider.models import AccessToken, Application, RefreshToken

from apps.oauth.models import Connection
from tests.browser import BROWSER_TESTS
from tests.gateway.test_interop import tool_calls
from tests.oauth.live import Callback, live_server, server_log, sign_in_and_allow
from tests.oauth.tls import MetadataHost, make_authority

pytestmark = [
    *BROWSER_TESTS,
    # The gateway's rate-limit counters live in Redis (with REDIS_URL) from test to test: start
    # from none, or the calls earlier tests made from 127.0.0.1 count against this one's.
    pytest.mark.usefixtures("relay_gateway"),
    # The fixture upstream still declares 2025-era capabilities the SDK flags as deprecated.
    pytest.mark.filterwarnings("ignore:The .* capability is deprecated as of 2026-07-28"),
]


class MemoryStorage:
    """The SDK's TokenStorage, kept in memory as a desktop client keeps it in its keychain."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


@pytest.mark.parametrize("registration", ["dcr", "cimd"])
def test_the_python_sdk_signs_in_through_chromium_and_calls_tools_in_both_eras(
    cast, fix_server, browser, tmp_path, registration
):
    """``dcr``: the SDK registers itself (RFC 7591). ``cimd``: its client id is the https URL
    of its metadata document, served from 127.0.0.1 with a test CA the server is told to
    trust (and private addresses allowed, as in a lab)."""
    driver = browser()
    storage = MemoryStorage()
    authorize_urls: list[str] = []
    authority = make_authority(tmp_path)

    with ExitStack() as stack:
        callback = stack.enter_context(Callback())
        client_metadata_url, server_env = None, {}
        if registration == "cimd":
            host = stack.enter_context(MetadataHost(authority))
            client_metadata_url = host.publish(
                "/oauth/mcpnest-e2e.json",
                {
                    "client_name": "MCPNest end-to-end",
                    "redirect_uris": [callback.redirect_uri],
                    "grant_types": ["authorization_code", "refresh_token"],
                    "response_types": ["code"],
                    "token_endpoint_auth_method": "none",
                },
            )
            server_env = {"MCPNEST_OAUTH_CIMD_CA_FILE": str(authority.ca_file), "MCPNEST_OAUTH_CIMD_ALLOW_PRIVATE": "1"}
        base = stack.enter_context(live_server(tmp_path, **server_env))
        gateway = f"{base}/api/gw/acme"

        async def redirect_handler(authorization_url: str) -> None:
            authorize_urls.append(authorization_url)
            await asyncio.to_thread(
                sign_in_and_allow, driver, authorization_url, email=cast.carol.email, callback=callback.redirect_uri
            )

        async def callback_handler() -> AuthorizationCodeResult:
            query = await asyncio.to_thread(callback.wait)
            return AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))

        provider = OAuthClientProvider(
            server_url=gateway,
            client_metadata=OAuthClientMetadata(
                client_name="MCPNest end-to-end",
                redirect_uris=[callback.redirect_uri],
                grant_types=["authorization_code", "refresh_token"],
                response_types=["code"],
                token_endpoint_auth_method="none",
            ),
            storage=storage,
            redirect_handler=redirect_handler,
            callback_handler=callback_handler,
            client_metadata_url=client_metadata_url,
        )

        async def session(mode: str):
            http = httpx2.AsyncClient(auth=provider, timeout=30)
            async with http, Client(streamable_http_client(gateway, http_client=http), mode=mode) as client:
                tools = await client.list_tools()
                added = await client.call_tool("add", {"a": 40, "b": 2})
            return {tool.name for tool in tools.tools}, added

        try:
            results = {mode: asyncio.run(session(mode)) for mode in ("legacy", "auto")}
            first = storage.tokens
            # The access token expires (as far as the client knows): the SDK refreshes it, and
            # the server rotates the refresh token; no second sign-in.
            provider.context.token_expiry_time = time.time() - 1
            results["refreshed"] = asyncio.run(session("auto"))
        except Exception as exc:
            raise AssertionError(f"the SDK session failed; the server logged:\n{server_log(tmp_path)}") from exc

    # One sign-in: the second era reused the stored token.
    assert len(authorize_urls) == 1
    assert authorize_urls[0].startswith(f"{base}/oauth/authorize/?")
    assert "code_challenge_method=S256" in authorize_urls[0]
    query = callback.queries[0]
    assert query["iss"] == base  # RFC 9207, and the issuer is the public URL

    for mode, (names, added) in results.items():
        assert {"echo", "add"} <= names, mode
        assert not added.is_error and added.content[0].text == "42", mode

    client_id = storage.client_info.client_id
    if registration == "cimd":
        assert client_id == client_metadata_url
    else:
        assert not client_id.startswith("https://")
    application = Application.objects.get(client_id=client_id)
    assert (application.name, application.registration_source) == ("MCPNest end-to-end", registration)
    assert storage.tokens.access_token.startswith("mna_") and storage.tokens.refresh_token.startswith("mnr_")
    assert Connection.objects.filter(application=application, user=cast.carol, workspace=cast.acme).exists()

    rows = tool_calls(3, tool_name="add")
    assert [(row.status, row.member_id, row.oauth_client) for row in rows] == [(200, cast.carol.pk, client_id)] * 3
    # A 2025 session is named in the audit trail; the stateless 2026-07-28 era has none.
    assert [bool(row.session_id) for row in rows] == [True, False, False]

    # The refresh: new tokens, bound to the same gateway; the old refresh token is spent.
    assert storage.tokens.access_token != first.access_token
    assert storage.tokens.refresh_token.startswith("mnr_") and storage.tokens.refresh_token != first.refresh_token
    live = AccessToken.objects.get(token_checksum=hashlib.sha256(storage.tokens.access_token.encode()).hexdigest())
    assert (live.user, live.resource) == (cast.carol, [gateway])
    spent = RefreshToken.objects.get(token_checksum=hashlib.sha256(first.refresh_token.encode()).hexdigest())
    assert spent.revoked is not None
