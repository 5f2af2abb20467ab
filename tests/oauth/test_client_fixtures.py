"""Real MCP clients' registrations, replayed: each recorded DCR request body registers and
each recorded Client ID Metadata Document (served over https from 127.0.0.1) is fetched,
then a signed-in member consents, the code is exchanged with PKCE S256, and the token
calls a tool through the gateway, which records the client and the member.

The recordings and where each comes from: tests/oauth/data/clients/README.md.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import Client
from oauth2_provider.models import AccessToken, Application

from tests.gateway.test_transport import ACCEPT, rpc
from tests.oauth.flow import PUBLIC_URL, authorize_params, code_from, consent, exchange, gateway_url
from tests.oauth.tls import MetadataHost, make_authority

pytestmark = pytest.mark.django_db(transaction=True)  # the gateway reads from its own threads

CLIENTS = Path(__file__).parent / "data" / "clients"


def _recorded(kind: str) -> list:
    paths = sorted(CLIENTS.glob(f"*.{kind}.json"))
    return [pytest.param(json.loads(path.read_text()), id=path.name.split(".")[0]) for path in paths]


DCR = _recorded("dcr")
CIMD = _recorded("cimd")


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()  # registration rate limits and CIMD failure backoffs


@pytest.fixture
def member(cast) -> Client:
    """Carol (an acme Member), signed in to the portal in her browser."""
    browser = Client()
    browser.force_login(cast.carol)
    return browser


@pytest.fixture(scope="module")
def authority(tmp_path_factory):
    return make_authority(tmp_path_factory.mktemp("cimd-tls"))


@pytest.fixture
def metadata_host(authority, settings):
    """An https host for metadata documents on 127.0.0.1, trusted and allowed (a lab setup)."""
    settings.MCPNEST_OAUTH_CIMD_CA_FILE = str(authority.ca_file)
    settings.MCPNEST_OAUTH_CIMD_ALLOW_PRIVATE = True
    with MetadataHost(authority) as host:
        yield host


def _call_add(asgi_client, token: str):
    """initialize, then tools/call add(2, 3) through the in-process gateway; the answer."""

    async def session():
        async with asgi_client(token) as http:
            opened = await http.post(
                "/api/gw/acme",
                json=rpc("initialize", protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "replay"}),
                headers=ACCEPT,
            )
            assert opened.status_code == 200, opened.text
            headers = {
                **ACCEPT,
                "Mcp-Session-Id": opened.headers["mcp-session-id"],
                "MCP-Protocol-Version": "2025-11-25",
            }
            return await http.post(
                "/api/gw/acme", json=rpc("tools/call", id=2, name="add", arguments={"a": 2, "b": 3}), headers=headers
            )

    return asyncio.run(session())


def _initialize_status(asgi_client, token: str) -> int:
    async def attempt():
        async with asgi_client(token) as http:
            opened = await http.post(
                "/api/gw/acme",
                json=rpc("initialize", protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "replay"}),
                headers=ACCEPT,
            )
            return opened.status_code

    return asyncio.run(attempt())


def _sign_in_and_call(client, member, asgi_client, rows, cast, *, client_id, redirect_uri, secret=None):
    """Consent as carol, exchange the code (PKCE S256), call a tool; the token response."""
    authorization = authorize_params(client_id, resource=gateway_url("acme"), redirect_uri=redirect_uri)
    response = consent(member, authorization)
    assert response["Location"].startswith(redirect_uri + "?"), response["Location"]
    code = code_from(response, authorization.params["state"])
    credentials = {"client_secret": secret} if secret else {}
    tokens = exchange(
        client,
        client_id=client_id,
        code=code,
        verifier=authorization.verifier,
        redirect_uri=redirect_uri,
        **credentials,
    )
    assert tokens.status_code == 200, tokens.content
    issued = tokens.json()
    assert issued["token_type"] == "Bearer" and issued["scope"] == "mcp"
    assert issued["access_token"].startswith("mna_") and issued["refresh_token"].startswith("mnr_")
    # DCR's registration access token is an AccessToken row too (scope oauth2_provider:registration).
    held = AccessToken.objects.filter(application__client_id=client_id, scope="mcp")
    assert [(token.resource, token.user_id) for token in held] == [([gateway_url("acme")], cast.carol.pk)]

    answer = _call_add(asgi_client, issued["access_token"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["content"][0]["text"] == "5"
    (row,) = rows(tool_name="add")
    assert (row.status, row.member_id, row.oauth_client) == (200, cast.carol.pk, client_id)
    return issued


# --- dynamic client registration (RFC 7591) -----------------------------------------------------


@pytest.mark.parametrize("recorded", DCR)
def test_recorded_registration_signs_in_and_calls_a_tool(client, member, asgi_client, rows, cast, fix_server, recorded):
    body = recorded["registration"]
    registered = client.post("/oauth/register/", json.dumps(body), content_type="application/json")
    assert registered.status_code == 201, registered.content
    registration = registered.json()
    assert registration["redirect_uris"] == body["redirect_uris"]
    application = Application.objects.get(client_id=registration["client_id"])
    assert application.registration_source == Application.RegistrationSource.DCR
    assert application.name == body.get("client_name", "")
    # A client asking for a shared secret gets one; a public client gets none.
    confidential = body["token_endpoint_auth_method"] != "none"
    assert ("client_secret" in registration) is confidential

    _sign_in_and_call(
        client,
        member,
        asgi_client,
        rows,
        cast,
        client_id=registration["client_id"],
        redirect_uri=recorded["redirect_uri"],
        secret=registration.get("client_secret"),
    )
    # The registration access token (RFC 7592) manages the registration; it opens no gateway.
    assert _initialize_status(asgi_client, registration["registration_access_token"]) == 401


def test_registration_and_token_endpoints_take_no_csrf_token(db):
    """MCP clients are not browsers with a session: they send no CSRF token. Django's test
    client skips CSRF checks unless told, which is how a dispatch() that dropped the
    toolkit's csrf_exempt passed every other in-process test (and failed every real client)."""
    api = Client(enforce_csrf_checks=True)
    body = json.loads((CLIENTS / "claude-code.dcr.json").read_text())["registration"]
    registered = api.post("/oauth/register/", json.dumps(body), content_type="application/json")
    assert registered.status_code == 201, (registered.status_code, registered.content[:200])
    token = api.post(
        "/oauth/token/",
        {"grant_type": "authorization_code", "code": "no-such-code", "client_id": registered.json()["client_id"]},
    )
    assert token.status_code == 400, (token.status_code, token.content[:200])
    assert token.json()["error"] == "invalid_grant"
    # RFC 7592: the client updates its registration with its registration access token.
    registration = registered.json()
    updated = api.put(
        f"/oauth/register/{registration['client_id']}/",
        json.dumps({**body, "client_name": "Claude Code (renamed)"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {registration['registration_access_token']}",
    )
    assert updated.status_code == 200, (updated.status_code, updated.content[:200])
    assert Application.objects.get(client_id=registration["client_id"]).name == "Claude Code (renamed)"


def test_the_registration_response_names_the_public_url_not_the_request_host(client, db):
    body = json.loads((CLIENTS / "claude-code.dcr.json").read_text())["registration"]
    registered = client.post(
        "/oauth/register/", json.dumps(body), content_type="application/json", HTTP_HOST="localhost:9999"
    ).json()
    assert registered["registration_client_uri"] == f"{PUBLIC_URL}/oauth/register/{registered['client_id']}/"


def test_a_confidential_registration_must_present_its_secret(client, member):
    """claude.ai registers with client_secret_post: its code is worth nothing without the secret."""
    body = json.loads((CLIENTS / "claude-ai-connector.dcr.json").read_text())
    registration = client.post("/oauth/register/", json.dumps(body["registration"]), content_type="application/json")
    client_id = registration.json()["client_id"]
    authorization = authorize_params(client_id, resource=gateway_url("acme"), redirect_uri=body["redirect_uri"])
    code = code_from(consent(member, authorization), authorization.params["state"])
    refused = exchange(
        client, client_id=client_id, code=code, verifier=authorization.verifier, redirect_uri=body["redirect_uri"]
    )
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert not AccessToken.objects.filter(application__client_id=client_id, scope="mcp").exists()


@pytest.mark.parametrize(
    ("fixture", "other", "accepted"),
    [
        # Web clients: exactly the registered URI.
        ("claude-ai-connector", "https://claude.ai/api/mcp/auth_callback/", False),
        ("claude-ai-connector", "https://claude.ai/api/mcp/other_callback", False),
        ("chatgpt", "https://chatgpt.com/connector_platform_oauth_redirect?x=1", False),
        ("chatgpt", "https://chatgpt.com.evil.example/connector_platform_oauth_redirect", False),
        # Loopback clients: any port (RFC 8252 §7.3), never another path or host.
        ("claude-code", "http://localhost:40123/callback", True),
        ("claude-code", "http://localhost:40123/elsewhere", False),
        ("claude-code", "http://localhost.evil.example:40123/callback", False),
        ("mcp-inspector", "http://localhost:6275/oauth/callback", True),
        ("mcp-inspector", "http://localhost:6274/callback", False),
        # Cursor registers three; each is usable, nothing near them is.
        ("cursor", "cursor://anysphere.cursor-mcp/oauth/callback", True),
        ("cursor", "https://www.cursor.com/agents/mcp/oauth/callback", True),
        ("cursor", "cursor://anysphere.cursor-mcp/oauth/other", False),
    ],
)
def test_recorded_redirects_match_as_oauth_2_1_says(client, member, fixture, other, accepted):
    body = json.loads((CLIENTS / f"{fixture}.dcr.json").read_text())["registration"]
    client_id = client.post("/oauth/register/", json.dumps(body), content_type="application/json").json()["client_id"]
    authorization = authorize_params(client_id, resource=gateway_url("acme"), redirect_uri=other)
    page = member.get("/oauth/authorize/", authorization.params)
    if accepted:
        assert page.status_code == 200, page.content
        initial = {name: value for name, value in page.context["form"].initial.items() if value is not None}
        response = member.post("/oauth/authorize/", {**initial, "allow": "Authorize"})
        assert response.status_code == 302 and response["Location"].startswith(other + "?")
    else:
        # Never a redirect to an address the client did not register: an error page.
        assert page.status_code in (400, 403), (page.status_code, page.content[:300])
        assert "Location" not in page


# --- Client ID Metadata Documents ---------------------------------------------------------------

PUBLIC_CIMD = [param for param in CIMD if param.values[0]["document"]["token_endpoint_auth_method"] == "none"]


def _publish(host: MetadataHost, recorded: dict) -> str:
    """Serve the recorded document at its real path on the local host; the client id (its URL)."""
    path = "/" + recorded["client_id"].split("/", 3)[3]
    return host.publish(path, recorded["document"])


@pytest.mark.parametrize("recorded", PUBLIC_CIMD)
def test_recorded_metadata_document_signs_in_and_calls_a_tool(
    client, member, asgi_client, rows, cast, fix_server, metadata_host, recorded
):
    client_id = _publish(metadata_host, recorded)
    _sign_in_and_call(
        client, member, asgi_client, rows, cast, client_id=client_id, redirect_uri=recorded["redirect_uri"]
    )
    application = Application.objects.get(client_id=client_id)
    assert application.registration_source == Application.RegistrationSource.CIMD
    assert application.name == recorded["document"]["client_name"]
    assert metadata_host.requests  # fetched from the https host, not made up


def test_claude_code_metadata_document_redirects_on_any_loopback_port_only(client, member, metadata_host):
    """Claude Code's document names portless loopback URIs; it listens on a random port."""
    recorded = json.loads((CLIENTS / "claude-code.cimd.json").read_text())
    client_id = _publish(metadata_host, recorded)
    for redirect_uri in ("http://localhost:61000/callback", "http://127.0.0.1:61001/callback"):
        authorization = authorize_params(client_id, resource=gateway_url("acme"), redirect_uri=redirect_uri)
        assert consent(member, authorization)["Location"].startswith(redirect_uri + "?")
    elsewhere = authorize_params(client_id, resource=gateway_url("acme"), redirect_uri="http://localhost:61000/other")
    page = member.get("/oauth/authorize/", elsewhere.params)
    assert page.status_code in (400, 403) and "Location" not in page


def test_chatgpt_metadata_document_is_refused_as_it_authenticates_with_private_key_jwt(member, metadata_host):
    """ChatGPT's document asks for private_key_jwt, which the toolkit does not implement:
    no client is created, nothing is redirected; ChatGPT's DCR path (above) is what works."""
    recorded = json.loads((CLIENTS / "chatgpt.cimd.json").read_text())
    client_id = _publish(metadata_host, recorded)
    authorization = authorize_params(client_id, resource=gateway_url("acme"), redirect_uri=recorded["redirect_uri"])
    page = member.get("/oauth/authorize/", authorization.params)
    assert page.status_code >= 400 and "Location" not in page
    assert metadata_host.requests == ["/oauth/client.json"]  # fetched, then refused
    assert not Application.objects.filter(client_id=client_id).exists()


def test_a_metadata_document_on_a_private_address_is_never_fetched(member, authority, settings):
    """The SSRF guard: with private addresses not allowed (production), a client id whose
    host resolves to 127.0.0.1 is refused before any connection is made."""
    settings.MCPNEST_OAUTH_CIMD_CA_FILE = str(authority.ca_file)
    settings.MCPNEST_OAUTH_CIMD_ALLOW_PRIVATE = False
    recorded = json.loads((CLIENTS / "claude-code.cimd.json").read_text())
    with MetadataHost(authority) as host:
        client_id = _publish(host, recorded)
        authorization = authorize_params(client_id, resource=gateway_url("acme"), redirect_uri=recorded["redirect_uri"])
        page = member.get("/oauth/authorize/", authorization.params)
        assert page.status_code >= 400 and "Location" not in page
        assert host.requests == []
    assert not Application.objects.filter(client_id=client_id).exists()
