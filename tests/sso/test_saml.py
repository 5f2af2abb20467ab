"""SAML 2.0 sign-in end to end: the portal sends an AuthnRequest to the IdP, the IdP posts
back a Response whose Assertion it signed; the portal checks the signature, the audience,
the recipient and the request it answers before it signs anyone in."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from allauth.socialaccount.models import SocialAccount
from django.test import Client
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from apps.accounts.models import User
from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.rbac.roles import Role
from apps.workspaces.models import Membership
from tests.sso.conftest import HOST
from tests.sso.idp import SamlIdP

pytestmark = pytest.mark.django_db

ACS = f"http://{HOST}/accounts/saml/acme/acs/"
SP_ENTITY_ID = f"http://{HOST}/accounts/saml/acme/metadata/"


def start(client: Client, idp) -> str:
    """Begin at the portal; the ID of the AuthnRequest it sent to the IdP."""
    response = client.post("/accounts/saml/acme/login/")
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == idp.sso_url
    request_xml = OneLogin_Saml2_Utils.decode_base64_and_inflate(parse_qs(location.query)["SAMLRequest"][0])
    request_xml = request_xml.decode() if isinstance(request_xml, bytes) else request_xml
    assert f'AssertionConsumerServiceURL="{ACS}"' in request_xml
    return request_xml.split(' ID="', 1)[1].split('"', 1)[0]


def post_response(client: Client, saml_response: str):
    """The browser posts the IdP's response to the ACS; the portal's final answer."""
    response = client.post("/accounts/saml/acme/acs/", {"SAMLResponse": saml_response})
    assert response.status_code == 302
    return client.get(response["Location"])


def signed_in_user(client: Client) -> User | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id) if user_id else None


def test_a_signed_assertion_signs_in_the_member_and_links_them(cast, saml_idp, saml_connection):
    client = Client(HTTP_HOST=HOST)
    request_id = start(client, saml_idp)
    response = post_response(
        client,
        saml_idp.response(acs_url=ACS, audience=SP_ENTITY_ID, in_response_to=request_id, email="carol@example.com"),
    )
    assert response.status_code == 302 and response["Location"] == "/"
    assert signed_in_user(client) == cast.carol
    identity = SocialAccount.objects.get(user=cast.carol)
    assert (identity.provider, identity.uid) == ("acme-saml", "carol@example.com")
    event = AuditEvent.objects.get(action=Action.SSO_SIGNED_IN)
    assert event.workspace == cast.acme and event.actor == cast.carol and event.metadata["provider"] == "saml"


def test_a_first_sign_in_provisions_with_the_role_of_the_groups_attribute(cast, saml_idp, saml_connection):
    client = Client(HTTP_HOST=HOST)
    request_id = start(client, saml_idp)
    post_response(
        client,
        saml_idp.response(
            acs_url=ACS,
            audience=SP_ENTITY_ID,
            in_response_to=request_id,
            email="grace@example.com",
            groups=["staff", "mcp-admins"],
        ),
    )
    grace = signed_in_user(client)
    assert grace is not None and grace.email == "grace@example.com"
    assert Membership.objects.get(workspace=cast.acme, user=grace).role == Role.ADMIN


def test_a_tampered_assertion_is_refused(cast, saml_idp, saml_connection, caplog):
    # Signed for carol (a Member); rewritten on the way to say alice (an Owner).
    client = Client(HTTP_HOST=HOST)
    request_id = start(client, saml_idp)
    forged = saml_idp.response(
        acs_url=ACS,
        audience=SP_ENTITY_ID,
        in_response_to=request_id,
        email="carol@example.com",
        tamper={"carol@example.com": "alice@example.com"},
    )
    response = post_response(client, forged)
    assert response.status_code == 401 and b"Third-Party Login Failure" in response.content
    assert signed_in_user(client) is None
    assert "Signature validation failed" in caplog.text
    assert not SocialAccount.objects.exists()
    assert not AuditEvent.objects.filter(action=Action.SSO_SIGNED_IN).exists()


def test_an_assertion_for_another_service_provider_is_refused(cast, saml_idp, saml_connection, caplog):
    client = Client(HTTP_HOST=HOST)
    request_id = start(client, saml_idp)
    response = post_response(
        client,
        saml_idp.response(
            acs_url=ACS, audience="https://other-sp.test/metadata", in_response_to=request_id, email="carol@example.com"
        ),
    )
    assert response.status_code == 401 and b"Third-Party Login Failure" in response.content
    assert "is not a valid audience" in caplog.text
    assert signed_in_user(client) is None


def test_an_assertion_signed_by_another_key_is_refused(cast, saml_idp, saml_connection, caplog):
    impostor = SamlIdP(entity_id=saml_idp.entity_id, sso_url=saml_idp.sso_url)
    client = Client(HTTP_HOST=HOST)
    request_id = start(client, saml_idp)
    response = post_response(
        client,
        impostor.response(acs_url=ACS, audience=SP_ENTITY_ID, in_response_to=request_id, email="carol@example.com"),
    )
    assert response.status_code == 401 and "Signature validation failed" in caplog.text
    assert signed_in_user(client) is None


def test_an_unsolicited_response_is_refused(cast, saml_idp, saml_connection, caplog):
    client = Client(HTTP_HOST=HOST)
    response = post_response(
        client, saml_idp.response(acs_url=ACS, audience=SP_ENTITY_ID, in_response_to=None, email="carol@example.com")
    )
    assert response.status_code == 401 and "IdP initiated SSO rejected" in caplog.text
    assert signed_in_user(client) is None
