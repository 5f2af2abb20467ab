"""Members page: invite (never silently replacing a pending invitation), revoke an invitation,
change roles, remove (after a confirmation); and the invitee's side."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.rbac.roles import Role
from apps.tokens.models import GatewayToken
from apps.tokens.services import token_create
from apps.workspaces.models import Invitation, Membership
from apps.workspaces.services import invitation_create
from tests.factories import MembershipFactory, UserFactory


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


CONFIRM = {"confirm": "yes"}


def _invite(client: Client, email: str, role: str = Role.MEMBER, **extra: str):
    return client.post(reverse("portal:member-invite", args=["acme"]), {"email": email, "role": role, **extra})


def _link_from_mail() -> str:
    (message,) = mail.outbox
    return re.search(r"http://testserver(/invitations/\S+/)", message.body).group(1)


def test_members_page_lists_members_and_pending_invitations(
    cast, signed_in, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    for n in range(20):
        MembershipFactory(workspace=cast.acme, user=UserFactory(email=f"m{n:02}@example.com"))
    with django_capture_on_commit_callbacks(execute=False):
        for n in range(5):
            invitation_create(access=cast.access(cast.alice), email=f"invitee{n}@example.com")
    client = signed_in(cast.alice)
    with django_assert_max_num_queries(9):  # 7th, 8th: the navigation's counts; 9th: "SSO required"
        response = client.get(reverse("portal:members", args=["acme"]))
    html = response.content.decode()
    assert len(response.context["rows"]) == 23
    assert len(response.context["invitations"]) == 5
    assert "bob@example.com" in html and "invitee4@example.com" in html


def test_invite_choices_follow_the_actors_role(cast, signed_in):
    owner_form = signed_in(cast.alice).get(reverse("portal:members", args=["acme"])).context["invite_form"]
    admin_form = signed_in(cast.bob).get(reverse("portal:members", args=["acme"])).context["invite_form"]
    assert [v for v, _ in owner_form.fields["role"].choices] == [Role.OWNER, Role.ADMIN, Role.MEMBER]
    assert [v for v, _ in admin_form.fields["role"].choices] == [Role.ADMIN, Role.MEMBER]


def test_admin_cannot_invite_an_owner_and_keeps_the_input(cast, signed_in):
    response = _invite(signed_in(cast.bob), "frank@example.com", Role.OWNER)
    assert response.status_code == 200
    assert "role" in response.context["invite_form"].errors
    assert 'value="frank@example.com"' in response.content.decode()
    assert not Invitation.objects.filter(email="frank@example.com").exists()
    assert mail.outbox == []


def test_inviting_an_existing_member_is_refused_clearly(cast, signed_in):
    response = _invite(signed_in(cast.alice), "carol@example.com")
    assert response.status_code == 200
    assert "carol@example.com is already a member of acme." in response.context["invite_form"].non_field_errors()
    assert mail.outbox == []


def test_reinviting_a_pending_address_is_refused_with_a_choice(cast, signed_in, django_capture_on_commit_callbacks):
    """A second invitation no longer silently replaces the first (an Admin invitation became Member)."""
    alice = signed_in(cast.alice)
    with django_capture_on_commit_callbacks(execute=True):
        _invite(alice, "erin@example.com", Role.ADMIN)
    first = Invitation.objects.get(email="erin@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        refused = _invite(alice, "Erin@Example.com", Role.MEMBER)
    assert refused.status_code == 200
    assert (
        "erin@example.com already has a pending invitation as Admin, "
        f"expiring {first.expires_at:%Y-%m-%d %H:%M} UTC. Revoke it first, or replace it with this one."
    ) in refused.context["invite_form"].non_field_errors()
    first.refresh_from_db()
    assert (first.status, first.role) == ("pending", Role.ADMIN)
    assert Invitation.objects.filter(email="erin@example.com").count() == 1
    assert len(mail.outbox) == 1
    assert not AuditEvent.objects.filter(action=Action.INVITATION_REVOKED).exists()
    # The page offers both ways out: replace it (a separate, explicit POST) or revoke it.
    assert refused.context["pending"] == first
    html = refused.content.decode()
    choice = html[html.index('id="pending-choice"') :]
    assert 'name="confirm" value="yes"' in choice and f'name="role" value="{Role.MEMBER}"' in choice
    assert "Replace it: invite as Member" in choice
    assert reverse("portal:invitation-revoke", args=["acme", first.pk]) in choice


def test_replacing_a_pending_invitation_is_explicit_and_audited(cast, signed_in, django_capture_on_commit_callbacks):
    alice = signed_in(cast.alice)
    _invite(alice, "erin@example.com", Role.ADMIN)
    first = Invitation.objects.get(email="erin@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        replaced = _invite(alice, "erin@example.com", Role.MEMBER, **CONFIRM)
    assert replaced.status_code == 302
    first.refresh_from_db()
    assert first.status == "revoked"
    second = Invitation.objects.pending().get(email="erin@example.com")
    assert second.role == Role.MEMBER
    assert [m.to for m in mail.outbox] == [["erin@example.com"]]
    revoked = AuditEvent.objects.get(action=Action.INVITATION_REVOKED)
    invited = AuditEvent.objects.filter(action=Action.MEMBER_INVITED).order_by("seq").last()
    assert (revoked.actor, revoked.target_id, revoked.metadata) == (cast.alice, str(first.pk), {"replaced": True})
    assert (invited.target_id, invited.metadata) == (str(second.pk), {"role": "member", "replaces": first.pk})
    assert revoked.seq < invited.seq
    follow = alice.get(replaced["Location"])
    assert "Invitation sent to erin@example.com; the earlier invitation's link no longer works." in _messages(follow)


def test_revoking_the_pending_invitation_then_inviting_again_works(cast, signed_in):
    alice = signed_in(cast.alice)
    _invite(alice, "erin@example.com", Role.ADMIN)
    first = Invitation.objects.get(email="erin@example.com")
    alice.post(reverse("portal:invitation-revoke", args=["acme", first.pk]))
    assert _invite(alice, "erin@example.com", Role.MEMBER).status_code == 302
    assert Invitation.objects.pending().get(email="erin@example.com").role == Role.MEMBER


def test_invitation_flow_end_to_end(cast, signed_in, django_capture_on_commit_callbacks):
    alice = signed_in(cast.alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = _invite(alice, "Erin@Example.com", Role.ADMIN)
    assert response.status_code == 302
    link = _link_from_mail()
    assert mail.outbox[0].to == ["erin@example.com"]

    # Signed out, the link leads to sign-in and back.
    anonymous = Client().get(link)
    assert anonymous.status_code == 302
    assert anonymous["Location"] == f"{reverse('account_login')}?next={link}"

    erin = UserFactory(email="erin@example.com")
    client = signed_in(erin)
    page = client.get(link)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Acme" in html and "Admin" in html and "Accept invitation" in html

    accepted = client.post(link)
    assert accepted["Location"] == reverse("portal:workspace", args=["acme"])
    assert Membership.objects.get(workspace=cast.acme, user=erin).role == Role.ADMIN
    assert AuditEvent.objects.filter(workspace=cast.acme, action=Action.MEMBER_JOINED, actor=erin).exists()
    assert client.get(reverse("portal:members", args=["acme"])).status_code == 200

    # Used: a second try says so and changes nothing.
    again = client.post(link)
    assert again.status_code == 200
    assert "This invitation is accepted." in _messages(again)
    assert "no longer valid" in again.content.decode()


def test_invitation_for_someone_else_is_refused(cast, signed_in, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _invite(signed_in(cast.alice), "erin@example.com")
    link = _link_from_mail()
    dave = signed_in(cast.dave)
    page = dave.get(link)
    assert "this invitation is for erin@example.com" in page.content.decode()
    refused = dave.post(link)
    assert refused.status_code == 200
    assert "This invitation is for erin@example.com; sign in with that address to accept it." in _messages(refused)
    assert not Membership.objects.filter(workspace=cast.acme, user=cast.dave).exists()
    assert Invitation.objects.get(email="erin@example.com").accepted_at is None


@pytest.mark.parametrize("link", ["/invitations/mni_" + "0" * 48 + "/", "/invitations/garbage/"])
def test_unknown_invitation_links_say_so(cast, signed_in, link):
    client = signed_in(cast.dave)
    assert client.get(link).status_code == 404
    refused = client.post(link)
    assert "This invitation link is not valid." in _messages(refused)


def test_revoked_invitation_cannot_be_accepted(cast, signed_in, django_capture_on_commit_callbacks):
    alice = signed_in(cast.alice)
    with django_capture_on_commit_callbacks(execute=True):
        _invite(alice, "erin@example.com")
    link = _link_from_mail()
    invitation = Invitation.objects.get(email="erin@example.com")
    response = alice.post(reverse("portal:invitation-revoke", args=["acme", invitation.pk]))
    assert response.status_code == 302
    invitation.refresh_from_db()
    assert invitation.status == "revoked"
    erin = signed_in(UserFactory(email="erin@example.com"))
    assert "is revoked" in erin.get(link).content.decode()
    assert "This invitation is revoked." in _messages(erin.post(link))
    assert not Membership.objects.filter(workspace=cast.acme, user__email="erin@example.com").exists()


def test_owner_changes_a_role(cast, signed_in):
    carol = Membership.objects.get(workspace=cast.acme, user=cast.carol)
    response = signed_in(cast.alice).post(
        reverse("portal:member-role", args=["acme", carol.pk]), {"role": Role.ADMIN}, follow=True
    )
    assert "carol@example.com is now Admin." in _messages(response)
    carol.refresh_from_db()
    assert carol.role == Role.ADMIN
    assert AuditEvent.objects.filter(workspace=cast.acme, action=Action.ROLE_CHANGED).exists()


def test_admin_cannot_touch_the_owner_and_sees_no_controls_for_them(cast, signed_in):
    client = signed_in(cast.bob)
    page = client.get(reverse("portal:members", args=["acme"]))
    manageable = {m.user.email: can for m, can in page.context["rows"]}
    assert manageable == {"alice@example.com": False, "bob@example.com": False, "carol@example.com": True}
    alice = Membership.objects.get(workspace=cast.acme, user=cast.alice)
    response = client.post(reverse("portal:member-role", args=["acme", alice.pk]), {"role": Role.MEMBER}, follow=True)
    assert "Only an Owner can change or remove an Owner." in _messages(response)
    alice.refresh_from_db()
    assert alice.role == Role.OWNER
    removed = client.post(reverse("portal:member-remove", args=["acme", alice.pk]), CONFIRM, follow=True)
    assert "Only an Owner can change or remove an Owner." in _messages(removed)
    # Nor is she asked to confirm what would be refused.
    asked = client.get(reverse("portal:member-remove", args=["acme", alice.pk]), follow=True)
    assert asked.redirect_chain == [(reverse("portal:members", args=["acme"]), 302)]
    assert "Only an Owner can change or remove an Owner." in _messages(asked)
    assert Membership.objects.filter(pk=alice.pk).exists()


def test_an_unknown_role_is_refused(cast, signed_in):
    carol = Membership.objects.get(workspace=cast.acme, user=cast.carol)
    response = signed_in(cast.alice).post(
        reverse("portal:member-role", args=["acme", carol.pk]), {"role": "emperor"}, follow=True
    )
    assert "Choose one of the listed roles." in _messages(response)
    carol.refresh_from_db()
    assert carol.role == Role.MEMBER


def test_removing_a_member_asks_first(cast, signed_in):
    issued = token_create(access=cast.access(cast.carol), member=cast.carol)
    carol = Membership.objects.get(workspace=cast.acme, user=cast.carol)
    url = reverse("portal:member-remove", args=["acme", carol.pk])
    bob = signed_in(cast.bob)
    page = bob.get(reverse("portal:members", args=["acme"])).content.decode()
    # The list links to the confirmation; no form there removes anyone in one click.
    assert f'href="{url}"' in page and f'action="{url}"' not in page

    asked = bob.get(url)
    assert asked.status_code == 200
    html = asked.content.decode()
    assert "Remove carol@example.com from “Acme”?" in html
    assert "<dt>Active tokens</dt><dd>1</dd>" in html and "revoked" in html
    assert 'name="confirm" value="yes"' in html
    assert f'href="{reverse("portal:members", args=["acme"])}#member-{carol.pk}"' in html  # Cancel

    for data in ({}, {"confirm": "no"}):
        unconfirmed = bob.post(url, data)
        assert unconfirmed.status_code == 200
        assert (
            "Nothing was changed: this needs confirming. Press “Remove carol@example.com” below, or Cancel."
            in _messages(unconfirmed)
        )
    assert Membership.objects.filter(pk=carol.pk).exists()
    assert GatewayToken.objects.get(pk=issued.token.pk).revoked_at is None
    assert not AuditEvent.objects.filter(action=Action.MEMBER_REMOVED).exists()


def test_admin_removes_a_member_and_their_tokens_go(cast, signed_in):
    issued = token_create(access=cast.access(cast.carol), member=cast.carol)
    carol = Membership.objects.get(workspace=cast.acme, user=cast.carol)
    response = signed_in(cast.bob).post(reverse("portal:member-remove", args=["acme", carol.pk]), CONFIRM, follow=True)
    assert "carol@example.com removed; their tokens are revoked." in _messages(response)
    assert not Membership.objects.filter(pk=carol.pk).exists()
    assert GatewayToken.objects.get(pk=issued.token.pk).revoked_at is not None
    assert AuditEvent.objects.get(action=Action.MEMBER_REMOVED).actor == cast.bob
    assert signed_in(cast.carol).get(reverse("portal:workspace", args=["acme"])).status_code == 404


def test_member_cannot_manage_members(cast, signed_in):
    client = signed_in(cast.carol)
    bob = Membership.objects.get(workspace=cast.acme, user=cast.bob)
    assert client.get(reverse("portal:member-remove", args=["acme", bob.pk])).status_code == 403
    assert client.post(reverse("portal:member-remove", args=["acme", bob.pk]), CONFIRM).status_code == 403
    assert _invite(client, "x@example.com").status_code == 403
    assert Membership.objects.filter(pk=bob.pk).exists()
    assert not Invitation.objects.exists()


def test_expired_invitation_says_so(cast, signed_in, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _invite(signed_in(cast.alice), "erin@example.com")
    link = _link_from_mail()
    Invitation.objects.filter(email="erin@example.com").update(expires_at=timezone.now() - timedelta(minutes=1))
    erin = signed_in(UserFactory(email="erin@example.com"))
    assert "is expired" in erin.get(link).content.decode()
    assert "This invitation is expired." in _messages(erin.post(link))
    assert not Membership.objects.filter(workspace=cast.acme, user__email="erin@example.com").exists()
