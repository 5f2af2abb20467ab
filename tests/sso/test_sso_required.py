""" "SSO required": who is shut out of the workspace, and the gateway reload when that changes."""

from __future__ import annotations

import pytest
from allauth.socialaccount.models import SocialAccount, SocialApp
from django.core.exceptions import ValidationError
from django.test import Client

from apps.core.epochs import workspace_scope
from apps.core.models import Epoch
from apps.sso.models import SsoConnection
from apps.sso.selectors import connection_for_email, sso_required_blocked_user_ids
from tests.oauth.flow import authorize_params, gateway_url, register
from tests.sso.conftest import HOST
from tests.sso.test_oidc import blocked, sign_in

pytestmark = pytest.mark.django_db


def version(workspace) -> int:
    return Epoch.objects.filter(scope=workspace_scope(workspace.pk)).values_list("version", flat=True).first() or 0


def test_when_sso_is_required_only_members_with_an_identity_at_the_idp_get_in(cast, oidc_connection):
    SocialAccount.objects.create(user=cast.carol, provider="acme-oidc", uid="carol-sub")
    SocialAccount.objects.create(user=cast.bob, provider="another-idp", uid="bob-sub")  # not this IdP
    members = [cast.alice.pk, cast.bob.pk, cast.carol.pk]

    # Not required yet: nobody is blocked, and it costs one query.
    assert sso_required_blocked_user_ids(workspace_id=cast.acme.pk, user_ids=members) == frozenset()
    assert cast.bob.pk not in blocked(cast.acme, cast.bob)

    oidc_connection.sso_required = True
    oidc_connection.save()
    assert sso_required_blocked_user_ids(workspace_id=cast.acme.pk, user_ids=members) == {cast.alice.pk, cast.bob.pk}
    assert cast.bob.pk in blocked(cast.acme, cast.bob)
    assert cast.carol.pk not in blocked(cast.acme, cast.carol)
    # Another workspace's rules are its own.
    assert sso_required_blocked_user_ids(workspace_id=cast.globex.pk, user_ids=[cast.dave.pk]) == frozenset()


def test_the_check_costs_two_queries_whatever_the_number_of_members(cast, oidc_connection, django_assert_num_queries):
    oidc_connection.sso_required = True
    oidc_connection.save()
    with django_assert_num_queries(2):
        sso_required_blocked_user_ids(workspace_id=cast.acme.pk, user_ids=range(1, 500))


def test_requiring_sso_and_deleting_the_connection_reload_the_workspace(cast, oidc_connection):
    before = version(cast.acme)
    oidc_connection.sso_required = True
    oidc_connection.save()
    assert version(cast.acme) == before + 1
    oidc_connection.delete()
    assert version(cast.acme) == before + 2
    assert version(cast.globex) == 0


def test_an_identity_created_or_removed_reloads_the_workspace_of_its_idp(cast, oidc_connection):
    before = version(cast.acme)
    identity = SocialAccount.objects.create(user=cast.bob, provider="acme-oidc", uid="bob-sub")
    assert version(cast.acme) == before + 1
    identity.save()  # allauth re-saves it at each sign-in: nothing changed for the gateway
    assert version(cast.acme) == before + 1
    identity.delete()
    assert version(cast.acme) == before + 2
    SocialAccount.objects.create(user=cast.bob, provider="unrelated", uid="x")
    assert version(cast.acme) == before + 2


def test_a_changed_idp_app_reloads_its_workspace(cast, oidc_connection):
    before = version(cast.acme)
    oidc_connection.social_app.provider_id = "acme-oidc-2"
    oidc_connection.social_app.save()
    assert version(cast.acme) == before + 1


def test_addresses_route_by_domain_to_live_workspaces_only(cast, oidc_connection):
    assert connection_for_email("Someone@EXAMPLE.com") == oidc_connection
    assert connection_for_email("someone@sub.example.com") is None
    assert connection_for_email("not-an-address") is None
    cast.acme.deleted_at = cast.acme.created_at
    cast.acme.save()
    assert connection_for_email("someone@example.com") is None


def test_a_domain_routes_to_one_connection_only(cast, oidc_connection, saml_idp):
    app = SocialApp.objects.create(provider="saml", provider_id="globex-saml", name="Globex", client_id="globex")
    other = SsoConnection(workspace=cast.globex, social_app=app, email_domains=["Globex.test", "example.com"])
    with pytest.raises(ValidationError) as refused:
        other.full_clean()
    assert "Already routed to another connection: example.com (acme)" in str(refused.value)
    other.email_domains = ["@Globex.test", "globex.test"]
    other.full_clean()
    assert other.email_domains == ["globex.test"]


def test_a_connection_needs_an_oidc_or_saml_app_with_a_provider_id_and_valid_roles(cast, oidc_connection):
    oidc_connection.social_app.provider_id = ""
    oidc_connection.group_roles = {"admins": "superuser"}
    oidc_connection.email_domains = ["not a domain"]
    with pytest.raises(ValidationError) as refused:
        oidc_connection.full_clean()
    assert set(refused.value.message_dict) == {"social_app", "group_roles", "email_domains"}


def test_the_highest_mapped_group_wins(oidc_connection):
    assert oidc_connection.role_for_groups([]) == "member"
    assert oidc_connection.role_for_groups(["unmapped"]) == "member"
    assert oidc_connection.role_for_groups(["mcp-admins", "everyone"]) == "admin"
    assert oidc_connection.role_for_groups(["mcp-admins", "mcp-owners"]) == "owner"


def test_the_portal_lets_in_only_sessions_signed_in_through_the_idp(cast, oidc_idp, oidc_connection):
    oidc_connection.sso_required = True
    oidc_connection.save()
    oidc_idp.claims = {"sub": "bob-sub", "email": "bob@example.com", "email_verified": True}
    password = Client(HTTP_HOST=HOST)
    password.force_login(cast.bob)
    page = password.get(f"/w/{cast.acme.slug}/")
    assert page.status_code == 403
    assert "/accounts/oidc/acme-oidc/login/" in page.content.decode()

    sso = Client(HTTP_HOST=HOST)
    sign_in(sso, oidc_idp, "/accounts/oidc/acme-oidc/login/")
    assert sso.get(f"/w/{cast.acme.slug}/").status_code == 200
    # Bob now has an identity at the IdP, but a password session still does not do.
    assert cast.bob.pk not in blocked(cast.acme, cast.bob)
    assert password.get(f"/w/{cast.acme.slug}/").status_code == 403
    # Another workspace without the rule is unaffected.
    password.force_login(cast.dave)
    assert password.get(f"/w/{cast.globex.slug}/").status_code == 200


def test_connecting_an_oauth_client_needs_a_session_signed_in_through_the_idp(cast, oidc_idp, oidc_connection):
    oidc_connection.sso_required = True
    oidc_connection.save()
    oidc_idp.claims = {"sub": "bob-sub", "email": "bob@example.com", "email_verified": True}
    registered = register(Client())
    consent_url = "/oauth/authorize/"
    params = authorize_params(registered["client_id"], resource=gateway_url("acme")).params
    sso = Client(HTTP_HOST=HOST)
    sign_in(sso, oidc_idp, "/accounts/oidc/acme-oidc/login/")
    assert sso.get(consent_url, params).status_code == 200
    password = Client(HTTP_HOST=HOST)
    password.force_login(cast.bob)
    refused = password.get(consent_url, params)
    assert refused.status_code == 403
    assert "requires single sign-on" in refused.content.decode()
