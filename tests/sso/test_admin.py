"""The SSO admin: connections read like a spec and are audited; IdP secrets are write-only."""

from __future__ import annotations

import json

import pytest
from allauth.socialaccount.models import SocialApp
from django.test import Client
from django.urls import reverse

from apps.accounts.models import User
from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.sso.models import SsoConnection

pytestmark = pytest.mark.django_db

SAML_KEY = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC-sp-signing-key\n-----END PRIVATE KEY-----"


@pytest.fixture
def operator(db) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser(email="root@mcpnest.test", password="x" * 12))
    return client


def app_form(app: SocialApp, **changes) -> dict:
    data = {
        "provider": app.provider,
        "provider_id": app.provider_id,
        "name": app.name,
        "client_id": app.client_id,
        "secret": "",
        "key": app.key,
        "settings": "",
    }
    data.update(changes)
    return data


def test_the_client_secret_is_never_shown(operator, oidc_connection, oidc_idp):
    app = oidc_connection.social_app
    for url in (
        reverse("admin:socialaccount_socialapp_change", args=[app.pk]),
        reverse("admin:socialaccount_socialapp_changelist"),
        reverse("admin:sso_ssoconnection_change", args=[oidc_connection.pk]),
        reverse("admin:sso_ssoconnection_changelist"),
    ):
        response = operator.get(url)
        assert response.status_code == 200, url
        assert oidc_idp.client_secret.encode() not in response.content, url
    assert b"acme-oidc" in operator.get(reverse("admin:sso_ssoconnection_changelist")).content
    page = operator.get(reverse("admin:sso_ssoconnection_change", args=[oidc_connection.pk]))
    assert b"<code>/accounts/oidc/acme-oidc/login/callback/</code>" in page.content


def test_the_connection_page_tells_the_saml_idp_where_to_post(operator, saml_connection):
    page = operator.get(reverse("admin:sso_ssoconnection_change", args=[saml_connection.pk]))
    assert b"<code>/accounts/saml/acme/acs/</code>" in page.content
    assert b"<code>/accounts/saml/acme/metadata/</code>" in page.content


def test_a_saml_private_key_in_the_settings_is_masked_and_kept(operator, saml_connection):
    app = saml_connection.social_app
    app.settings = {**app.settings, "advanced": {**app.settings["advanced"], "private_key": SAML_KEY}}
    app.save()
    url = reverse("admin:socialaccount_socialapp_change", args=[app.pk])
    page = operator.get(url)
    assert b"sp-signing-key" not in page.content and b"********" in page.content

    # Saved back as shown (masked), the key stays; the rest of the settings change.
    shown = page.context["adminform"].form.initial["settings"]
    shown["advanced"]["want_assertion_signed"] = True
    shown["attribute_mapping"] = {"email": "mail"}
    response = operator.post(url, app_form(app, settings=json.dumps(shown)))
    assert response.status_code == 302, response.content[:2000]
    app.refresh_from_db()
    assert app.settings["advanced"]["private_key"] == SAML_KEY
    assert app.settings["attribute_mapping"] == {"email": "mail"}


def test_an_empty_secret_box_keeps_the_secret_and_a_new_one_replaces_it(operator, oidc_connection, oidc_idp):
    app = oidc_connection.social_app
    url = reverse("admin:socialaccount_socialapp_change", args=[app.pk])
    settings_json = json.dumps({"server_url": oidc_idp.url})

    assert operator.post(url, app_form(app, name="Acme Okta (prod)", settings=settings_json)).status_code == 302
    app.refresh_from_db()
    assert app.secret == oidc_idp.client_secret and app.name == "Acme Okta (prod)"
    event = AuditEvent.objects.filter(action=Action.SSO_CONNECTION_CHANGED).latest("id")
    assert event.workspace == oidc_connection.workspace and event.metadata["changed"] == ["name"]

    assert operator.post(url, app_form(app, secret="rotated-secret-0001", settings=settings_json)).status_code == 302
    app.refresh_from_db()
    assert app.secret == "rotated-secret-0001"
    event = AuditEvent.objects.filter(action=Action.SSO_CONNECTION_CHANGED).latest("id")
    assert event.metadata["changed"] == ["secret"]
    assert "rotated-secret-0001" not in str(event.metadata)


def test_saving_a_connection_in_the_admin_is_audited(operator, cast, oidc_connection):
    url = reverse("admin:sso_ssoconnection_change", args=[oidc_connection.pk])
    response = operator.post(
        url,
        {
            "social_app": oidc_connection.social_app.pk,
            "email_domains": '["example.com", "Example.org"]',
            "sso_required": "on",
            "jit_provisioning": "on",
            "groups_claim": "groups",
            "group_roles": '{"mcp-admins": "admin"}',
        },
    )
    assert response.status_code == 302, response.content[:2000]
    oidc_connection.refresh_from_db()
    assert oidc_connection.sso_required and oidc_connection.email_domains == ["example.com", "example.org"]
    event = AuditEvent.objects.get(action=Action.SSO_CONNECTION_CHANGED)
    assert event.workspace == cast.acme and event.actor.email == "root@mcpnest.test"
    assert event.metadata["change"] == "updated" and event.metadata["sso_required"] is True
    assert set(event.metadata["changed"]) == {"email_domains", "sso_required", "group_roles"}


def test_a_connection_refused_by_its_rules_is_not_saved(operator, cast, oidc_connection):
    url = reverse("admin:sso_ssoconnection_change", args=[oidc_connection.pk])
    response = operator.post(
        url,
        {
            "social_app": oidc_connection.social_app.pk,
            "email_domains": '["example.com"]',
            "groups_claim": "groups",
            "group_roles": '{"mcp-admins": "root"}',
        },
    )
    assert response.status_code == 200 and b"An object of group name" in response.content
    assert not AuditEvent.objects.filter(action=Action.SSO_CONNECTION_CHANGED).exists()


def test_deleting_a_connection_in_the_admin_is_audited(operator, cast, oidc_connection):
    url = reverse("admin:sso_ssoconnection_delete", args=[oidc_connection.pk])
    assert operator.post(url, {"post": "yes"}).status_code == 302
    assert not SsoConnection.objects.exists()
    event = AuditEvent.objects.get(action=Action.SSO_CONNECTION_CHANGED)
    assert event.workspace == cast.acme and event.metadata["change"] == "deleted"


def test_adding_a_connection_in_the_admin_is_audited(operator, cast):
    app = SocialApp.objects.create(provider="saml", provider_id="globex-saml", name="Globex ADFS", client_id="globex")
    response = operator.post(
        reverse("admin:sso_ssoconnection_add"),
        {
            "workspace": cast.globex.pk,
            "social_app": app.pk,
            "email_domains": '["globex.test"]',
            "groups_claim": "memberOf",
            "group_roles": "{}",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    connection = SsoConnection.objects.get(workspace=cast.globex)
    assert connection.social_app == app and not connection.sso_required
    event = AuditEvent.objects.get(action=Action.SSO_CONNECTION_CHANGED)
    assert event.workspace == cast.globex and event.metadata["change"] == "created"
    assert event.metadata["provider"] == "saml" and event.metadata["email_domains"] == ["globex.test"]
