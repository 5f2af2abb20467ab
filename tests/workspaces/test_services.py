"""Workspace, membership and invitation services: the invariants and their audit rows."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import timedelta
from unittest import mock

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import connections
from django.http import Http404
from django.utils import timezone

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.core.errors import RuleViolation
from apps.core.models import Epoch
from apps.rbac.access import PermissionDenied, access_for, workspace_for
from apps.rbac.roles import Role
from apps.tokens.models import GatewayToken
from apps.tokens.services import token_create
from apps.workspaces.models import Invitation, Membership, Plan, Workspace
from apps.workspaces.selectors import invitation_lookup
from apps.workspaces.services import (
    invitation_accept,
    invitation_create,
    invitation_revoke,
    member_add,
    member_add_by_operator,
    member_change_role,
    member_remove,
    workspace_create,
    workspace_delete,
    workspace_update,
)
from tests.factories import MembershipFactory, UserFactory


def membership(cast, user) -> Membership:
    return Membership.objects.get(workspace=cast.acme, user=user)


def last_event(workspace: Workspace) -> AuditEvent:
    return AuditEvent.objects.filter(workspace=workspace).order_by("-seq").first()


def all_audit_text() -> str:
    return json.dumps(list(AuditEvent.objects.values()), default=str)


@pytest.fixture
def olivia(cast):
    """A second Owner of acme."""
    user = UserFactory(email="olivia@example.com")
    MembershipFactory(workspace=cast.acme, user=user, role=Role.OWNER)
    return user


@pytest.fixture
def root(cast):
    """A platform operator (superuser, not a member): acts as Owner but is nobody's member."""
    return UserFactory(email="root@example.com", is_superuser=True, is_staff=True)


# --- Creating workspaces ------------------------------------------------------------


def test_workspace_create_makes_the_creator_owner_and_records_it(db):
    erin = UserFactory(email="erin@example.com")
    workspace = workspace_create(actor=erin, slug="initech", name="Initech", plan=Plan.ENTERPRISE, ip="10.0.0.9")
    assert Membership.objects.get(workspace=workspace, user=erin).role == Role.OWNER
    event = last_event(workspace)
    assert (event.action, event.actor_id, event.actor_repr) == (Action.WORKSPACE_CREATED, erin.pk, erin.email)
    assert (event.target_type, event.target_id, event.target_repr) == ("workspace", str(workspace.pk), "initech")
    assert event.metadata == {"plan": "enterprise"} and event.ip == "10.0.0.9"


def test_workspace_name_defaults_to_slug(db):
    assert workspace_create(actor=UserFactory(), slug="plain").name == "plain"


@pytest.mark.parametrize(
    ("slug", "message"),
    [
        ("Acme", "lowercase"),
        ("my_team", "lowercase letters, digits and hyphens"),
        ("-team", "starting and ending with a letter or digit"),
        ("team-", "starting and ending with a letter or digit"),
        ("a" * 51, "at most 50 characters"),
        ("", "This field cannot be blank"),
    ],
)
def test_workspace_create_refuses_bad_slugs_with_clear_messages(db, slug, message):
    with pytest.raises(ValidationError) as refused:
        workspace_create(actor=UserFactory(), slug=slug)
    assert message in " ".join(refused.value.message_dict["slug"])
    assert not Workspace.objects.exists()


def test_workspace_create_accepts_edge_slugs(db):
    for slug in ["a", "a" * 50, "team-42", "4x4"]:
        workspace_create(actor=UserFactory(), slug=slug)
    assert Workspace.objects.count() == 4


def test_workspace_create_refuses_a_taken_slug(cast):
    erin = UserFactory(email="erin@example.com")
    with pytest.raises(ValidationError, match="taken"):
        workspace_create(actor=erin, slug="acme")
    assert not Membership.objects.filter(user=erin).exists()


def test_a_deleted_workspace_slug_is_never_reused(cast):
    workspace_delete(access=cast.access(cast.alice))
    with pytest.raises(ValidationError, match="taken"):
        workspace_create(actor=cast.dave, slug="acme")


# --- Updating workspaces -----------------------------------------------------------


def test_owner_renames_and_changes_plan(cast):
    workspace_update(access=cast.access(cast.alice), name="Acme Corp")
    event = last_event(cast.acme)
    assert event.action == Action.WORKSPACE_UPDATED and event.metadata == {"changes": {"name": ["Acme", "Acme Corp"]}}
    workspace_update(access=cast.access(cast.alice), plan=Plan.ENTERPRISE)
    event = last_event(cast.acme)
    assert event.action == Action.PLAN_CHANGED and event.metadata == {"changes": {"plan": ["team", "enterprise"]}}
    assert event.actor_id == cast.alice.pk
    cast.acme.refresh_from_db()
    assert (cast.acme.name, cast.acme.plan) == ("Acme Corp", "enterprise")


def test_admin_cannot_rename_or_change_plan(cast):
    for change in [{"name": "Bob's"}, {"plan": Plan.ENTERPRISE}]:
        with pytest.raises(PermissionDenied):
            workspace_update(access=cast.access(cast.bob), **change)
    cast.acme.refresh_from_db()
    assert (cast.acme.name, cast.acme.plan) == ("Acme", "team")


def test_unknown_plan_is_refused(cast):
    with pytest.raises(ValidationError, match="Plan must be one of"):
        workspace_update(access=cast.access(cast.alice), plan="platinum")


def test_an_unchanged_update_records_nothing(cast):
    before = AuditEvent.objects.count()
    workspace_update(access=cast.access(cast.alice), name="Acme", plan=Plan.TEAM)
    assert AuditEvent.objects.count() == before


# --- Deleting workspaces -------------------------------------------------------------


def test_soft_delete_revokes_tokens_and_hides_the_workspace(cast):
    token = token_create(access=cast.access(cast.carol), member=cast.carol).token
    invitation, _ = invitation_create(access=cast.access(cast.alice), email="new@example.com")
    workspace_delete(access=cast.access(cast.alice), ip="10.1.1.1")

    cast.acme.refresh_from_db()
    assert cast.acme.is_deleted and Workspace.objects.filter(slug="acme").exists()
    token.refresh_from_db()
    assert token.revoked_at is not None
    invitation.refresh_from_db()
    assert invitation.status == "revoked"
    for user in [cast.alice, cast.bob, cast.carol]:
        assert not Workspace.objects.visible_to(user).filter(pk=cast.acme.pk).exists()
        with pytest.raises(Http404):
            workspace_for(user=user, slug="acme")
    assert list(Workspace.objects.visible_to(cast.dave)) == [cast.globex]
    event = last_event(cast.acme)
    assert (event.action, event.actor_id, event.target_type, event.ip) == (
        Action.WORKSPACE_DELETED,
        cast.alice.pk,
        "workspace",
        "10.1.1.1",
    )
    revoked = AuditEvent.objects.get(workspace=cast.acme, action=Action.TOKEN_REVOKED)
    assert revoked.metadata["reason"] == "workspace deleted"


def test_only_an_owner_deletes(cast):
    for user in [cast.bob, cast.carol]:
        with pytest.raises(PermissionDenied):
            workspace_delete(access=cast.access(user))
    cast.acme.refresh_from_db()
    assert not cast.acme.is_deleted


# --- Members: the Owner invariants --------------------------------------------------


def test_the_last_owner_cannot_be_demoted(cast, root):
    with pytest.raises(RuleViolation, match="at least one Owner"):
        member_change_role(access=cast.access(root), membership=membership(cast, cast.alice), role=Role.ADMIN)
    assert membership(cast, cast.alice).role == Role.OWNER


def test_the_last_owner_cannot_be_removed_nor_leave(cast, root):
    with pytest.raises(RuleViolation, match="at least one Owner"):
        member_remove(access=cast.access(root), membership=membership(cast, cast.alice))
    with pytest.raises(RuleViolation, match="at least one Owner"):
        member_remove(access=cast.access(cast.alice), membership=membership(cast, cast.alice))
    assert membership(cast, cast.alice).role == Role.OWNER


def test_with_two_owners_one_can_be_demoted_or_leave(cast, olivia):
    member_change_role(access=cast.access(cast.alice), membership=membership(cast, olivia), role=Role.ADMIN)
    assert membership(cast, olivia).role == Role.ADMIN
    event = last_event(cast.acme)
    assert (event.action, event.actor_id, event.target_repr) == (Action.ROLE_CHANGED, cast.alice.pk, olivia.email)
    assert event.metadata == {"before": "owner", "after": "admin"}

    member_change_role(access=cast.access(cast.alice), membership=membership(cast, olivia), role=Role.OWNER)
    member_remove(access=cast.access(olivia), membership=membership(cast, olivia))
    assert not Membership.objects.filter(workspace=cast.acme, user=olivia).exists()
    event = last_event(cast.acme)
    assert event.action == Action.MEMBER_REMOVED and event.metadata["left"] is True


def test_nobody_changes_their_own_role(cast, olivia):
    for user in [cast.alice, cast.bob, cast.carol]:
        with pytest.raises(RuleViolation, match="your own role"):
            member_change_role(access=cast.access(user), membership=membership(cast, user), role=Role.OWNER)
    assert membership(cast, cast.bob).role == Role.ADMIN
    assert membership(cast, cast.carol).role == Role.MEMBER


def test_admin_manages_members_only(cast, olivia):
    bob = cast.access(cast.bob)
    with pytest.raises(RuleViolation, match="Only an Owner can make someone an Owner"):
        member_change_role(access=bob, membership=membership(cast, cast.carol), role=Role.OWNER)
    with pytest.raises(RuleViolation, match="Only an Owner can change or remove an Owner"):
        member_change_role(access=bob, membership=membership(cast, cast.alice), role=Role.MEMBER)
    with pytest.raises(RuleViolation, match="Only an Owner can change or remove an Owner"):
        member_remove(access=bob, membership=membership(cast, olivia))
    dan = UserFactory(email="dan@example.com")
    MembershipFactory(workspace=cast.acme, user=dan, role=Role.ADMIN)
    with pytest.raises(RuleViolation, match="Only an Owner can change or remove an Admin"):
        member_change_role(access=bob, membership=membership(cast, dan), role=Role.MEMBER)
    with pytest.raises(RuleViolation, match="Only an Owner can change or remove an Admin"):
        member_remove(access=bob, membership=membership(cast, dan))
    assert {m.user.email: m.role for m in cast.acme.memberships.all()} == {
        "alice@example.com": Role.OWNER,
        "olivia@example.com": Role.OWNER,
        "bob@example.com": Role.ADMIN,
        "dan@example.com": Role.ADMIN,
        "carol@example.com": Role.MEMBER,
    }
    # What an Admin may do: promote a Member to Admin, and remove a Member.
    member_change_role(access=bob, membership=membership(cast, cast.carol), role=Role.ADMIN)
    erin = UserFactory(email="erin@example.com")
    MembershipFactory(workspace=cast.acme, user=erin)
    member_remove(access=bob, membership=membership(cast, erin))
    assert membership(cast, cast.carol).role == Role.ADMIN


def test_a_member_manages_nobody_but_may_leave(cast):
    carol = cast.access(cast.carol)
    with pytest.raises(PermissionDenied):
        member_change_role(access=carol, membership=membership(cast, cast.bob), role=Role.MEMBER)
    with pytest.raises(PermissionDenied):
        member_remove(access=carol, membership=membership(cast, cast.bob))
    member_remove(access=carol, membership=membership(cast, cast.carol))
    assert not Membership.objects.filter(workspace=cast.acme, user=cast.carol).exists()


def test_memberships_of_another_workspace_are_refused(cast):
    daves = Membership.objects.get(workspace=cast.globex, user=cast.dave)
    with pytest.raises(RuleViolation, match="another workspace"):
        member_change_role(access=cast.access(cast.alice), membership=daves, role=Role.MEMBER)
    with pytest.raises(RuleViolation, match="another workspace"):
        member_remove(access=cast.access(cast.alice), membership=daves)


def test_member_add_refuses_duplicates_and_unknown_roles(cast):
    with pytest.raises(RuleViolation, match="already a member"):
        member_add(workspace=cast.acme, user=cast.carol, role=Role.ADMIN, actor=cast.alice)
    with pytest.raises(ValidationError):
        member_add(workspace=cast.acme, user=cast.dave, role="superhero", actor=cast.alice)
    added = member_add(workspace=cast.acme, user=cast.dave, role=Role.ADMIN, actor=cast.alice)
    event = last_event(cast.acme)
    assert (event.action, event.actor_id, event.target_type, event.target_id, event.metadata) == (
        Action.MEMBER_ADDED,
        cast.alice.pk,
        "membership",
        str(added.pk),
        {"role": "admin"},
    )


def test_member_add_enforces_the_actors_role_itself(cast):
    erin = UserFactory(email="erin@example.com")
    # An Admin may not add an Owner; a Member may add no one; an outsider neither.
    with pytest.raises(RuleViolation, match="cannot add someone as Owner"):
        member_add(workspace=cast.acme, user=erin, role=Role.OWNER, actor=cast.bob)
    for actor in (cast.carol, cast.dave):
        with pytest.raises(PermissionDenied):
            member_add(workspace=cast.acme, user=erin, role=Role.MEMBER, actor=actor)
    assert not Membership.objects.filter(user=erin).exists()
    assert not AuditEvent.objects.filter(action=Action.MEMBER_ADDED).exists()
    # What the Admin's role does allow: Admins and Members.
    assert member_add(workspace=cast.acme, user=erin, role=Role.ADMIN, actor=cast.bob).role == Role.ADMIN


def test_a_superuser_who_is_not_a_member_adds_as_owner(cast):
    root = UserFactory(email="root@example.com", is_superuser=True, is_staff=True)
    added = member_add(workspace=cast.acme, user=cast.dave, role=Role.OWNER, actor=root)
    assert added.role == Role.OWNER and last_event(cast.acme).actor == root


def test_nobody_joins_a_deleted_workspace(cast):
    workspace_delete(access=cast.access(cast.alice))
    with pytest.raises(RuleViolation, match="is deleted"):
        member_add(workspace=Workspace.objects.get(pk=cast.acme.pk), user=cast.dave, role=Role.MEMBER, actor=cast.alice)
    with pytest.raises(RuleViolation, match="is deleted"):
        member_add_by_operator(workspace=Workspace.objects.get(pk=cast.acme.pk), user=cast.dave, role=Role.MEMBER)


def test_an_operator_adds_any_role_with_no_actor_on_record(cast):
    added = member_add_by_operator(workspace=cast.acme, user=cast.dave, role=Role.OWNER)
    event = last_event(cast.acme)
    assert (added.role, event.action, event.actor_id, event.actor_repr) == (Role.OWNER, Action.MEMBER_ADDED, None, "")
    with pytest.raises(RuleViolation, match="already a member"):
        member_add_by_operator(workspace=cast.acme, user=cast.dave, role=Role.MEMBER)


@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_each_other_at_once_leave_one_owner(cast, olivia):
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def demote(actor, target):
        try:
            access = access_for(user=actor, workspace=cast.acme)
            target_membership = Membership.objects.get(workspace=cast.acme, user=target)
            barrier.wait()
            member_change_role(access=access, membership=target_membership, role=Role.MEMBER)
            outcomes.append("done")
        except RuleViolation as exc:
            outcomes.append(str(exc))
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=demote, args=(cast.alice, olivia)),
        threading.Thread(target=demote, args=(olivia, cast.alice)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The second demotion runs after the first commits (rows locked) and sees the last Owner.
    assert sorted(outcomes) == ["A workspace needs at least one Owner; make someone else Owner first.", "done"]
    assert Membership.objects.filter(workspace=cast.acme, role=Role.OWNER).count() == 1


# --- Removing a member revokes their tokens, atomically --------------------------------


def test_removing_a_member_revokes_all_their_tokens(cast, django_capture_on_commit_callbacks):
    issued = [token_create(access=cast.access(cast.carol), member=cast.carol, name=n) for n in ("a", "b")]
    bobs = token_create(access=cast.access(cast.bob), member=cast.bob)
    tokens_epoch = Epoch.objects.filter(scope="tokens").values_list("version", flat=True).first() or 0
    with django_capture_on_commit_callbacks(execute=True):
        member_remove(access=cast.access(cast.bob), membership=membership(cast, cast.carol), ip="10.0.0.1")
    for item in issued:
        item.token.refresh_from_db()
        assert item.token.revoked_at is not None and item.token.revoked_by == cast.bob
    # Every gateway process hears of it through the tokens epoch, committed with the change.
    assert Epoch.objects.get(scope="tokens").version > tokens_epoch
    bobs.token.refresh_from_db()
    assert bobs.token.is_active
    event = last_event(cast.acme)
    assert (event.action, event.actor_id, event.target_repr) == (Action.MEMBER_REMOVED, cast.bob.pk, cast.carol.email)
    assert event.metadata == {"role": "member", "tokens_revoked": 2, "left": False}


def test_if_the_audit_write_fails_nothing_is_removed(cast, django_capture_on_commit_callbacks):
    issued = token_create(access=cast.access(cast.carol), member=cast.carol)
    events_before = AuditEvent.objects.count()
    epochs_before = list(Epoch.objects.values_list("scope", "version"))
    with (
        mock.patch("apps.workspaces.services.audit_event_record", side_effect=RuntimeError("audit down")),
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError, match="audit down"),
    ):
        member_remove(access=cast.access(cast.alice), membership=membership(cast, cast.carol))
    assert callbacks == []
    assert membership(cast, cast.carol).role == Role.MEMBER
    issued.token.refresh_from_db()
    assert issued.token.revoked_at is None and issued.token.revoked_by is None
    # No invalidation either: the epochs moved in the same transaction and rolled back with it.
    assert list(Epoch.objects.values_list("scope", "version")) == epochs_before
    assert AuditEvent.objects.count() == events_before  # the token-revoked rows rolled back too


# --- Invitations ---------------------------------------------------------------------


def invite(cast, email="new@example.com", role=Role.MEMBER, by=None):
    return invitation_create(access=cast.access(by or cast.bob), email=email, role=role, base_url="https://mcp.test/")


def test_invitation_emails_a_link_and_stores_only_the_digest(cast, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        invitation, raw = invite(cast, email="  New@Example.com ")
    assert raw.startswith("mni_") and invitation.email == "new@example.com"
    (message,) = mail.outbox
    assert message.to == ["new@example.com"]
    assert f"https://mcp.test/invitations/{raw}/" in message.body
    assert "Acme" in message.subject and "Member" in message.body
    row = Invitation.objects.filter(pk=invitation.pk).values().get()
    assert row["digest"] == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in json.dumps(row, default=str)
    event = last_event(cast.acme)
    assert (event.action, event.actor_id, event.target_type, event.target_repr, event.metadata) == (
        Action.MEMBER_INVITED,
        cast.bob.pk,
        "invitation",
        "new@example.com",
        {"role": "member"},
    )
    assert raw not in all_audit_text() and row["digest"] not in all_audit_text()


def test_no_email_is_sent_when_the_invitation_rolls_back(cast, django_capture_on_commit_callbacks):
    with (
        mock.patch("apps.workspaces.services.audit_event_record", side_effect=RuntimeError("audit down")),
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
    ):
        invite(cast)
    assert mail.outbox == [] and not Invitation.objects.exists()


def test_accepting_joins_with_the_invited_role_once(cast):
    erin = UserFactory(email="erin@example.com")
    invitation, raw = invite(cast, email="erin@example.com", role=Role.ADMIN)
    joined = invitation_accept(user=erin, raw=raw, ip="10.0.0.3")
    assert joined.role == Role.ADMIN and joined.workspace == cast.acme
    invitation.refresh_from_db()
    assert invitation.status == "accepted" and invitation.accepted_by == erin
    event = last_event(cast.acme)
    assert (event.action, event.actor_id, event.target_repr, event.ip) == (
        Action.MEMBER_JOINED,
        erin.pk,
        erin.email,
        "10.0.0.3",
    )
    with pytest.raises(RuleViolation, match="accepted"):
        invitation_accept(user=erin, raw=raw)


def test_an_accepted_link_cannot_be_reused_by_someone_else(cast):
    erin = UserFactory(email="erin@example.com")
    _, raw = invite(cast, email="erin@example.com")
    invitation_accept(user=erin, raw=raw)
    with pytest.raises(RuleViolation):
        invitation_accept(user=cast.dave, raw=raw)
    assert not Membership.objects.filter(workspace=cast.acme, user=cast.dave).exists()


def test_wrong_email_is_refused(cast):
    _, raw = invite(cast, email="erin@example.com")
    with pytest.raises(RuleViolation, match=r"for erin@example\.com"):
        invitation_accept(user=cast.dave, raw=raw)
    assert not Membership.objects.filter(workspace=cast.acme, user=cast.dave).exists()


def test_expired_invitation_is_refused(cast):
    erin = UserFactory(email="erin@example.com")
    invitation, raw = invite(cast, email="erin@example.com")
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(RuleViolation, match="expired"):
        invitation_accept(user=erin, raw=raw)


def test_revoked_invitation_is_refused(cast):
    erin = UserFactory(email="erin@example.com")
    invitation, raw = invite(cast, email="erin@example.com")
    invitation_revoke(access=cast.access(cast.alice), invitation=invitation)
    event = last_event(cast.acme)
    assert (event.action, event.actor_id, event.target_id) == (
        Action.INVITATION_REVOKED,
        cast.alice.pk,
        str(invitation.pk),
    )
    with pytest.raises(RuleViolation, match="revoked"):
        invitation_accept(user=erin, raw=raw)
    with pytest.raises(RuleViolation, match="already revoked"):
        invitation_revoke(access=cast.access(cast.alice), invitation=invitation)


def test_inviting_an_address_with_a_pending_invitation_is_refused(cast):
    first, first_raw = invite(cast, email="erin@example.com", role=Role.ADMIN)
    events_before = AuditEvent.objects.count()
    with pytest.raises(RuleViolation) as refused:
        invite(cast, email="Erin@example.com", role=Role.MEMBER)
    expires = f"{first.expires_at:%Y-%m-%d %H:%M} UTC"
    assert str(refused.value) == (
        f"erin@example.com already has a pending invitation as Admin, expiring {expires}. "
        "Revoke it first, or replace it with this one."
    )
    first.refresh_from_db()
    assert (first.status, first.role) == ("pending", Role.ADMIN)
    assert Invitation.objects.filter(email="erin@example.com").count() == 1
    assert AuditEvent.objects.count() == events_before
    erin = UserFactory(email="erin@example.com")
    assert invitation_accept(user=erin, raw=first_raw).role == Role.ADMIN


def test_an_invitation_replaces_the_pending_one_only_when_told_to(cast, django_capture_on_commit_callbacks):
    first, first_raw = invite(cast, email="erin@example.com", role=Role.ADMIN)
    with django_capture_on_commit_callbacks(execute=True):
        second, second_raw = invitation_create(
            access=cast.access(cast.bob), email="erin@example.com", role=Role.MEMBER, replace=True
        )
    first.refresh_from_db()
    assert first.status == "revoked" and second.status == "pending"
    assert len(mail.outbox) == 1 and second_raw in mail.outbox[0].body
    revoked, invited = AuditEvent.objects.filter(workspace=cast.acme).order_by("-seq")[:2][::-1]
    assert (revoked.action, revoked.actor_id, revoked.target_id, revoked.metadata) == (
        Action.INVITATION_REVOKED,
        cast.bob.pk,
        str(first.pk),
        {"replaced": True},
    )
    assert (invited.action, invited.target_id, invited.metadata) == (
        Action.MEMBER_INVITED,
        str(second.pk),
        {"role": "member", "replaces": first.pk},
    )
    erin = UserFactory(email="erin@example.com")
    with pytest.raises(RuleViolation):
        invitation_accept(user=erin, raw=first_raw)
    assert invitation_accept(user=erin, raw=second_raw).role == Role.MEMBER


def test_replace_without_a_pending_invitation_is_a_plain_invitation(cast):
    invitation, _ = invitation_create(access=cast.access(cast.bob), email="erin@example.com", replace=True)
    assert last_event(cast.acme).metadata == {"role": "member"}
    assert invitation.status == "pending"


@pytest.mark.django_db(transaction=True)
def test_two_invitations_to_one_address_at_once_leave_one_pending(cast, require_postgres):
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def invite_as(role):
        try:
            access = access_for(user=cast.alice, workspace=cast.acme)
            barrier.wait()
            invitation_create(access=access, email="erin@example.com", role=role)
            outcomes.append("done")
        except RuleViolation as exc:
            outcomes.append(str(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=invite_as, args=(role,)) for role in (Role.ADMIN, Role.MEMBER)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The workspace row lock queues the second, which then sees the first's invitation.
    done, refused = sorted(outcomes)
    assert done == "done" and refused.startswith("erin@example.com already has a pending invitation as ")
    assert Invitation.objects.pending().filter(email="erin@example.com").count() == 1


def test_an_expired_or_revoked_invitation_does_not_block_a_new_one(cast):
    expired, _ = invite(cast, email="erin@example.com")
    Invitation.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    revoked, _ = invite(cast, email="erin@example.com")
    invitation_revoke(access=cast.access(cast.alice), invitation=revoked)
    fresh, _ = invite(cast, email="erin@example.com")
    assert fresh.status == "pending"


def test_invitation_to_a_deleted_workspace_is_refused(cast):
    erin = UserFactory(email="erin@example.com")
    _, raw = invite(cast, email="erin@example.com")
    workspace_delete(access=cast.access(cast.alice))
    with pytest.raises(RuleViolation):
        invitation_accept(user=erin, raw=raw)


@pytest.mark.parametrize("raw", ["", "mni_", "mni_" + "0" * 48, "mng_" + "0" * 48, "not a secret"])
def test_malformed_or_unknown_links_are_refused(cast, raw):
    assert invitation_lookup(raw) is None
    with pytest.raises(RuleViolation, match="not valid"):
        invitation_accept(user=cast.dave, raw=raw)


def test_who_may_invite_whom(cast):
    with pytest.raises(PermissionDenied):
        invite(cast, by=cast.carol)
    with pytest.raises(RuleViolation, match="cannot invite someone as Owner"):
        invite(cast, role=Role.OWNER, by=cast.bob)
    with pytest.raises(RuleViolation, match="already a member"):
        invite(cast, email="carol@example.com", by=cast.alice)
    with pytest.raises(ValidationError):
        invite(cast, email="not-an-email", by=cast.alice)
    invitation, _ = invite(cast, role=Role.OWNER, by=cast.alice)
    assert invitation.role == Role.OWNER
    with pytest.raises(PermissionDenied):
        invitation_revoke(access=cast.access(cast.carol), invitation=invitation)
    with pytest.raises(RuleViolation, match="another workspace"):
        invitation_revoke(access=cast.access(cast.dave, cast.globex), invitation=invitation)


# --- Audit rows carry no secrets -------------------------------------------------------


def test_the_audit_trail_of_a_busy_day_holds_no_secret(cast, olivia):
    erin = UserFactory(email="erin@example.com")
    _, invite_raw = invite(cast, email="erin@example.com", role=Role.ADMIN, by=cast.alice)
    invitation_accept(user=erin, raw=invite_raw)
    issued = token_create(access=cast.access(erin), member=erin, name="laptop")
    workspace_token = token_create(access=cast.access(cast.alice), member=None, kind=GatewayToken.Kind.WORKSPACE)
    member_change_role(access=cast.access(cast.alice), membership=membership(cast, erin), role=Role.MEMBER)
    member_remove(access=cast.access(cast.alice), membership=membership(cast, erin))
    workspace_delete(access=cast.access(olivia))
    text = all_audit_text()
    for secret in [invite_raw, issued.raw, workspace_token.raw]:
        assert secret not in text
        assert hashlib.sha256(secret.encode()).hexdigest() not in text
    actions = list(AuditEvent.objects.filter(workspace=cast.acme).order_by("seq").values_list("action", flat=True))
    assert actions == [
        Action.MEMBER_INVITED,
        Action.MEMBER_JOINED,
        Action.TOKEN_CREATED,
        Action.TOKEN_CREATED,
        Action.ROLE_CHANGED,
        Action.TOKEN_REVOKED,
        Action.MEMBER_REMOVED,
        Action.TOKEN_REVOKED,
        Action.WORKSPACE_DELETED,
    ]
    assert all(event.target_type and event.target_id for event in AuditEvent.objects.filter(workspace=cast.acme))
