"""The gateway as an OAuth protected resource: what it answers without a token, with a
wrong one, with one for another workspace or without the scope, and how fast a revoked
or deprovisioned member's token stops working."""

from __future__ import annotations

import asyncio
import time

import pytest
from allauth.socialaccount.models import SocialAccount, SocialApp
from asgiref.sync import sync_to_async
from django.test import Client
from mcp.server.mcpserver import Context
from oauth2_provider.models import AccessToken

from apps.gateway.services import allowlist_set, server_add
from apps.oauth.models import Connection
from apps.oauth.services import connection_revoke
from apps.sso.models import SsoConnection
from apps.workspaces.models import Membership, Role
from apps.workspaces.services import GatewayPolicy, member_remove, workspace_set_policy
from tests.factories import MembershipFactory
from tests.gateway.test_governance import Session
from tests.gateway.test_transport import ACCEPT, URL, rpc
from tests.gateway.upstream import build_server, running
from tests.oauth.flow import PUBLIC_URL, authorize_params, gateway_url, obtain, register

pytestmark = pytest.mark.django_db(transaction=True)

METADATA = f"{PUBLIC_URL}/.well-known/oauth-protected-resource/api/gw/acme"


def _oauth_token(cast, user=None, slug="acme") -> dict:
    browser = Client()
    browser.force_login(user or cast.carol)
    return obtain(Client(), browser, slug=slug)


@pytest.fixture
def oauth_token(cast):
    return lambda user=None, slug="acme": sync_to_async(_oauth_token)(cast, user, slug)


async def _ping(asgi_client, token: str):
    async with asgi_client(token) as client:
        return await client.post(
            URL,
            json=rpc(
                "initialize", protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "t", "version": "1"}
            ),
            headers=ACCEPT,
        )


async def _refused_within_a_second(asgi_client, token: str) -> float:
    """Seconds until the gateway refuses ``token`` (no test shortcut: the real epoch poll)."""
    started = time.monotonic()
    while time.monotonic() - started < 3:
        if (await _ping(asgi_client, token)).status_code == 401:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError("the token still works 3 s after it was revoked")


async def test_no_token_gets_401_pointing_at_the_resource_metadata(cast, asgi_client):
    async with asgi_client() as client:
        response = await client.post(URL, json=rpc("ping"), headers=ACCEPT)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge == f'Bearer resource_metadata="{METADATA}", scope="mcp"'
    assert "error=" not in challenge  # RFC 6750 §3.1: no error code when no token came


async def test_an_invalid_token_gets_401_invalid_token(cast, asgi_client):
    response = await _ping(asgi_client, "mna_" + "0" * 48)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{METADATA}", scope="mcp", error="invalid_token"'
    )


async def test_the_challenge_uses_the_public_url_not_the_host_header(cast, asgi_client, settings, relay_gateway):
    settings.MCPNEST_PUBLIC_URL = "https://mcp.example.com"
    async with asgi_client(Host="localhost:9999") as client:
        response = await client.post(URL, json=rpc("ping"), headers=ACCEPT)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith(
        'Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/api/gw/acme"'
    )


async def test_a_token_in_the_query_string_is_refused(cast, asgi_client, oauth_token, fix_server):
    tokens = await oauth_token()
    async with asgi_client() as client:
        response = await client.post(f"{URL}?access_token={tokens['access_token']}", json=rpc("ping"), headers=ACCEPT)
    assert response.status_code == 400
    assert "query string" in response.json()["error"]["message"]


async def test_an_oauth_token_calls_tools_as_the_member_and_the_audit_names_the_client(
    cast, asgi_client, oauth_token, fix_server, rows
):
    tokens = await oauth_token()
    session = await Session(asgi_client(tokens["access_token"])).open()
    answer = await session.call("tools/call", name="add", arguments={"a": 2, "b": 3})
    assert answer["result"]["content"][0]["text"] == "5"
    call = (await sync_to_async(rows)(method="tools/call"))[-1]
    assert call.member_id == cast.carol.pk
    assert call.oauth_client == tokens["client_id"]
    assert call.token_prefix == "oauth"
    connection = await Connection.objects.aget(user=cast.carol, workspace=cast.acme)
    assert connection.last_used_at is not None  # the Connect page shows it


async def test_the_allowlist_applies_to_oauth_tokens(cast, asgi_client, oauth_token, fix_server):
    def enforce():
        workspace_set_policy(access=cast.access(cast.alice), policy=GatewayPolicy(enforcement="enforce"))
        allowlist_set(access=cast.access(cast.alice), member=cast.carol, rules=["fix:echo"])

    await sync_to_async(enforce)()
    tokens = await oauth_token()
    session = await Session(asgi_client(tokens["access_token"])).open()
    assert await session.tools() == ["echo"]


async def test_a_token_for_another_workspace_is_refused(cast, asgi_client, oauth_token, fix_server):
    await sync_to_async(MembershipFactory)(workspace=cast.globex, user=cast.carol, role=Role.MEMBER)
    globex = await oauth_token(slug="globex")
    assert (await _ping(asgi_client, globex["access_token"])).status_code == 401


@pytest.mark.parametrize("audience", [[], ["https://elsewhere.example/mcp"], "both"])
async def test_a_token_without_exactly_this_audience_is_refused(cast, asgi_client, oauth_token, fix_server, audience):
    tokens = await oauth_token()
    if audience == "both":
        audience = [f"{PUBLIC_URL}/api/gw/acme", f"{PUBLIC_URL}/api/gw/globex"]
    await AccessToken.objects.filter(user=cast.carol).aupdate(resource=audience)
    assert (await _ping(asgi_client, tokens["access_token"])).status_code == 401


async def test_a_token_without_the_scope_gets_403_insufficient_scope(cast, asgi_client, oauth_token, fix_server):
    tokens = await oauth_token()
    await AccessToken.objects.filter(user=cast.carol).aupdate(scope="other")
    response = await _ping(asgi_client, tokens["access_token"])
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert 'scope="mcp"' in response.headers["www-authenticate"]


async def test_disconnecting_the_client_refuses_its_token_within_a_second(cast, asgi_client, oauth_token, fix_server):
    tokens = await oauth_token()
    assert (await _ping(asgi_client, tokens["access_token"])).status_code == 200

    def disconnect():
        connection = Connection.objects.get(user=cast.carol)
        return connection_revoke(access=cast.access(cast.carol), connection=connection)

    assert await sync_to_async(disconnect)() == 2  # the access token and its refresh token
    assert await _refused_within_a_second(asgi_client, tokens["access_token"]) < 1.0


async def test_rfc7009_revocation_refuses_the_token_within_a_second(cast, asgi_client, oauth_token, fix_server):
    tokens = await oauth_token()
    assert (await _ping(asgi_client, tokens["access_token"])).status_code == 200
    response = await sync_to_async(Client().post)(
        "/oauth/revoke/", {"token": tokens["access_token"], "client_id": tokens["client_id"]}
    )
    assert response.status_code == 200
    assert await _refused_within_a_second(asgi_client, tokens["access_token"]) < 1.0


async def test_a_deactivated_person_is_refused_within_a_second(cast, asgi_client, oauth_token, fix_server):
    tokens = await oauth_token()
    assert (await _ping(asgi_client, tokens["access_token"])).status_code == 200
    cast.carol.is_active = False
    await cast.carol.asave()
    assert await _refused_within_a_second(asgi_client, tokens["access_token"]) < 1.0


async def test_a_removed_member_is_refused_within_a_second(cast, asgi_client, oauth_token, fix_server):
    tokens = await oauth_token()
    assert (await _ping(asgi_client, tokens["access_token"])).status_code == 200

    def remove():
        membership = Membership.objects.get(workspace=cast.acme, user=cast.carol)
        member_remove(access=cast.access(cast.alice), membership=membership)

    await sync_to_async(remove)()
    assert await _refused_within_a_second(asgi_client, tokens["access_token"]) < 1.0
    # Her grants ended with her membership: rejoining does not revive the old client.
    assert not await AccessToken.objects.filter(user=cast.carol).aexists()
    assert not await Connection.objects.filter(user=cast.carol).aexists()


async def test_no_token_reaches_an_upstream(cast, asgi_client, oauth_token):
    server = build_server("spy")

    @server.tool(description="Say which Authorization header this server received.")
    def authorization(ctx: Context) -> str:
        return ctx.headers.get("authorization", "(none)") if ctx.headers else "(none)"

    with running(server) as spy:

        def add():
            server_add(access=cast.access(cast.alice), slug="spy", url=spy.url)

        await sync_to_async(add)()
        tokens = await oauth_token()
        session = await Session(asgi_client(tokens["access_token"])).open()
        answer = await session.call("tools/call", name="authorization", arguments={})
    assert answer["result"]["content"][0]["text"] == "(none)"


def _require_sso(cast) -> None:
    app = SocialApp.objects.create(provider="openid_connect", provider_id="acme-oidc", name="Acme IdP", client_id="c")
    SsoConnection.objects.create(workspace=cast.acme, social_app=app, email_domains=["example.com"], sso_required=True)


async def test_sso_required_shuts_out_members_without_an_sso_identity(
    cast, asgi_client, oauth_token, issue, fix_server
):
    tokens = await oauth_token()
    mng = await sync_to_async(issue)(cast.carol)
    assert (await _ping(asgi_client, tokens["access_token"])).status_code == 200
    await sync_to_async(_require_sso)(cast)
    assert await _refused_within_a_second(asgi_client, tokens["access_token"]) < 1.0
    assert (await _ping(asgi_client, mng)).status_code == 401
    # Once carol has signed in through the IdP, both work again.
    await SocialAccount.objects.acreate(user=cast.carol, provider="acme-oidc", uid="carol-at-idp")
    started = time.monotonic()
    while (await _ping(asgi_client, mng)).status_code != 200:
        assert time.monotonic() - started < 3
        await asyncio.sleep(0.05)


def test_sso_required_refuses_consent_without_an_sso_identity(cast):
    _require_sso(cast)
    browser = Client()
    browser.force_login(cast.carol)
    registered = register(Client())
    page = browser.get(
        "/oauth/authorize/", authorize_params(registered["client_id"], resource=gateway_url("acme")).params
    )
    assert page.status_code == 403
    assert "requires single sign-on" in page.content.decode()
