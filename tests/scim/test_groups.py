"""Groups over SCIM (Entra's and Okta's bodies) and their mapping to workspace roles: the
highest mapped group wins, leaving every mapped group falls back to Member, and the last
Owner is never demoted."""

from __future__ import annotations

import pytest

from apps.accounts.models import User
from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.core.errors import RuleViolation
from apps.rbac.roles import Role
from apps.scim.models import ScimGroup
from apps.scim.services import scim_group_set_role
from apps.workspaces.models import Membership
from tests.scim.conftest import body

pytestmark = pytest.mark.django_db

ENTRA_ID = "f648f8d5ea4e4cd38e9c"
OKTA_REMOVED, OKTA_ADDED = "89bb1940-b905-4575-9e7f-6f887cfb368e", "23a35c27-23d3-4c03-b4c5-6443c09e7173"


def role(cast, user) -> str:
    return Membership.objects.get(workspace=cast.acme, user=user).role


def members(idp, group_id) -> list[str]:
    ids = [m["value"] for m in idp.get(f"/Groups/{group_id}").json()["members"]]
    return sorted(User.objects.filter(pk__in=ids).values_list("email", flat=True))


def test_entra_creates_a_group_and_adds_and_removes_members(cast, acme_idp):
    created = acme_idp.post("/Groups", body("entra_create_group"))
    assert created.status_code == 201, created.content
    group = created.json()
    assert group["displayName"] == "displayName" and group["externalId"] == "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159"
    path = f"/Groups/{group['id']}"

    for user in (cast.carol, cast.bob):
        added = acme_idp.patch(path, body("entra_group_add_member", **{ENTRA_ID: str(user.pk)}))
        assert added.status_code == 200, added.content
    assert members(acme_idp, group["id"]) == ["bob@example.com", "carol@example.com"]

    removed = acme_idp.patch(path, body("entra_group_remove_member", **{ENTRA_ID: str(cast.carol.pk)}))
    assert removed.status_code == 200
    assert members(acme_idp, group["id"]) == ["bob@example.com"]
    by_filter = acme_idp.patch(path, body("entra_group_remove_member_by_filter", **{ENTRA_ID: str(cast.bob.pk)}))
    assert by_filter.status_code == 200 and by_filter.json()["members"] == []

    renamed = acme_idp.patch(path, body("entra_group_update_display_name")).json()
    assert renamed["displayName"] == "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"
    found = acme_idp.get('/Groups?filter=displayName eq "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"')
    assert [g["id"] for g in found.json()["Resources"]] == [group["id"]]
    changes = AuditEvent.objects.filter(action=Action.SCIM_GROUP_CHANGED).order_by("seq")
    assert changes.count() == 6
    assert changes[1].metadata["members_added"] == ["carol@example.com"]
    assert changes[3].metadata["members_removed"] == ["carol@example.com"]


def test_okta_renames_and_changes_membership_in_one_patch(cast, acme_idp):
    group = acme_idp.post("/Groups", {"displayName": "Old name", "members": [{"value": str(cast.carol.pk)}]}).json()
    path = f"/Groups/{group['id']}"
    assert acme_idp.patch(path, body("okta_group_rename")).json()["displayName"] == "Test SCIMv2"
    swapped = acme_idp.patch(
        path, body("okta_group_members", **{OKTA_REMOVED: str(cast.carol.pk), OKTA_ADDED: str(cast.bob.pk)})
    )
    assert swapped.status_code == 200, swapped.content
    assert members(acme_idp, group["id"]) == ["bob@example.com"]


def test_put_replaces_the_member_list_and_delete_removes_the_group(cast, acme_idp):
    group = acme_idp.post("/Groups", body("okta_create_group")).json()
    path = f"/Groups/{group['id']}"
    put = acme_idp.put(
        path, {"displayName": "Test SCIMv2", "members": [{"value": str(cast.bob.pk)}, {"value": str(cast.carol.pk)}]}
    )
    assert put.status_code == 200, put.content
    assert members(acme_idp, group["id"]) == ["bob@example.com", "carol@example.com"]
    assert acme_idp.delete(path).status_code == 204
    assert acme_idp.get(path).status_code == 404
    assert not ScimGroup.objects.exists()


def test_duplicate_names_and_unknown_members_are_refused(cast, acme_idp):
    acme_idp.post("/Groups", body("okta_create_group"))
    assert acme_idp.post("/Groups", body("okta_create_group")).status_code == 409
    assert acme_idp.post("/Groups", {"displayName": ""}).status_code == 400
    assert acme_idp.post("/Groups", {"displayName": "x", "members": [{"value": "999999"}]}).status_code == 400
    assert acme_idp.post("/Groups", {"displayName": "y", "members": [{"value": "not-an-id"}]}).status_code == 400
    assert acme_idp.get("/Groups/not-a-uuid").status_code == 404


def test_mapped_groups_give_roles_highest_wins_and_leaving_falls_back_to_member(cast, acme_idp):
    admins = acme_idp.post("/Groups", {"displayName": "MCP admins", "members": [{"value": str(cast.carol.pk)}]}).json()
    owners = acme_idp.post("/Groups", {"displayName": "MCP owners"}).json()
    assert role(cast, cast.carol) == Role.MEMBER  # a group maps to nothing until staff say so

    scim_group_set_role(
        access=cast.access(cast.alice), group=ScimGroup.objects.get(display_name="MCP admins"), role=Role.ADMIN
    )
    scim_group_set_role(
        access=cast.access(cast.alice), group=ScimGroup.objects.get(display_name="MCP owners"), role=Role.OWNER
    )
    assert role(cast, cast.carol) == Role.ADMIN
    mapped = AuditEvent.objects.filter(action=Action.SCIM_GROUP_CHANGED, actor=cast.alice).order_by("seq").first()
    assert mapped.metadata["role"] == [None, "admin"]
    assert mapped.metadata["roles_changed"] == {"carol@example.com": ["member", "admin"]}

    add = {"Operations": [{"op": "Add", "path": "members", "value": [{"value": str(cast.carol.pk)}]}]}
    acme_idp.patch(f"/Groups/{owners['id']}", add)
    assert role(cast, cast.carol) == Role.OWNER
    acme_idp.patch(
        f"/Groups/{owners['id']}", {"Operations": [{"op": "Remove", "path": f'members[value eq "{cast.carol.pk}"]'}]}
    )
    assert role(cast, cast.carol) == Role.ADMIN
    acme_idp.delete(f"/Groups/{admins['id']}")
    assert role(cast, cast.carol) == Role.MEMBER
    assert AuditEvent.objects.filter(action=Action.ROLE_CHANGED, target_repr="carol@example.com").count() == 4


def test_an_unmapped_group_leaves_roles_alone(cast, acme_idp):
    acme_idp.post("/Groups", {"displayName": "Everyone", "members": [{"value": str(cast.bob.pk)}]})
    assert role(cast, cast.bob) == Role.ADMIN


def test_the_last_owner_keeps_the_role_when_leaving_a_mapped_group(cast, acme_idp):
    owners = acme_idp.post("/Groups", {"displayName": "Owners", "members": [{"value": str(cast.alice.pk)}]}).json()
    scim_group_set_role(access=cast.access(cast.alice), group=ScimGroup.objects.get(pk__isnull=False), role=Role.OWNER)

    emptied = acme_idp.put(f"/Groups/{owners['id']}", {"displayName": "Owners", "members": []})

    assert emptied.status_code == 200
    assert emptied.json()["members"] == []
    assert role(cast, cast.alice) == Role.OWNER
    event = AuditEvent.objects.filter(action=Action.SCIM_GROUP_CHANGED).latest("seq")
    assert "alice@example.com" in event.metadata["roles_kept"]


def test_someone_brought_back_rejoins_with_their_mapped_role(cast, acme_idp):
    group = acme_idp.post("/Groups", {"displayName": "Admins", "members": [{"value": str(cast.carol.pk)}]}).json()
    scim_group_set_role(
        access=cast.access(cast.alice), group=ScimGroup.objects.get(scim_id=group["id"]), role=Role.ADMIN
    )
    acme_idp.patch(f"/Users/{cast.carol.pk}", body("okta_deactivate_user"))  # carol's account is hers: she leaves
    assert not Membership.objects.filter(workspace=cast.acme, user=cast.carol).exists()
    acme_idp.patch(f"/Users/{cast.carol.pk}", body("okta_reactivate_user"))
    assert role(cast, cast.carol) == Role.ADMIN


def test_only_owners_map_groups_to_roles(cast, acme_idp):
    acme_idp.post("/Groups", {"displayName": "G"})
    group = ScimGroup.objects.get()
    with pytest.raises(RuleViolation):
        scim_group_set_role(access=cast.access(cast.bob), group=group, role=Role.OWNER)
    with pytest.raises(RuleViolation):
        scim_group_set_role(access=cast.access(cast.dave, cast.globex), group=group, role=Role.OWNER)


def test_entras_group_probe_without_members(cast, acme_idp):
    acme_idp.post("/Groups", {**body("entra_create_group"), "members": [{"value": str(cast.carol.pk)}]})
    probe = acme_idp.get('/Groups?excludedAttributes=members&filter=displayName eq "displayName"').json()
    assert probe["totalResults"] == 1
    assert "members" not in probe["Resources"][0]
    assert probe["Resources"][0]["externalId"] == "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159"
