"""Workspaces, memberships and invitations in the admin: every write goes through the services."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.core.errors import RuleViolation
from apps.rbac.roles import Role
from apps.tokens.services import token_create
from apps.workspaces.models import Enforcement, Invitation, Membership, Plan, Workspace
from apps.workspaces.services import invitation_create
from tests.factories import MembershipFactory, UserFactory, WorkspaceFactory


@pytest.fixture
def root(db):
    return UserFactory(email="root@example.com", is_staff=True, is_superuser=True)


def _staff(user, *codenames):
    user.is_staff = True
    user.save()
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="workspaces", codename__in=codenames))
    return user


def _url(model, view="changelist", *args):
    return reverse(f"admin:workspaces_{model._meta.model_name}_{view}", args=args)


def _act(client, model, action, *objects):
    return client.post(
        _url(model), {"action": action, "_selected_action": [o.pk for o in objects], "index": 0}, follow=True
    )


def _events(action):
    return AuditEvent.objects.filter(action=action)


def _workspace_form(workspace, **changes):
    values = {
        "name": workspace.name,
        "plan": workspace.plan,
        "enforcement": workspace.enforcement,
        "rate_limit_per_minute": workspace.rate_limit_per_minute,
        # The read-only memberships inline still posts its management form.
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }
    return {**values, **changes}


# --- Workspaces ------------------------------------------------------------------------


def test_workspace_list_counts_members_without_a_query_per_row(client, root, cast, django_assert_max_num_queries):
    for n in range(5):
        MembershipFactory.create_batch(n, workspace=WorkspaceFactory(slug=f"team-{n}"))
    client.force_login(root)
    with django_assert_max_num_queries(8):
        response = client.get(_url(Workspace), {"state": "active"})
    counts = {w.slug: w.member_count for w in response.context["cl"].result_list}
    assert counts["acme"] == 3 and counts["globex"] == 1 and counts["team-4"] == 4
    assert len(counts) == 7


def test_soft_delete_goes_through_the_service(client, root, cast):
    issued = token_create(access=cast.access(cast.carol), member=cast.carol)
    client.force_login(root)
    assert b"delete_selected" not in client.get(_url(Workspace)).content
    assert client.get(_url(Workspace, "delete", cast.acme.pk)).status_code == 403

    response = _act(client, Workspace, "soft_delete", cast.acme)
    assert "Deleted (tokens revoked, audit trail kept): acme" in response.content.decode()
    cast.acme.refresh_from_db()
    issued.token.refresh_from_db()
    assert cast.acme.is_deleted and issued.token.revoked_at is not None
    assert _events(Action.WORKSPACE_DELETED).get().actor == root
    assert Membership.objects.filter(workspace=cast.acme).count() == 3  # nothing cascaded away

    _act(client, Workspace, "soft_delete", cast.acme)  # already deleted: nothing more is written
    assert _events(Action.WORKSPACE_DELETED).count() == 1


def test_only_an_owner_may_soft_delete(client, cast):
    client.force_login(_staff(cast.bob, "view_workspace", "delete_workspace"))  # an acme Admin
    response = _act(client, Workspace, "soft_delete", cast.acme)
    assert "does not allow workspace.delete" in response.content.decode()
    cast.acme.refresh_from_db()
    assert not cast.acme.is_deleted and not _events(Action.WORKSPACE_DELETED).exists()


def test_workspace_edits_are_applied_and_audited_by_the_services(client, root, cast):
    client.force_login(root)
    form = _workspace_form(cast.acme, plan=Plan.ENTERPRISE, enforcement=Enforcement.SHADOW, rate_limit_per_minute=50)
    response = client.post(_url(Workspace, "change", cast.acme.pk), form)
    assert response.status_code == 302
    cast.acme.refresh_from_db()
    assert (cast.acme.plan, cast.acme.enforcement, cast.acme.rate_limit_per_minute) == ("enterprise", "shadow", 50)
    assert _events(Action.PLAN_CHANGED).get().actor == root
    assert _events(Action.ENFORCEMENT_CHANGED).get().metadata == {
        "changes": {"enforcement": ["off", "shadow"], "rate_limit_per_minute": [200, 50]}
    }


def test_deny_by_default_is_edited_here_too_through_the_policy_service(client, root, cast):
    client.force_login(root)
    response = client.post(_url(Workspace, "change", cast.acme.pk), _workspace_form(cast.acme, deny_by_default="on"))
    assert response.status_code == 302
    cast.acme.refresh_from_db()
    assert cast.acme.deny_by_default is True
    event = _events(Action.ENFORCEMENT_CHANGED).get()
    assert (event.actor, event.metadata) == (root, {"changes": {"deny_by_default": [False, True]}})


def test_a_refused_edit_changes_nothing_and_says_why(client, cast):
    client.force_login(_staff(cast.bob, "view_workspace", "change_workspace"))  # an Admin: no workspace.update
    form = _workspace_form(cast.acme, name="Acme Corp", plan=Plan.ENTERPRISE)
    response = client.post(_url(Workspace, "change", cast.acme.pk), form, follow=True)
    assert "does not allow this (workspace.update)" in response.content.decode()
    cast.acme.refresh_from_db()
    assert (cast.acme.name, cast.acme.plan) == ("Acme", "team")
    assert not AuditEvent.objects.filter(action__startswith="workspace.").exists()


def test_a_refusal_half_way_rolls_back_the_earlier_changes(client, root, cast, monkeypatch):
    def refuse(**kwargs):
        raise RuleViolation("Rate limits are frozen during the incident.")

    monkeypatch.setattr("apps.workspaces.admin.workspace_set_policy", refuse)
    client.force_login(root)
    form = _workspace_form(cast.acme, plan=Plan.ENTERPRISE, rate_limit_per_minute=50)
    response = client.post(_url(Workspace, "change", cast.acme.pk), form, follow=True)
    assert "frozen during the incident" in response.content.decode()
    cast.acme.refresh_from_db()
    assert (cast.acme.plan, cast.acme.rate_limit_per_minute) == ("team", 200)
    assert not _events(Action.PLAN_CHANGED).exists()


def test_workspaces_are_not_created_in_admin(client, root):
    client.force_login(root)
    assert client.get(_url(Workspace, "add")).status_code == 403


# --- Memberships -----------------------------------------------------------------------


def test_add_a_member_change_their_role_and_remove_them(client, root, cast):
    erin = UserFactory(email="erin@example.com")
    client.force_login(root)
    response = client.post(_url(Membership, "add"), {"workspace": cast.acme.pk, "user": erin.pk, "role": Role.MEMBER})
    assert response.status_code == 302
    membership = Membership.objects.get(workspace=cast.acme, user=erin)
    assert _events(Action.MEMBER_ADDED).get().target_repr == "erin@example.com"

    client.post(_url(Membership, "change", membership.pk), {"role": Role.ADMIN})
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN
    assert _events(Action.ROLE_CHANGED).get().metadata == {"before": "member", "after": "admin"}

    issued = token_create(access=cast.access(erin), member=erin)
    _act(client, Membership, "remove", membership)
    assert not Membership.objects.filter(pk=membership.pk).exists()
    issued.token.refresh_from_db()
    assert issued.token.revoked_at is not None
    assert _events(Action.MEMBER_REMOVED).get().metadata["tokens_revoked"] == 1


def test_the_last_owner_cannot_be_demoted_or_removed(client, root, cast):
    client.force_login(root)
    alice = Membership.objects.get(workspace=cast.acme, user=cast.alice)
    response = client.post(_url(Membership, "change", alice.pk), {"role": Role.MEMBER}, follow=True)
    assert "at least one Owner" in response.content.decode()
    response = _act(client, Membership, "remove", alice)
    assert "at least one Owner" in response.content.decode()
    alice.refresh_from_db()
    assert alice.role == Role.OWNER
    assert not _events(Action.ROLE_CHANGED).exists() and not _events(Action.MEMBER_REMOVED).exists()


def test_an_admin_cannot_add_an_owner(client, cast):
    client.force_login(_staff(cast.bob, "view_membership", "add_membership"))
    erin = UserFactory(email="erin@example.com")
    response = client.post(
        _url(Membership, "add"), {"workspace": cast.acme.pk, "user": erin.pk, "role": Role.OWNER}, follow=True
    )
    assert "cannot add someone as Owner" in response.content.decode()
    assert not Membership.objects.filter(user=erin).exists()


def test_membership_rows_are_not_deleted_directly(client, root, cast):
    client.force_login(root)
    carol = Membership.objects.get(workspace=cast.acme, user=cast.carol)
    assert client.get(_url(Membership, "delete", carol.pk)).status_code == 403


# --- Invitations -----------------------------------------------------------------------


@pytest.fixture
def invitation(cast):
    invitation, raw = invitation_create(access=cast.access(cast.alice), email="erin@example.com")
    return invitation, raw


def test_invitation_pages_never_show_the_secret_or_its_digest(client, root, invitation):
    invitation, raw = invitation
    client.force_login(root)
    html = "".join(
        client.get(url).content.decode()
        for url in (_url(Invitation), _url(Invitation, "change", invitation.pk), _url(Invitation) + "?status=pending")
    )
    assert "erin@example.com" in html
    assert invitation.digest not in html and raw not in html
    assert client.get(_url(Invitation, "add")).status_code == 403
    assert client.get(_url(Invitation, "delete", invitation.pk)).status_code == 403


def test_revoke_invitations_through_the_service(client, root, cast, invitation):
    invitation, _ = invitation
    client.force_login(root)
    response = _act(client, Invitation, "revoke", invitation)
    assert "Revoked: erin@example.com" in response.content.decode()
    invitation.refresh_from_db()
    assert invitation.status == "revoked"
    assert _events(Action.INVITATION_REVOKED).get().actor == root

    again = _act(client, Invitation, "revoke", invitation)
    assert "already revoked" in again.content.decode()
    assert _events(Action.INVITATION_REVOKED).count() == 1
