"""People over SCIM, as Entra ID and Okta send them: provisioning, matching by filter,
updates, deprovisioning (which takes every way into the workspace away at once) and
reactivation (which does not give tokens back)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from allauth.usersessions.models import UserSession
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application

from apps.accounts.models import User
from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.oauth.selectors import gateway_resource
from apps.rbac.roles import Role
from apps.scim.models import ScimIdentity
from apps.tokens.models import GatewayToken
from apps.tokens.services import token_create
from apps.workspaces.models import Membership
from tests.factories import MembershipFactory, UserFactory
from tests.scim.conftest import body

pytestmark = pytest.mark.django_db

ENTRA_USER = "test_user_ab6490ee-1e48-479e-a20b-2d77186b5dd1@testuser.com"  # its userName, lower-cased


def provision(idp, name="entra_create_user") -> dict:
    response = idp.post("/Users", body(name))
    assert response.status_code == 201, response.content
    assert response["Content-Type"] == "application/scim+json"
    return response.json()


def oauth_token(user: User, slug: str) -> AccessToken:
    app = Application.objects.create(
        name="Claude",
        client_type=Application.CLIENT_PUBLIC,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris="http://127.0.0.1:33418/callback",
    )
    return AccessToken.objects.create(
        user=user,
        application=app,
        token=f"oauth-{user.pk}-{slug}",
        expires=timezone.now() + timedelta(hours=1),
        scope="mcp",
        resource=[gateway_resource(slug)],
    )


def signed_in(user: User, cast) -> Client:
    """A signed-in browser of ``user``, with the UserSession allauth records when someone
    signs in through it (``force_login`` skips allauth's sign-in signal)."""
    client = Client()
    client.force_login(user)
    UserSession.objects.create(user=user, session_key=client.session.session_key, ip="127.0.0.1", user_agent="pytest")
    assert client.get("/").wsgi_request.user == user
    return client


# --- Provisioning -----------------------------------------------------------------------


def test_entra_create_user_makes_a_member_with_an_account_the_idp_owns(cast, acme_idp):
    created = provision(acme_idp)

    user = User.objects.get(email=ENTRA_USER)
    assert created["id"] == str(user.pk)
    assert created["userName"] == ENTRA_USER
    assert created["externalId"] == "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"
    assert created["active"] is True
    assert created["meta"]["location"] == f"http://testserver/scim/v2/Users/{user.pk}"
    assert (user.first_name, user.last_name) == ("givenName", "familyName")
    assert not user.has_usable_password()
    assert Membership.objects.get(workspace=cast.acme, user=user).role == Role.MEMBER
    identity = ScimIdentity.objects.get(workspace=cast.acme, user=user)
    assert identity.created_account and identity.external_id == "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"
    event = AuditEvent.objects.get(action=Action.SCIM_USER_PROVISIONED)
    assert (event.workspace, event.actor, event.target_repr) == (cast.acme, None, ENTRA_USER)
    assert event.metadata["linked"] is False and event.metadata["token_prefix"].startswith("mns_")
    assert AuditEvent.objects.filter(action=Action.MEMBER_ADDED, target_repr=ENTRA_USER).exists()


def test_okta_create_user_ignores_the_password_it_sends(cast, acme_idp):
    created = provision(acme_idp, "okta_create_user")
    user = User.objects.get(email="test.user@okta.local")
    assert created["name"]["givenName"] == "Test" and created["externalId"] == "00ujl29u0le5T6Aj10h7"
    assert not user.has_usable_password()


def test_entra_matches_people_with_a_username_filter(cast, acme_idp):
    provision(acme_idp)
    # Entra keeps the case the directory has; userName compares case-insensitively.
    mixed = "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1@testuser.com"
    found = acme_idp.get(f'/Users?filter=userName eq "{mixed}"').json()
    assert found["totalResults"] == 1 and found["Resources"][0]["userName"] == ENTRA_USER
    # An existing member (not provisioned by the IdP) is found too, so the IdP links, not duplicates.
    member = acme_idp.get('/Users?filter=userName eq "carol@example.com"').json()
    assert [r["id"] for r in member["Resources"]] == [str(cast.carol.pk)]
    by_external = acme_idp.get('/Users?filter=externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"').json()
    assert by_external["totalResults"] == 1
    nobody = acme_idp.get('/Users?filter=userName eq "nobody@example.com"').json()
    assert (nobody["totalResults"], nobody["Resources"]) == (0, [])


def test_an_unknown_filter_attribute_is_an_error_not_everyone(cast, acme_idp):
    response = acme_idp.get('/Users?filter=nickName eq "x"')
    assert response.status_code == 400
    assert response.json()["scimType"] == "invalidFilter"
    assert acme_idp.get("/Users?filter=userName eq").status_code == 400


def test_posting_someone_the_tenant_already_sees_is_a_conflict(cast, acme_idp):
    provision(acme_idp)
    again = acme_idp.post("/Users", body("entra_create_user"))
    assert again.status_code == 409
    assert again.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    member = acme_idp.post("/Users", {"schemas": [], "userName": "carol@example.com"})
    assert member.status_code == 409


def test_an_existing_account_elsewhere_is_linked_not_taken_over(cast, globex_idp):
    # carol is in acme; globex's IdP provisions her address: she joins globex, but globex's
    # IdP may neither rename her account nor switch it off.
    created = globex_idp.post("/Users", {"userName": "carol@example.com", "name": {"givenName": "Mallory"}})
    assert created.status_code == 201, created.content
    carol_id = created.json()["id"]
    assert Membership.objects.filter(workspace=cast.globex, user=cast.carol).exists()
    assert not ScimIdentity.objects.get(workspace=cast.globex, user=cast.carol).created_account
    event = AuditEvent.objects.get(action=Action.SCIM_USER_PROVISIONED)
    assert event.metadata["linked"] is True

    renamed = globex_idp.put(f"/Users/{carol_id}", {"userName": "mallory@evil.example", "name": {"givenName": "M"}})
    assert renamed.status_code == 200
    cast.carol.refresh_from_db()
    assert (cast.carol.email, cast.carol.first_name) == ("carol@example.com", "")

    off = globex_idp.patch(f"/Users/{carol_id}", body("okta_deactivate_user"))
    assert off.status_code == 200 and off.json()["active"] is False
    cast.carol.refresh_from_db()
    assert cast.carol.is_active  # her account, and her place in acme, are untouched
    assert Membership.objects.filter(workspace=cast.acme, user=cast.carol).exists()
    assert not Membership.objects.filter(workspace=cast.globex, user=cast.carol).exists()
    # She stays visible to globex's IdP, which can bring her back.
    back = globex_idp.patch(f"/Users/{carol_id}", body("okta_reactivate_user"))
    assert back.json()["active"] is True
    assert Membership.objects.filter(workspace=cast.globex, user=cast.carol).exists()


# --- Updates --------------------------------------------------------------------------


def test_entra_patches_names_and_username_of_an_account_it_owns(cast, acme_idp):
    user_id = provision(acme_idp)["id"]
    patched = acme_idp.patch(f"/Users/{user_id}", body("entra_update_user_multivalued"))
    assert patched.status_code == 200, patched.content
    assert patched.json()["name"]["familyName"] == "updatedFamilyName"
    # The account's address follows userName, not emails[type eq "work"].
    assert patched.json()["userName"] == ENTRA_USER
    renamed = acme_idp.patch(f"/Users/{user_id}", body("entra_update_user_single_valued")).json()
    assert renamed["userName"] == "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"
    assert User.objects.get(pk=user_id).email == "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"
    event = AuditEvent.objects.filter(action=Action.SCIM_USER_UPDATED).latest("seq")
    assert event.metadata["changes"]["email"] == [ENTRA_USER, "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"]


def test_a_username_taken_by_another_account_is_a_conflict(cast, acme_idp):
    user_id = provision(acme_idp)["id"]
    taken = acme_idp.patch(
        f"/Users/{user_id}",
        {"schemas": [], "Operations": [{"op": "replace", "path": "userName", "value": "dave@example.com"}]},
    )
    assert taken.status_code == 409
    assert User.objects.get(pk=user_id).email == ENTRA_USER


def test_okta_put_replaces_the_name(cast, acme_idp):
    user_id = provision(acme_idp, "okta_create_user")["id"]
    put = acme_idp.put(
        f"/Users/{user_id}", body("okta_update_user_put", **{"23a35c27-23d3-4c03-b4c5-6443c09e7173": user_id})
    )
    assert put.status_code == 200, put.content
    assert put.json()["name"] == {"givenName": "Another", "familyName": "User"}
    assert put.json()["displayName"] == "Another User"


def test_a_patch_with_a_bad_active_value_changes_nothing(cast, acme_idp):
    user_id = provision(acme_idp)["id"]
    response = acme_idp.patch(
        f"/Users/{user_id}", {"Operations": [{"op": "Replace", "path": "active", "value": "maybe"}]}
    )
    assert response.status_code == 400
    assert User.objects.get(pk=user_id).is_active


# --- Deprovisioning -------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["entra_disable_user", "entra_disable_user_string_false", "okta_deactivate_user"])
def test_deactivation_takes_every_way_in_away_at_once(cast, acme_idp, shape):
    user_id = provision(acme_idp)["id"]
    user = User.objects.get(pk=user_id)
    token_create(access=cast.access(cast.alice), member=user)
    grant = oauth_token(user, "acme")
    signed_in(user, cast)

    response = acme_idp.patch(f"/Users/{user_id}", body(shape))

    assert response.status_code == 200, response.content
    assert response.json()["active"] is False
    user.refresh_from_db()
    assert not user.is_active
    assert GatewayToken.objects.get(user=user).revoked_at is not None
    assert not AccessToken.objects.filter(pk=grant.pk).exists()
    assert not UserSession.objects.filter(user=user).exists()
    event = AuditEvent.objects.get(action=Action.SCIM_USER_DEPROVISIONED)
    assert event.metadata["tokens_revoked"] == 1
    assert event.metadata["oauth_grants_revoked"] == 1
    assert event.metadata["sessions_ended"] == 1
    assert event.metadata["account_deactivated"] is True
    # Deactivating again records nothing more.
    acme_idp.patch(f"/Users/{user_id}", body(shape))
    assert AuditEvent.objects.filter(action=Action.SCIM_USER_DEPROVISIONED).count() == 1


def test_a_signed_in_browser_session_ends_with_deprovisioning(cast, acme_idp):
    user_id = provision(acme_idp)["id"]
    user = User.objects.get(pk=user_id)
    browser = signed_in(user, cast)
    acme_idp.patch(f"/Users/{user_id}", body("entra_disable_user"))
    assert browser.get("/").wsgi_request.user.is_anonymous


def test_reactivation_brings_the_account_back_but_not_its_tokens(cast, acme_idp):
    user_id = provision(acme_idp, "okta_create_user")["id"]
    user = User.objects.get(pk=user_id)
    token_create(access=cast.access(cast.alice), member=user)
    acme_idp.patch(f"/Users/{user_id}", body("okta_deactivate_user"))

    back = acme_idp.patch(f"/Users/{user_id}", body("okta_reactivate_user"))

    assert back.status_code == 200 and back.json()["active"] is True
    user.refresh_from_db()
    assert user.is_active
    assert Membership.objects.filter(workspace=cast.acme, user=user).exists()
    assert not GatewayToken.objects.active().filter(user=user).exists()
    event = AuditEvent.objects.filter(action=Action.SCIM_USER_UPDATED).latest("seq")
    assert event.metadata["changes"] == {"reactivated": True}


def test_deactivating_an_existing_member_removes_them_from_the_workspace_only(cast, acme_idp):
    # carol joined acme by invitation: her account is hers, so she only loses acme.
    token_create(access=cast.access(cast.carol), member=cast.carol)
    response = acme_idp.patch(f"/Users/{cast.carol.pk}", body("entra_disable_user_string_false"))
    assert response.status_code == 200 and response.json()["active"] is False
    cast.carol.refresh_from_db()
    assert cast.carol.is_active
    assert not Membership.objects.filter(workspace=cast.acme, user=cast.carol).exists()
    assert not GatewayToken.objects.active().filter(user=cast.carol).exists()
    assert AuditEvent.objects.filter(action=Action.MEMBER_REMOVED, target_repr="carol@example.com").exists()
    # Still visible to acme's IdP (it provisioned nothing, but it has acted on her).
    assert acme_idp.get(f"/Users/{cast.carol.pk}").status_code == 200


def test_the_last_owner_is_not_removed_and_nothing_else_happens(cast, acme_idp):
    token_create(access=cast.access(cast.alice), member=cast.alice)
    response = acme_idp.patch(f"/Users/{cast.alice.pk}", body("entra_disable_user"))
    assert response.status_code == 409
    assert "Owner" in response.json()["detail"]
    assert Membership.objects.get(workspace=cast.acme, user=cast.alice).role == Role.OWNER
    assert GatewayToken.objects.active().filter(user=cast.alice).exists()  # rolled back together
    assert not AuditEvent.objects.filter(action=Action.SCIM_USER_DEPROVISIONED).exists()


def test_delete_deprovisions_and_forgets(cast, acme_idp):
    user_id = provision(acme_idp)["id"]
    user = User.objects.get(pk=user_id)
    token_create(access=cast.access(cast.alice), member=user)
    assert acme_idp.delete(f"/Users/{user_id}").status_code == 204
    user.refresh_from_db()
    assert not user.is_active
    assert not Membership.objects.filter(user=user).exists()
    assert not ScimIdentity.objects.filter(user=user).exists()
    assert not GatewayToken.objects.active().filter(user=user).exists()
    assert acme_idp.get(f"/Users/{user_id}").status_code == 404
    event = AuditEvent.objects.get(action=Action.SCIM_USER_DEPROVISIONED)
    assert event.metadata["deleted"] is True


def test_an_account_the_idp_created_but_that_joined_another_workspace_is_not_switched_off(cast, acme_idp):
    user_id = provision(acme_idp)["id"]
    user = User.objects.get(pk=user_id)
    MembershipFactory(workspace=cast.globex, user=user)
    acme_idp.patch(f"/Users/{user_id}", body("entra_disable_user"))
    user.refresh_from_db()
    assert user.is_active
    assert list(Membership.objects.filter(user=user).values_list("workspace__slug", flat=True)) == ["globex"]


def test_listing_pages_through_the_tenants_people(cast, acme_idp):
    for n in range(3):
        UserFactory(email=f"p{n}@example.com")
        acme_idp.post("/Users", {"userName": f"p{n}@example.com"})
    page = acme_idp.get("/Users?startIndex=2&count=2").json()
    assert page["totalResults"] == 6  # alice, bob, carol and the three
    assert page["startIndex"] == 2 and page["itemsPerPage"] == 2


def test_okta_put_with_active_false_deprovisions(cast, acme_idp):
    user_id = provision(acme_idp, "okta_create_user")["id"]
    user = User.objects.get(pk=user_id)
    token_create(access=cast.access(cast.alice), member=user)
    put = body("okta_update_user_put", **{"23a35c27-23d3-4c03-b4c5-6443c09e7173": user_id})
    response = acme_idp.put(f"/Users/{user_id}", {**put, "active": False})
    assert response.status_code == 200 and response.json()["active"] is False
    user.refresh_from_db()
    assert not user.is_active
    assert not GatewayToken.objects.active().filter(user=user).exists()
    assert AuditEvent.objects.filter(action=Action.SCIM_USER_DEPROVISIONED).count() == 1


def test_attributes_and_excluded_attributes(cast, acme_idp):
    user_id = provision(acme_idp)["id"]
    only = acme_idp.get(f"/Users/{user_id}?attributes=userName").json()
    assert set(only) == {"schemas", "id", "userName"}
    without = acme_idp.get("/Users?excludedAttributes=groups,name.givenName").json()["Resources"]
    assert all("groups" not in r for r in without)
    assert next(r for r in without if r["id"] == user_id)["name"] == {"familyName": "familyName"}


def test_listing_costs_the_same_queries_for_more_people(cast, acme_idp):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert acme_idp.get("/Users?count=100").status_code == 200
        return len(captured)

    acme_idp.post("/Groups", {"displayName": "All", "members": [{"value": str(cast.carol.pk)}]})
    few = queries()
    for n in range(8):
        acme_idp.post("/Users", {"userName": f"many{n}@example.com"})
    assert acme_idp.get("/Users").json()["totalResults"] == 11
    assert queries() == few
