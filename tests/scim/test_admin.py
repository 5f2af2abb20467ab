"""SCIM in the admin: a token's raw value appears once, in the message after it is added,
and on no page after; revocation, group role mapping and the identity list go through the
services and the RBAC gate."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.rbac.roles import Role
from apps.scim.models import ScimGroup, ScimIdentity, ScimToken
from apps.workspaces.models import Membership
from tests.factories import UserFactory
from tests.scim.conftest import Scim, body

pytestmark = pytest.mark.django_db

TOKENS = reverse("admin:scim_scimtoken_changelist")
ADD_TOKEN = reverse("admin:scim_scimtoken_add")
GROUPS = "admin:scim_scimgroup_change"
IDENTITIES = reverse("admin:scim_scimidentity_changelist")


@pytest.fixture
def root(db):
    return UserFactory(email="root@example.com", is_staff=True, is_superuser=True)


def test_adding_a_token_shows_it_once(client, root, cast):
    client.force_login(root)
    assert client.get(ADD_TOKEN).status_code == 200

    response = client.post(ADD_TOKEN, {"workspace": cast.acme.pk, "name": "Entra ID"}, follow=True)

    assert response.status_code == 200
    page = response.content.decode()
    raw = re.search(r"mns_[0-9a-f]{48}", page).group(0)
    token = ScimToken.objects.get()
    assert (token.workspace, token.name, token.created_by) == (cast.acme, "Entra ID", root)
    assert Scim(raw).get("/Users").status_code == 200
    again = (
        client.get(TOKENS).content.decode()
        + client.get(reverse("admin:scim_scimtoken_change", args=[token.pk])).content.decode()
    )
    assert raw not in again and raw[12:] not in again and token.digest not in again
    assert token.prefix in again
    assert AuditEvent.objects.get(action=Action.SCIM_TOKEN_CREATED).actor == root


def test_a_staff_member_who_is_not_an_owner_cannot_issue(client, cast):
    bob = cast.bob  # acme Admin
    bob.is_staff = True
    bob.save()
    bob.user_permissions.add(*Permission.objects.filter(content_type__app_label="scim"))
    client.force_login(bob)
    response = client.post(ADD_TOKEN, {"workspace": cast.acme.pk, "name": "x"}, follow=True)
    assert not ScimToken.objects.exists()
    assert "does not allow" in response.content.decode()


def test_the_revoke_action(client, root, cast, acme_token):
    client.force_login(root)
    token = ScimToken.objects.get()
    response = client.post(TOKENS, {"action": "revoke", "_selected_action": [token.pk], "index": 0}, follow=True)
    assert "Revoked" in response.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert Scim(acme_token).get("/Users").status_code == 401


def test_mapping_a_group_to_a_role_in_the_admin(client, root, cast, acme_idp):
    acme_idp.post("/Groups", {"displayName": "MCP admins", "members": [{"value": str(cast.carol.pk)}]})
    group = ScimGroup.objects.get()
    client.force_login(root)
    url = reverse(GROUPS, args=[group.pk])
    page = client.get(url)
    assert page.status_code == 200 and "carol@example.com" in page.content.decode()

    prefix = re.search(r'name="([^"]+)-TOTAL_FORMS"', page.content.decode()).group(1)
    form = {f"{prefix}-TOTAL_FORMS": 1, f"{prefix}-INITIAL_FORMS": 1, f"{prefix}-MAX_NUM_FORMS": 1000}
    saved = client.post(url, {"role": Role.ADMIN, **form})
    assert saved.status_code == 302, saved.content.decode()[:2000]

    group.refresh_from_db()
    assert group.role == Role.ADMIN
    assert Membership.objects.get(workspace=cast.acme, user=cast.carol).role == Role.ADMIN
    assert AuditEvent.objects.filter(action=Action.SCIM_GROUP_CHANGED, actor=root).exists()


def test_identities_are_read_only(client, root, cast, acme_idp):
    acme_idp.post("/Users", body("okta_create_user"))
    client.force_login(root)
    page = client.get(IDENTITIES)
    assert "test.user@okta.local" in page.content.decode()
    identity = ScimIdentity.objects.get()
    change = client.post(reverse("admin:scim_scimidentity_change", args=[identity.pk]), {"external_id": "x"})
    assert change.status_code == 403
    identity.refresh_from_db()
    assert identity.external_id == "00ujl29u0le5T6Aj10h7"
    assert client.get(reverse("admin:scim_scimidentity_add")).status_code == 403
