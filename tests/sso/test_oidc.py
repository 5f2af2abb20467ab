"""OpenID Connect sign-in end to end, against a local IdP: the portal sends the browser to
the IdP's authorize URL, the IdP sends it back with a code, the portal redeems the code
(client secret + PKCE), reads the id_token and userinfo, and signs the person in."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
from allauth.mfa.totp.internal.auth import TOTP, format_hotp_value, generate_totp_secret, hotp_value
from allauth.socialaccount.models import SocialAccount
from django.test import Client

from apps.accounts.models import User
from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.rbac.roles import Role
from apps.sso.selectors import sso_required_blocked_user_ids
from apps.sso.views import sso_required_response
from apps.workspaces.models import Membership
from tests.sso.conftest import HOST

pytestmark = [pytest.mark.django_db]


def blocked(workspace, user) -> frozenset[int]:
    """Whom "SSO required" shuts out of ``workspace``'s gateway, of ``user`` alone."""
    return sso_required_blocked_user_ids(workspace_id=workspace.pk, user_ids=[user.pk])


def sign_in(client: Client, idp, start: str, data: dict | None = None):
    """Start at ``start`` (POST), go through the IdP, come back; the portal's last answer."""
    response = client.post(start, data or {})
    assert response.status_code == 302, response.content[:500]
    authorize = urlsplit(response["Location"])
    assert f"{authorize.scheme}://{authorize.netloc}" == idp.url and authorize.path == "/authorize"
    query = parse_qs(authorize.query)
    assert query["client_id"] == [idp.client_id]
    assert set(query["scope"][0].split()) >= {"openid", "email"}
    assert query["code_challenge_method"] == ["S256"]  # PKCE on
    back = urlsplit(idp.authorize(query))
    assert back.path == "/accounts/oidc/acme-oidc/login/callback/"
    return client.get(f"{back.path}?{back.query}")


def signed_in_user(client: Client) -> User | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id) if user_id else None


def test_an_existing_member_signs_in_and_is_linked_to_the_idp(cast, oidc_idp, oidc_connection):
    client = Client(HTTP_HOST=HOST)
    response = sign_in(client, oidc_idp, "/accounts/oidc/acme-oidc/login/")

    assert response.status_code == 302 and response["Location"] == "/"
    assert signed_in_user(client) == cast.carol
    identity = SocialAccount.objects.get(user=cast.carol)
    assert (identity.provider, identity.uid) == ("acme-oidc", "idp-user-1")
    # The code was redeemed with the client's secret and the PKCE verifier.
    (token_request,) = oidc_idp.token_requests
    assert token_request["client_secret"] == [oidc_idp.client_secret] and token_request["code_verifier"]
    # Carol already belongs to acme: her role is not touched, and nobody is added.
    assert Membership.objects.get(workspace=cast.acme, user=cast.carol).role == Role.MEMBER
    event = AuditEvent.objects.get(action=Action.SSO_SIGNED_IN)
    assert event.workspace == cast.acme and event.actor == cast.carol
    assert event.metadata["provider_id"] == "acme-oidc" and event.metadata["provisioned"] is False


def test_the_next_sign_in_finds_the_identity_by_its_subject(cast, oidc_idp, oidc_connection):
    sign_in(Client(HTTP_HOST=HOST), oidc_idp, "/accounts/oidc/acme-oidc/login/")
    # The IdP now sends another address for the same subject: it is still carol.
    oidc_idp.claims = {**oidc_idp.claims, "email": "carol.smith@example.com"}
    client = Client(HTTP_HOST=HOST)
    sign_in(client, oidc_idp, "/accounts/oidc/acme-oidc/login/")
    assert signed_in_user(client) == cast.carol
    assert SocialAccount.objects.filter(user=cast.carol).count() == 1
    assert AuditEvent.objects.filter(action=Action.SSO_SIGNED_IN, actor=cast.carol).count() == 2


def test_a_first_sign_in_creates_the_person_and_the_membership_with_the_role_of_their_groups(
    cast, oidc_idp, oidc_connection
):
    oidc_idp.claims = {
        "sub": "idp-user-2",
        "email": "erin@example.com",
        "email_verified": True,
        "name": "Erin Example",
        "groups": ["everyone", "mcp-admins", "unmapped"],
    }
    client = Client(HTTP_HOST=HOST)
    response = sign_in(client, oidc_idp, "/accounts/oidc/acme-oidc/login/")

    assert response.status_code == 302 and response["Location"] == "/"
    erin = signed_in_user(client)
    assert erin is not None and erin.email == "erin@example.com" and not erin.has_usable_password()
    assert erin.emailaddress_set.get().verified  # the IdP vouches for its own domain
    assert Membership.objects.get(workspace=cast.acme, user=erin).role == Role.ADMIN  # highest wins
    joined = AuditEvent.objects.get(action=Action.MEMBER_JOINED, actor=erin)
    assert joined.workspace == cast.acme and joined.metadata["via"] == "sso" and joined.metadata["role"] == "admin"
    signed_in = AuditEvent.objects.get(action=Action.SSO_SIGNED_IN, actor=erin)
    assert signed_in.metadata["provisioned"] is True and signed_in.metadata["groups"] == [
        "everyone",
        "mcp-admins",
        "unmapped",
    ]


def test_without_just_in_time_provisioning_nobody_new_gets_in(cast, oidc_idp, oidc_connection):
    oidc_connection.jit_provisioning = False
    oidc_connection.save()
    oidc_idp.claims = {"sub": "idp-user-3", "email": "frank@example.com", "email_verified": True}
    client = Client(HTTP_HOST=HOST)
    response = sign_in(client, oidc_idp, "/accounts/oidc/acme-oidc/login/")
    assert response.status_code == 200 and b"Sign Up Closed" in response.content
    assert signed_in_user(client) is None
    assert not User.objects.filter(email="frank@example.com").exists()


def test_an_address_outside_the_connections_domains_neither_links_nor_creates(cast, oidc_idp, oidc_connection):
    # dave@other.test exists; the acme IdP may not speak for other.test.
    cast.dave.email = "dave@other.test"
    cast.dave.save()
    cast.dave.emailaddress_set.update(email="dave@other.test")
    oidc_idp.claims = {"sub": "idp-user-4", "email": "dave@other.test", "email_verified": True}
    client = Client(HTTP_HOST=HOST)
    response = sign_in(client, oidc_idp, "/accounts/oidc/acme-oidc/login/")
    assert response.status_code == 403 and b"did not send an address in its domains" in response.content
    assert signed_in_user(client) is None
    assert not SocialAccount.objects.exists()


def test_an_id_token_for_another_client_is_refused(cast, oidc_idp, oidc_connection):
    oidc_idp.id_token_overrides = {"aud": "someone-else"}
    client = Client(HTTP_HOST=HOST)
    response = sign_in(client, oidc_idp, "/accounts/oidc/acme-oidc/login/")
    assert response.status_code == 401 and b"Third-Party Login Failure" in response.content
    assert signed_in_user(client) is None
    assert not AuditEvent.objects.filter(action=Action.SSO_SIGNED_IN).exists()


def test_a_callback_with_a_state_the_portal_never_issued_is_refused(cast, oidc_idp, oidc_connection):
    client = Client(HTTP_HOST=HOST)
    client.post("/accounts/oidc/acme-oidc/login/")
    response = client.get("/accounts/oidc/acme-oidc/login/callback/?code=forged&state=forged")
    assert response.status_code == 401 and b"Third-Party Login Failure" in response.content
    assert signed_in_user(client) is None and not oidc_idp.token_requests


def test_an_app_without_a_connection_signs_nobody_in(cast, oidc_idp, oidc_connection):
    oidc_connection.delete()
    client = Client(HTTP_HOST=HOST)
    response = sign_in(client, oidc_idp, "/accounts/oidc/acme-oidc/login/")
    assert response.status_code == 403 and b"not connected to a workspace" in response.content
    assert signed_in_user(client) is None


def test_the_company_entry_on_the_login_page_routes_an_address_to_its_idp(cast, oidc_idp, oidc_connection):
    client = Client(HTTP_HOST=HOST)
    login_page = client.get("/accounts/login/")
    assert b'href="/accounts/sso/"' in login_page.content
    assert b"Acme Okta" not in login_page.content  # customers' IdPs are not listed to visitors

    response = sign_in(client, oidc_idp, "/accounts/sso/", {"email": "Carol@Example.com"})
    assert response.status_code == 302
    assert signed_in_user(client) == cast.carol


def test_the_company_entry_keeps_the_next_page(cast, oidc_idp, oidc_connection):
    client = Client(HTTP_HOST=HOST)
    response = sign_in(client, oidc_idp, "/accounts/sso/?next=/w/acme/", {"email": "carol@example.com"})
    assert response["Location"] == "/w/acme/"


def test_an_address_with_no_connection_stays_on_the_form(cast, oidc_connection):
    client = Client(HTTP_HOST=HOST)
    response = client.post("/accounts/sso/", {"email": "someone@elsewhere.test"})
    assert response.status_code == 200
    assert b"Single sign-on is not set up for this domain" in response.content
    assert b"Sign in with your company" in client.get("/accounts/sso/").content


def test_a_member_shut_out_by_sso_required_signs_in_through_the_idp_and_gets_in(cast, oidc_idp, oidc_connection, rf):
    oidc_connection.sso_required = True
    oidc_connection.save()
    assert cast.bob.pk in blocked(cast.acme, cast.bob)
    request = rf.get("/w/acme/servers/")
    request.user = cast.bob
    page = sso_required_response(request, cast.acme)
    assert page.status_code == 403
    assert b'action="/accounts/oidc/acme-oidc/login/"' in page.content
    assert b'name="next" value="/w/acme/servers/"' in page.content

    oidc_idp.claims = {"sub": "bob-sub", "email": "bob@example.com", "email_verified": True}
    client = Client(HTTP_HOST=HOST)
    client.force_login(cast.bob)  # signed in with a password: not enough
    response = sign_in(client, oidc_idp, "/accounts/oidc/acme-oidc/login/", {"next": "/w/acme/servers/"})
    assert response["Location"] == "/w/acme/servers/"
    assert signed_in_user(client) == cast.bob
    assert cast.bob.pk not in blocked(cast.acme, cast.bob)


def test_someone_signed_in_elsewhere_joins_the_workspace_just_in_time(cast, oidc_idp, oidc_connection):
    # Dave (globex) has an example.com address: acme's IdP vouches for him, and he joins acme.
    oidc_idp.claims = {"sub": "dave-sub", "email": "dave@example.com", "email_verified": True, "groups": ["mcp-owners"]}
    client = Client(HTTP_HOST=HOST)
    sign_in(client, oidc_idp, "/accounts/oidc/acme-oidc/login/")
    assert signed_in_user(client) == cast.dave
    assert Membership.objects.get(workspace=cast.acme, user=cast.dave).role == Role.OWNER
    assert Membership.objects.get(workspace=cast.globex, user=cast.dave).role == Role.OWNER  # untouched


def test_a_person_with_totp_still_gives_their_code_after_the_idp(cast, oidc_idp, oidc_connection):
    secret = generate_totp_secret()
    TOTP.activate(cast.carol, secret)
    client = Client(HTTP_HOST=HOST)
    response = sign_in(client, oidc_idp, "/accounts/oidc/acme-oidc/login/")
    assert response.status_code == 302 and response["Location"] == "/accounts/2fa/authenticate/"
    assert signed_in_user(client) is None
    assert not AuditEvent.objects.filter(action=Action.SSO_SIGNED_IN).exists()

    code = format_hotp_value(hotp_value(secret, int(time.time()) // 30))
    response = client.post("/accounts/2fa/authenticate/", {"code": code})
    assert response.status_code == 302
    assert signed_in_user(client) == cast.carol
    event = AuditEvent.objects.get(action=Action.SSO_SIGNED_IN)
    assert event.workspace == cast.acme and event.actor == cast.carol
