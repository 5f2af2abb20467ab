"""Who reaches which page: anonymous → sign-in, roles → their pages (403 naming the role needed
for the others), outsiders → 404 everywhere."""

from __future__ import annotations

from html import unescape

import pytest
from django.test import Client, RequestFactory
from django.urls import resolve, reverse

from apps.audit.models import AuditEvent
from apps.portal.views.base import workspace_view
from apps.rbac.roles import Capability, Role
from apps.tokens.models import GatewayToken
from apps.workspaces.models import Invitation, Membership, Workspace


def _pages(slug: str) -> list[str]:
    return [
        reverse("portal:workspace", args=[slug]),
        reverse("portal:members", args=[slug]),
        reverse("portal:tokens", args=[slug]),
        reverse("portal:audit", args=[slug]),
        reverse("portal:audit-export", args=[slug]) + "?format=csv",
        reverse("portal:hosted", args=[slug]),
    ]


def _actions(slug: str, objects) -> list[tuple[str, dict]]:
    return [
        (reverse("portal:workspace-settings", args=[slug]), {"name": "Pwned", "plan": "enterprise"}),
        (reverse("portal:workspace-delete", args=[slug]), {"confirm": slug}),
        (reverse("portal:workspace-leave", args=[slug]), {"confirm": "yes"}),
        (reverse("portal:member-invite", args=[slug]), {"email": "mallory@example.com", "role": Role.OWNER}),
        (reverse("portal:member-role", args=[slug, objects.carol_membership.pk]), {"role": Role.OWNER}),
        (reverse("portal:member-remove", args=[slug, objects.carol_membership.pk]), {"confirm": "yes"}),
        (reverse("portal:invitation-revoke", args=[slug, objects.invitation.pk]), {}),
        (reverse("portal:tokens", args=[slug]), {"name": "mine", "holder": "workspace"}),
        (reverse("portal:token-revoke", args=[slug, objects.carol_token.token.pk]), {"confirm": "yes"}),
        (reverse("portal:token-revoke", args=[slug, objects.workspace_token.token.pk]), {"confirm": "yes"}),
        # The gate answers before the image is looked up; instances' URLs: tests/portal/test_hosting.py.
        (reverse("portal:hosted-deploy", args=[slug, "notes"]), {"notes-profile": "small"}),
    ]


# Actions whose URL answers GET with a confirmation page (and acts only on its POST).
CONFIRMED = ("portal:workspace-leave", "portal:member-remove", "portal:token-revoke")


def _acme_state(cast) -> tuple:
    acme = Workspace.objects.get(pk=cast.acme.pk)
    return (
        acme.name,
        acme.plan,
        acme.deleted_at,
        sorted(Membership.objects.filter(workspace=acme).values_list("user__email", "role")),
        sorted(Invitation.objects.filter(workspace=acme).values_list("email", "revoked_at")),
        sorted(GatewayToken.objects.filter(workspace=acme).values_list("prefix", "revoked_at")),
        AuditEvent.objects.filter(workspace=acme).count(),
    )


def test_anonymous_is_sent_to_sign_in_everywhere(cast, acme_objects):
    client = Client()
    urls = [reverse("portal:home"), reverse("portal:workspace-new"), reverse("portal:api-keys"), *_pages("acme")]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("account_login") + "?next="), url
    for url, data in _actions("acme", acme_objects):
        response = client.post(url, data)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("account_login")), url
    assert Workspace.objects.get(pk=cast.acme.pk).name == "Acme"


def test_outsider_gets_404_for_every_page_and_action_and_changes_nothing(cast, acme_objects, signed_in):
    dave = signed_in(cast.dave)
    before = _acme_state(cast)
    for url in _pages("acme"):
        assert dave.get(url).status_code == 404, url
        assert dave.post(url, {}).status_code == 404, url
    for url, data in _actions("acme", acme_objects):
        assert dave.post(url, data).status_code == 404, url
        assert dave.get(url).status_code == 404, url
    assert _acme_state(cast) == before
    # A workspace that does not exist answers exactly the same.
    for url in _pages("no-such-workspace"):
        assert dave.get(url).status_code == 404, url


def test_members_of_one_workspace_cannot_reach_objects_of_another_through_their_own(cast, acme_objects, signed_in):
    """alice owns acme; globex's membership, invitation and token ids are unknown under /w/acme/."""
    from apps.tokens.services import token_create
    from apps.workspaces.services import invitation_create

    dave_membership = Membership.objects.get(workspace=cast.globex, user=cast.dave)
    globex_invitation, _ = invitation_create(access=cast.access(cast.dave, cast.globex), email="gina@example.com")
    globex_token = token_create(access=cast.access(cast.dave, cast.globex), member=cast.dave).token
    alice = signed_in(cast.alice)
    attempts = [
        (reverse("portal:member-role", args=["acme", dave_membership.pk]), {"role": Role.MEMBER}),
        (reverse("portal:member-remove", args=["acme", dave_membership.pk]), {}),
        (reverse("portal:invitation-revoke", args=["acme", globex_invitation.pk]), {}),
        (reverse("portal:token-revoke", args=["acme", globex_token.pk]), {}),
    ]
    for url, data in attempts:
        assert alice.post(url, data).status_code == 404, url
    assert Membership.objects.get(pk=dave_membership.pk).role == Role.OWNER
    globex_invitation.refresh_from_db()
    globex_token.refresh_from_db()
    assert globex_invitation.revoked_at is None
    assert globex_token.revoked_at is None
    # And nothing of globex shows on alice's pages.
    assert "globex" not in alice.get(reverse("portal:home")).content.decode().lower()


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("alice", {"workspace": 200, "members": 200, "tokens": 200, "audit": 200, "hosted": 200}),
        ("bob", {"workspace": 200, "members": 200, "tokens": 200, "audit": 200, "hosted": 200}),
        ("carol", {"workspace": 200, "members": 403, "tokens": 200, "audit": 403, "hosted": 200}),
    ],
)
def test_each_role_reaches_its_pages(cast, signed_in, who, expected):
    client = signed_in(getattr(cast, who))
    for name, status in expected.items():
        assert client.get(reverse(f"portal:{name}", args=["acme"])).status_code == status, name


def test_the_workspace_tabs_follow_the_role(cast, signed_in):
    members_url = reverse("portal:members", args=["acme"])
    audit_url = reverse("portal:audit", args=["acme"])
    owner_page = signed_in(cast.alice).get(reverse("portal:workspace", args=["acme"])).content.decode()
    member_page = signed_in(cast.carol).get(reverse("portal:workspace", args=["acme"])).content.decode()
    assert members_url in owner_page and audit_url in owner_page
    assert members_url not in member_page and audit_url not in member_page


def test_a_member_is_told_which_role_a_page_needs_and_an_outsider_learns_nothing(cast, acme_objects, signed_in):
    carol, dave = signed_in(cast.carol), signed_in(cast.dave)
    before = _acme_state(cast)
    admin_only = [
        reverse("portal:members", args=["acme"]),
        reverse("portal:audit", args=["acme"]),
        reverse("portal:calls", args=["acme"]),
        reverse("portal:member-remove", args=["acme", acme_objects.carol_membership.pk]),
    ]
    for url in admin_only:
        for response in (carol.get(url), carol.post(url, {"confirm": "yes"})):
            assert response.status_code == 403, url
            html = unescape(response.content.decode())
            assert "This page is for the workspace's Owners and Admins; you are a Member." in html, url
            assert reverse("portal:workspace", args=["acme"]) in html  # the way back, inside her workspace
        assert dave.get(url).status_code == 404, url
        assert "Owners and Admins" not in dave.get(url).content.decode()
    assert _acme_state(cast) == before


def test_an_owners_only_page_names_the_owners(cast):
    # No portal page needs more than an Admin has today (Owner-only actions are forms on
    # shared pages); the gate's wording covers one anyway.
    @workspace_view(Capability.DELETE_WORKSPACE)
    def owners_only(request, access):  # pragma: no cover - bob never gets here
        raise AssertionError

    request = RequestFactory().get("/w/acme/owners-only/")
    request.user = cast.bob
    response = owners_only(request, slug="acme")
    assert response.status_code == 403
    assert "This page is for the workspace's Owners; you are an Admin." in unescape(response.content.decode())


def test_actions_refuse_get_or_only_ask_for_confirmation(cast, acme_objects, signed_in):
    alice = signed_in(cast.alice)
    before = _acme_state(cast)
    for url, _ in _actions("acme", acme_objects):
        name = f"portal:{resolve(url).url_name}"
        if name == "portal:tokens":
            continue
        assert alice.get(url).status_code == (200 if name in CONFIRMED else 405), url
    assert _acme_state(cast) == before


def test_csrf_is_enforced_on_every_form(cast, acme_objects):
    client = Client(enforce_csrf_checks=True)
    client.force_login(cast.alice)
    before = _acme_state(cast)
    for url, data in _actions("acme", acme_objects):
        assert client.post(url, data).status_code == 403, url
    for url, data in [
        (reverse("portal:workspace-new"), {"slug": "sneaky", "name": "Sneaky", "plan": "team"}),
        (reverse("portal:api-keys"), {"name": "sneaky"}),
        (reverse("account_logout"), {}),
    ]:
        assert client.post(url, data).status_code == 403, url
    assert _acme_state(cast) == before
    assert not Workspace.objects.filter(slug="sneaky").exists()


def test_csrf_token_from_the_page_lets_the_form_through(cast):
    client = Client(enforce_csrf_checks=True)
    client.force_login(cast.alice)
    page = client.get(reverse("portal:workspace", args=["acme"]))
    token = page.context["csrf_token"]
    response = client.post(
        reverse("portal:workspace-settings", args=["acme"]),
        {"name": "Acme Corp", "plan": "team", "csrfmiddlewaretoken": str(token)},
    )
    assert response.status_code == 302
    assert Workspace.objects.get(pk=cast.acme.pk).name == "Acme Corp"
