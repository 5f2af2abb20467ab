"""The authorization server: its metadata, registration, consent, PKCE, redirect matching,
resource binding and refresh rotation (django-oauth-toolkit, as MCPNest configures it)."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, RefreshToken

from apps.audit.models import AuditEvent
from apps.oauth.models import Connection
from apps.oauth.services import clients_prune
from tests.oauth.flow import (
    PUBLIC_URL,
    REDIRECT,
    authorize_params,
    code_from,
    consent,
    exchange,
    gateway_url,
    obtain,
    register,
)


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()


@pytest.fixture
def browser(cast) -> Client:
    """Carol (an acme Member), signed in to the portal."""
    client = Client()
    client.force_login(cast.carol)
    return client


# --- metadata ------------------------------------------------------------------------------


def test_authorization_server_metadata_is_built_from_the_public_url(client):
    document = client.get("/.well-known/oauth-authorization-server", HTTP_HOST="localhost:9999").json()
    assert document["issuer"] == PUBLIC_URL
    assert document["authorization_endpoint"] == f"{PUBLIC_URL}/oauth/authorize/"
    assert document["token_endpoint"] == f"{PUBLIC_URL}/oauth/token/"
    assert document["registration_endpoint"] == f"{PUBLIC_URL}/oauth/register/"
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["response_types_supported"] == ["code"]
    assert set(document["grant_types_supported"]) == {"authorization_code", "refresh_token"}
    assert "none" in document["token_endpoint_auth_methods_supported"]
    assert document["client_id_metadata_document_supported"] is True
    assert document["authorization_response_iss_parameter_supported"] is True
    assert document["scopes_supported"] == ["mcp"]


def test_protected_resource_metadata_per_workspace(client, cast):
    response = client.get("/.well-known/oauth-protected-resource/api/gw/acme", HTTP_HOST="localhost:9999")
    assert response.status_code == 200
    document = response.json()
    assert document["resource"] == gateway_url("acme")
    assert document["authorization_servers"] == [PUBLIC_URL]
    assert document["bearer_methods_supported"] == ["header"]
    assert document["scopes_supported"] == ["mcp"]
    assert "offline_access" not in json.dumps(document)


def test_protected_resource_metadata_of_an_unknown_or_deleted_workspace_is_404(client, cast):
    assert client.get("/.well-known/oauth-protected-resource/api/gw/nope").status_code == 404
    cast.globex.deleted_at = cast.globex.created_at
    cast.globex.save()
    assert client.get("/.well-known/oauth-protected-resource/api/gw/globex").status_code == 404


# --- registration --------------------------------------------------------------------------


def test_dynamic_registration_of_a_public_client_is_audited(client, db):
    registered = register(client, client_name="Claude")
    assert registered["token_endpoint_auth_method"] == "none"
    assert "client_secret" not in registered or not registered["client_secret"]
    application = Application.objects.get(client_id=registered["client_id"])
    assert application.registration_source == "dcr"
    event = AuditEvent.objects.get(action="oauth.client_registered")
    assert event.metadata["client_id"] == registered["client_id"]


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("http://evil.example/callback", "non-loopback"),
        ("https://claude.ai/cb#frag", "fragment"),
        ("javascript://alert(1)", "scheme"),
    ],
)
def test_registration_refuses_unsafe_redirect_uris(client, db, uri, problem):
    response = client.post(
        "/oauth/register/",
        json.dumps({"redirect_uris": [uri], "token_endpoint_auth_method": "none"}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_redirect_uri"
    assert problem in response.json()["error_description"]
    assert not Application.objects.exists()


def test_registration_is_rate_limited_per_ip(client, db, settings):
    settings.MCPNEST_OAUTH_REGISTRATIONS_PER_HOUR = 2
    register(client)
    register(client)
    response = client.post(
        "/oauth/register/",
        json.dumps({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}),
        content_type="application/json",
    )
    assert response.status_code in (401, 403)
    assert Application.objects.count() == 2


def test_malformed_registration_says_what_to_fix(client, db):
    response = client.post("/oauth/register/", b"{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client_metadata"


# --- consent ------------------------------------------------------------------------------


def test_consent_page_names_client_redirect_host_workspace_and_scope(client, browser, cast):
    registered = register(client, client_name="Cursor")
    authorization = authorize_params(registered["client_id"], resource=gateway_url("acme"))
    page = browser.get("/oauth/authorize/", authorization.params)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Cursor" in html
    assert "127.0.0.1:53682" in html
    assert "Acme" in html
    assert "list and call the tools" in html


def test_consent_requires_sign_in(client, db):
    registered = register(client)
    authorization = authorize_params(registered["client_id"], resource=gateway_url("acme"))
    response = Client().get("/oauth/authorize/", authorization.params)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_consent_refuses_a_person_who_is_not_a_member(client, cast):
    registered = register(client)
    dave = Client()
    dave.force_login(cast.dave)  # globex's Owner: not in acme
    authorization = authorize_params(registered["client_id"], resource=gateway_url("acme"))
    page = dave.get("/oauth/authorize/", authorization.params)
    assert page.status_code == 403
    assert "not a member" in page.content.decode()
    # Nor can the hidden field be edited to get a code for acme.
    allowed = Client()
    allowed.force_login(cast.dave)
    own = authorize_params(registered["client_id"], resource=gateway_url("globex"))
    form = allowed.get("/oauth/authorize/", own.params).context["form"]
    data = {**{k: v for k, v in form.initial.items() if v is not None}, "resource": gateway_url("acme"), "allow": "1"}
    refused_before = AuditEvent.objects.filter(action="oauth.consent_refused").count()
    response = allowed.post("/oauth/authorize/", data)
    assert response.status_code == 403
    assert not Connection.objects.exists()
    # Both refusals are on record, the edited form's too.
    assert AuditEvent.objects.filter(action="oauth.consent_refused").count() == refused_before + 1 == 2


def test_consent_for_an_unknown_resource_is_refused(client, browser):
    registered = register(client)
    authorization = authorize_params(registered["client_id"], resource="https://elsewhere.example/mcp")
    assert browser.get("/oauth/authorize/", authorization.params).status_code == 400


def test_without_resource_the_member_picks_the_workspace(client, browser, cast):
    tokens = obtain(client, browser, slug=None, workspace="acme")
    token = AccessToken.objects.get(application__client_id=tokens["client_id"], user__isnull=False)
    assert token.resource == [gateway_url("acme")]
    connection = Connection.objects.get()
    assert (connection.user, connection.workspace) == (cast.carol, cast.acme)


def test_declining_gives_access_denied_and_no_code(client, browser):
    registered = register(client)
    authorization = authorize_params(registered["client_id"], resource=gateway_url("acme"))
    response = consent(browser, authorization, allow=False)
    assert response.status_code == 302
    assert parse_qs(urlsplit(response["Location"]).query)["error"] == ["access_denied"]
    assert not Connection.objects.exists()
    assert AuditEvent.objects.filter(action="oauth.consent_refused", metadata__reason="declined").exists()


def test_consent_and_token_issue_are_audited(client, browser, cast):
    obtain(client, browser, slug="acme")
    consented = AuditEvent.objects.get(action="oauth.consented")
    assert (consented.workspace, consented.actor) == (cast.acme, cast.carol)
    issued = AuditEvent.objects.get(action="oauth.token_issued")
    assert issued.workspace == cast.acme
    assert "mna_" not in json.dumps(issued.metadata)


# --- PKCE, redirects, codes ----------------------------------------------------------------


def test_tokens_are_stored_as_digests_only(client, browser):
    tokens = obtain(client, browser, slug="acme")
    assert tokens["access_token"].startswith("mna_")
    assert tokens["refresh_token"].startswith("mnr_")
    assert tokens["scope"] == "mcp"
    stored = AccessToken.objects.get(user__isnull=False)  # not the RFC 7592 registration token
    assert stored.token == ""
    assert tokens["access_token"] not in stored.token_checksum
    assert RefreshToken.objects.get().token == ""


def test_pkce_is_required(client, browser):
    registered = register(client)
    authorization = authorize_params(registered["client_id"], resource=gateway_url("acme"))
    del authorization.params["code_challenge"], authorization.params["code_challenge_method"]
    response = browser.get("/oauth/authorize/", authorization.params)
    assert response.status_code == 302  # back to the (validated) redirect URI, with an error
    assert "error=invalid_request" in response["Location"]
    assert "code=" not in response["Location"]


def test_plain_pkce_gets_no_code(client, browser):
    registered = register(client)
    authorization = authorize_params(registered["client_id"], resource=gateway_url("acme"))
    authorization.params["code_challenge_method"] = "plain"
    response = consent(browser, authorization)
    assert response.status_code == 302
    assert "error=invalid_request" in response["Location"]
    assert "code=" not in response["Location"]
    assert not Connection.objects.exists()


def test_a_wrong_code_verifier_gets_no_token(client, browser):
    registered = register(client)
    authorization = authorize_params(registered["client_id"], resource=gateway_url("acme"))
    code = code_from(consent(browser, authorization), authorization.params["state"])
    response = exchange(client, client_id=registered["client_id"], code=code, verifier="x" * 50)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_loopback_redirects_match_on_any_port_but_not_another_path(client, browser):
    registered = register(client)
    other_port = authorize_params(
        registered["client_id"], resource=gateway_url("acme"), redirect_uri="http://127.0.0.1:40001/callback"
    )
    assert browser.get("/oauth/authorize/", other_port.params).status_code == 200
    other_path = authorize_params(
        registered["client_id"], resource=gateway_url("acme"), redirect_uri="http://127.0.0.1:53682/elsewhere"
    )
    response = browser.get("/oauth/authorize/", other_path.params)
    assert response.status_code == 400  # never redirected to an unregistered URI


def test_web_redirects_match_exactly(client, browser):
    registered = register(client, redirect_uris=["https://claude.ai/api/mcp/auth_callback"])
    exact = authorize_params(
        registered["client_id"], resource=gateway_url("acme"), redirect_uri="https://claude.ai/api/mcp/auth_callback"
    )
    assert browser.get("/oauth/authorize/", exact.params).status_code == 200
    for near in ("https://claude.ai/api/mcp/auth_callback/", "https://claude.ai:444/api/mcp/auth_callback"):
        params = authorize_params(registered["client_id"], resource=gateway_url("acme"), redirect_uri=near)
        assert browser.get("/oauth/authorize/", params.params).status_code == 400


def test_a_deleted_client_gets_invalid_client(client, browser):
    tokens = obtain(client, browser, slug="acme")
    Application.objects.filter(client_id=tokens["client_id"]).delete()
    response = client.post(
        "/oauth/token/",
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": tokens["client_id"]},
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


# --- refresh --------------------------------------------------------------------------------


def _refresh(client, tokens, **extra):
    return client.post(
        "/oauth/token/",
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": tokens["client_id"],
            **extra,
        },
    )


def test_refresh_rotates_and_keeps_the_audience(client, browser):
    tokens = obtain(client, browser, slug="acme")
    response = _refresh(client, tokens)
    assert response.status_code == 200
    fresh = response.json()
    assert fresh["refresh_token"] != tokens["refresh_token"]
    assert AccessToken.objects.get(token_checksum=_digest(fresh["access_token"])).resource == [gateway_url("acme")]


def test_refresh_cannot_widen_the_audience(client, browser):
    tokens = obtain(client, browser, slug="acme")
    response = _refresh(client, tokens, resource=gateway_url("globex"))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"


def test_reusing_a_rotated_refresh_token_revokes_the_family_and_is_audited(client, browser, cast):
    tokens = obtain(client, browser, slug="acme")
    fresh = _refresh(client, tokens).json()
    replay = _refresh(client, tokens)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    # The thief's replay kills the legitimate client's new tokens too.
    assert _refresh(client, {**tokens, "refresh_token": fresh["refresh_token"]}).status_code == 400
    assert not AccessToken.objects.filter(token_checksum=_digest(fresh["access_token"])).exists()
    events = AuditEvent.objects.filter(action="oauth.refresh_reused").order_by("seq")
    assert events.count() == 2  # the replay, then the legitimate client's revoked token
    assert (events[0].workspace, events[0].actor) == (cast.acme, cast.carol)


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


# --- pruning ---------------------------------------------------------------------------------


def test_idle_registered_clients_are_pruned(client, browser, settings):
    idle = register(client)
    busy = obtain(client, browser, slug="acme")
    Application.objects.update(created=timezone.now() - timedelta(days=settings.MCPNEST_OAUTH_IDLE_CLIENT_DAYS + 1))
    assert clients_prune() == 1
    assert not Application.objects.filter(client_id=idle["client_id"]).exists()
    assert Application.objects.filter(client_id=busy["client_id"]).exists()


def test_registration_and_token_endpoints_are_open_to_browser_clients(client, db):
    preflight = client.options(
        "/oauth/register/", HTTP_ORIGIN="http://localhost:6274", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    )
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "*"
    assert "Content-Type" in preflight["Access-Control-Allow-Headers"]
    registered = client.post(
        "/oauth/register/",
        json.dumps({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}),
        content_type="application/json",
        HTTP_ORIGIN="http://localhost:6274",
    )
    assert registered["Access-Control-Allow-Origin"] == "*"
    token = client.post("/oauth/token/", {"grant_type": "authorization_code", "code": "x"}, HTTP_ORIGIN="http://x")
    assert token.status_code in (400, 401)
    assert token["Access-Control-Allow-Origin"] == "*"
    assert token["Content-Type"] == "application/json"


def test_a_client_cannot_update_itself_to_an_unsafe_redirect_uri(client, db):
    registered = register(client)
    response = client.put(
        f"/oauth/register/{registered['client_id']}/",
        json.dumps({**registered, "redirect_uris": ["http://evil.example/cb"]}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {registered['registration_access_token']}",
    )
    assert response.status_code == 400
    assert Application.objects.get(client_id=registered["client_id"]).redirect_uris == REDIRECT
