"""The authorization code flow with PKCE, as an MCP client runs it, through Django's test
client: register, authorize (a signed-in member consents), exchange the code."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from django.test import Client

PUBLIC_URL = "http://127.0.0.1:8000"  # MCPNEST_PUBLIC_URL's default, which tests keep
REDIRECT = "http://127.0.0.1:53682/callback"


def gateway_url(slug: str) -> str:
    return f"{PUBLIC_URL}/api/gw/{slug}"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def register(client: Client, **metadata) -> dict:
    body = {
        "client_name": "Test client",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        **metadata,
    }
    response = client.post("/oauth/register/", json.dumps(body), content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()


@dataclass
class Authorization:
    params: dict
    verifier: str


def authorize_params(client_id: str, *, resource: str | None, redirect_uri: str = REDIRECT, **extra) -> Authorization:
    verifier, challenge = pkce()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "mcp",
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    if resource is not None:
        params["resource"] = resource
    return Authorization(params=params, verifier=verifier)


def consent(browser: Client, authorization: Authorization, *, workspace: str | None = None, allow: bool = True):
    """GET the consent page, then POST it back as the member would; the response."""
    page = browser.get("/oauth/authorize/", authorization.params)
    assert page.status_code == 200, page.content
    form = page.context["form"]
    data = {name: value for name, value in form.initial.items() if value is not None}
    if workspace:
        data["workspace"] = workspace
    if allow:
        data["allow"] = "Authorize"
    return browser.post("/oauth/authorize/", data)


def code_from(response, state: str) -> str:
    assert response.status_code == 302, response.content
    query = parse_qs(urlsplit(response["Location"]).query)
    assert query["state"] == [state]
    assert query["iss"] == [PUBLIC_URL]  # RFC 9207
    return query["code"][0]


def exchange(client: Client, *, client_id: str, code: str, verifier: str, redirect_uri: str = REDIRECT, **extra):
    return client.post(
        "/oauth/token/",
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": client_id,
            "code_verifier": verifier,
            **extra,
        },
    )


def obtain(client: Client, browser: Client, *, slug: str | None, workspace: str | None = None) -> dict:
    """A registered client's token set for the signed-in member of ``browser``."""
    registered = register(client)
    authorization = authorize_params(registered["client_id"], resource=gateway_url(slug) if slug else None)
    code = code_from(consent(browser, authorization, workspace=workspace), authorization.params["state"])
    response = exchange(client, client_id=registered["client_id"], code=code, verifier=authorization.verifier)
    assert response.status_code == 200, response.content
    return {**response.json(), "client_id": registered["client_id"]}
