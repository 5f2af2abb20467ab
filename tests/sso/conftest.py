"""SSO fixtures: the cast's workspace "acme" with a company IdP for example.com, over
OpenID Connect (a local provider) or SAML 2.0 (signed responses built in the test)."""

from __future__ import annotations

import pytest
from allauth.socialaccount.models import SocialApp

from apps.sso.models import SsoConnection
from tests.sso.idp import OidcIdP, SamlIdP

HOST = "portal.mcpnest.test"  # a dotted host: python3-saml refuses single-label URLs


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch, settings):
    # allauth reaches the local IdP with requests, which would honour a proxy from the environment.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, HOST]


@pytest.fixture
def oidc_idp():
    with OidcIdP(
        client_id="mcpnest-portal",
        client_secret="oidc-client-secret-9f2c41d7",
        claims={"sub": "idp-user-1", "email": "carol@example.com", "email_verified": True, "groups": []},
    ) as idp:
        yield idp


@pytest.fixture
def oidc_connection(cast, oidc_idp) -> SsoConnection:
    app = SocialApp.objects.create(
        provider="openid_connect",
        provider_id="acme-oidc",
        name="Acme Okta",
        client_id=oidc_idp.client_id,
        secret=oidc_idp.client_secret,
        settings={"server_url": oidc_idp.url},
    )
    return SsoConnection.objects.create(
        workspace=cast.acme,
        social_app=app,
        email_domains=["example.com"],
        jit_provisioning=True,
        group_roles={"mcp-admins": "admin", "mcp-owners": "owner", "everyone": "member"},
    )


@pytest.fixture
def saml_idp() -> SamlIdP:
    return SamlIdP(entity_id="https://idp.acme.test/metadata", sso_url="https://idp.acme.test/sso")


@pytest.fixture
def saml_connection(cast, saml_idp) -> SsoConnection:
    app = SocialApp.objects.create(
        provider="saml",
        provider_id="acme-saml",
        name="Acme ADFS",
        client_id="acme",  # the organisation slug in the SAML URLs
        settings={
            "idp": {"entity_id": saml_idp.entity_id, "sso_url": saml_idp.sso_url, "x509cert": saml_idp.cert_pem},
            "advanced": {"want_assertion_signed": True},
        },
    )
    return SsoConnection.objects.create(
        workspace=cast.acme,
        social_app=app,
        email_domains=["example.com"],
        jit_provisioning=True,
        group_roles={"mcp-admins": "admin"},
    )
