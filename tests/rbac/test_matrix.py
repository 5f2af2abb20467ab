"""The capability matrix, cell by cell, against the table the product promises.

The expected table is written out here on purpose (not derived from MATRIX): a change to
roles.py that grants or drops a capability has to be made in both places.
"""

from __future__ import annotations

import pytest
from django.http import Http404

from apps.rbac.access import Access, PermissionDenied, RoleRequired, check_role_change, workspace_for
from apps.rbac.roles import ASSIGNABLE, Capability, Role
from apps.workspaces.models import Workspace

C = Capability
# Owner: everything, including the plan, deleting the workspace and managing Owners/Admins.
# Admin: members, tokens, servers, allowlists, audit.
# Member: use the gateway, see/revoke own tokens, request a server.
EXPECTED: dict[str, set[Capability]] = {
    Role.OWNER: {
        C.VIEW_WORKSPACE,
        C.UPDATE_WORKSPACE,
        C.MANAGE_PLAN,
        C.DELETE_WORKSPACE,
        C.VIEW_MEMBERS,
        C.MANAGE_MEMBERS,
        C.MANAGE_PRIVILEGED,
        C.USE_GATEWAY,
        C.MANAGE_OWN_TOKENS,
        C.MANAGE_TOKENS,
        C.MANAGE_SERVERS,
        C.REQUEST_SERVER,
        C.MANAGE_ALLOWLISTS,
        C.VIEW_AUDIT,
    },
    Role.ADMIN: {
        C.VIEW_WORKSPACE,
        C.VIEW_MEMBERS,
        C.MANAGE_MEMBERS,
        C.USE_GATEWAY,
        C.MANAGE_OWN_TOKENS,
        C.MANAGE_TOKENS,
        C.MANAGE_SERVERS,
        C.REQUEST_SERVER,
        C.MANAGE_ALLOWLISTS,
        C.VIEW_AUDIT,
    },
    Role.MEMBER: {
        C.VIEW_WORKSPACE,
        C.USE_GATEWAY,
        C.MANAGE_OWN_TOKENS,
        C.REQUEST_SERVER,
    },
}
CELLS = [(role, cap) for role in Role for cap in Capability]


def test_the_expected_table_names_every_capability():
    # A new capability must be placed in the table above, not silently default to "no".
    assert EXPECTED[Role.OWNER] == set(Capability)


@pytest.mark.parametrize(("role", "capability"), CELLS, ids=[f"{r.value}-{c.value}" for r, c in CELLS])
def test_access_can_matches_the_table(role, capability):
    access = Access(workspace=Workspace(slug="x"), user=None, role=role, membership=None)
    assert access.can(capability) is (capability in EXPECTED[role])
    if capability in EXPECTED[role]:
        access.require(capability)
    else:
        with pytest.raises(PermissionDenied, match=capability.value):
            access.require(capability)


@pytest.mark.parametrize("capability", list(Capability))
def test_no_role_can_do_nothing(capability):
    assert not Access(workspace=Workspace(slug="x"), user=None, role=None, membership=None).can(capability)


def test_the_cast_gets_their_role_through_the_gate(cast):
    for user, role in [(cast.alice, Role.OWNER), (cast.bob, Role.ADMIN), (cast.carol, Role.MEMBER)]:
        access = workspace_for(user=user, slug="acme")
        assert access.role == role and access.membership.user == user and access.workspace == cast.acme


@pytest.mark.parametrize("capability", list(Capability))
def test_workspace_for_gives_every_capability_as_the_table_says(cast, capability):
    for user, role in [(cast.alice, Role.OWNER), (cast.bob, Role.ADMIN), (cast.carol, Role.MEMBER)]:
        if capability in EXPECTED[role]:
            assert workspace_for(user=user, slug="acme", capability=capability).role == role
        else:
            # A member knows the workspace: lacking the capability is a 403 that names the role needed.
            with pytest.raises(RoleRequired) as refused:
                workspace_for(user=user, slug="acme", capability=capability)
            assert not isinstance(refused.value, Http404)
            assert refused.value.access.role == role and refused.value.capability == capability


@pytest.mark.parametrize(
    ("user", "capability", "message"),
    [
        ("carol", C.VIEW_AUDIT, "This page is for the workspace's Owners and Admins; you are a Member."),
        ("carol", C.MANAGE_MEMBERS, "This page is for the workspace's Owners and Admins; you are a Member."),
        ("bob", C.DELETE_WORKSPACE, "This page is for the workspace's Owners; you are an Admin."),
        ("carol", C.MANAGE_PRIVILEGED, "This page is for the workspace's Owners; you are a Member."),
    ],
)
def test_the_refusal_names_the_roles_the_page_needs(cast, user, capability, message):
    with pytest.raises(RoleRequired) as refused:
        workspace_for(user=getattr(cast, user), slug="acme", capability=capability)
    assert refused.value.message == str(refused.value) == message


@pytest.mark.parametrize("capability", list(Capability))
def test_an_outsider_gets_404_for_every_capability(cast, capability):
    with pytest.raises(Http404) as forbidden:
        workspace_for(user=cast.dave, slug="acme", capability=capability)
    with pytest.raises(Http404) as missing:
        workspace_for(user=cast.dave, slug="no-such-workspace", capability=capability)
    assert str(forbidden.value) == str(missing.value)


def test_anonymous_and_inactive_users_get_404(cast):
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(Http404):
        workspace_for(user=AnonymousUser(), slug="acme")
    cast.alice.is_active = False
    cast.alice.save()
    with pytest.raises(Http404):
        workspace_for(user=cast.alice, slug="acme")


def test_a_superuser_acts_as_owner_without_membership(cast):
    cast.dave.is_superuser = True
    cast.dave.save()
    access = workspace_for(user=cast.dave, slug="acme", capability=C.DELETE_WORKSPACE)
    assert access.role == Role.OWNER and access.membership is None


def test_a_deleted_workspace_is_404_even_for_its_owner(cast):
    from django.utils import timezone

    cast.acme.deleted_at = timezone.now()
    cast.acme.save()
    with pytest.raises(Http404):
        workspace_for(user=cast.alice, slug="acme")


def test_assignable_roles():
    assert ASSIGNABLE[Role.OWNER] == {Role.OWNER, Role.ADMIN, Role.MEMBER}
    assert ASSIGNABLE[Role.ADMIN] == {Role.ADMIN, Role.MEMBER}
    assert ASSIGNABLE[Role.MEMBER] == set()


@pytest.mark.parametrize(
    ("actor", "target", "new", "allowed"),
    [
        (Role.OWNER, Role.OWNER, Role.ADMIN, True),
        (Role.OWNER, Role.ADMIN, None, True),
        (Role.OWNER, Role.MEMBER, Role.OWNER, True),
        (Role.ADMIN, Role.MEMBER, Role.ADMIN, True),
        (Role.ADMIN, Role.MEMBER, None, True),
        (Role.ADMIN, Role.MEMBER, Role.OWNER, False),
        (Role.ADMIN, Role.ADMIN, Role.MEMBER, False),
        (Role.ADMIN, Role.ADMIN, None, False),
        (Role.ADMIN, Role.OWNER, Role.MEMBER, False),
        (Role.ADMIN, Role.OWNER, None, False),
        (Role.MEMBER, Role.MEMBER, None, False),
        (None, Role.MEMBER, None, False),
    ],
)
def test_check_role_change(actor, target, new, allowed):
    from apps.core.errors import RuleViolation

    if allowed:
        check_role_change(actor_role=actor, target_role=target, new_role=new)
    else:
        with pytest.raises(RuleViolation):
            check_role_change(actor_role=actor, target_role=target, new_role=new)
