"""REST API for workspaces, members and invitations: who may do what, and what gets recorded."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.rbac.roles import Role
from apps.tokens.services import token_create
from apps.workspaces.models import Enforcement, Invitation, Membership, Plan, Workspace
from apps.workspaces.services import invitation_create
from tests.factories import MembershipFactory, UserFactory


def url(name: str, **kwargs) -> str:
    return reverse(f"api:{name}", kwargs=kwargs)


def events(workspace, action: Action) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(workspace=workspace, action=action))


@pytest.fixture
def acme_ids(cast):
    """Real ids inside acme, so a refusal cannot come from a missing object."""
    invitation, _ = invitation_create(access=cast.access(cast.bob), email="erin@example.com")
    return {
        "member": Membership.objects.get(workspace=cast.acme, user=cast.carol).pk,
        "invitation": invitation.pk,
    }


def acme_endpoints(ids: dict) -> list[tuple[str, str, dict]]:
    return [
        ("get", url("workspace-detail", slug="acme"), {}),
        ("patch", url("workspace-detail", slug="acme"), {"name": "Mine now", "enforcement": "enforce"}),
        ("delete", url("workspace-detail", slug="acme"), {}),
        ("get", url("member-list", slug="acme"), {}),
        ("patch", url("member-detail", slug="acme", pk=ids["member"]), {"role": "owner"}),
        ("delete", url("member-detail", slug="acme", pk=ids["member"]), {}),
        ("get", url("invitation-list", slug="acme"), {}),
        ("post", url("invitation-list", slug="acme"), {"email": "mallory@example.com", "role": "owner"}),
        ("delete", url("invitation-detail", slug="acme", pk=ids["invitation"]), {}),
    ]


# --- Nobody outside gets in ------------------------------------------------------------


def test_anonymous_callers_get_401_with_a_json_error(cast, acme_ids, client_for):
    anonymous = client_for()
    endpoints = [*acme_endpoints(acme_ids), ("get", url("workspace-list"), {}), ("post", url("workspace-list"), {})]
    for method, path, body in endpoints:
        response = getattr(anonymous, method)(path, body, format="json")
        assert response.status_code == 401, (method, path)
        assert response.json() == {"error": "Authentication credentials were not provided."}
        assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_an_outsider_gets_404_on_everything_and_changes_nothing(cast, acme_ids, client_for):
    dave = client_for(cast.dave)
    before = AuditEvent.objects.filter(workspace=cast.acme).count()
    for method, path, body in acme_endpoints(acme_ids):
        response = getattr(dave, method)(path, body, format="json")
        assert response.status_code == 404, (method, path)
        assert response.json() == {"error": "Not found."}
    assert AuditEvent.objects.filter(workspace=cast.acme).count() == before
    acme = Workspace.objects.get(slug="acme")
    assert (acme.name, acme.enforcement, acme.deleted_at) == ("Acme", Enforcement.OFF, None)
    assert Membership.objects.get(pk=acme_ids["member"]).role == Role.MEMBER
    assert Invitation.objects.get(pk=acme_ids["invitation"]).status == "pending"


def test_a_missing_workspace_looks_exactly_like_a_forbidden_one(cast, client_for):
    dave = client_for(cast.dave)
    forbidden = dave.get(url("workspace-detail", slug="acme"))
    missing = dave.get(url("workspace-detail", slug="no-such-workspace"))
    assert (forbidden.status_code, forbidden.json()) == (missing.status_code, missing.json())


def test_members_of_one_workspace_see_nothing_of_another(cast, client_for):
    alice = client_for(cast.alice)
    dave_membership = Membership.objects.get(workspace=cast.globex, user=cast.dave)
    assert alice.get(url("workspace-detail", slug="globex")).status_code == 404
    assert alice.get(url("member-list", slug="globex")).status_code == 404
    # Nor through acme's URLs, by the id of globex's row.
    response = alice.patch(url("member-detail", slug="acme", pk=dave_membership.pk), {"role": "member"}, format="json")
    assert response.status_code == 404
    assert alice.delete(url("member-detail", slug="acme", pk=dave_membership.pk)).status_code == 404
    assert Membership.objects.filter(pk=dave_membership.pk, role=Role.OWNER).exists()


# --- Workspaces ------------------------------------------------------------------------


def test_the_list_shows_only_my_workspaces_with_my_role(cast, client_for):
    response = client_for(cast.bob).get(url("workspace-list"))
    assert response.status_code == 200
    body = response.json()
    assert [(w["slug"], w["role"]) for w in body["results"]] == [("acme", "admin")]
    assert set(body) == {"next", "previous", "results"}


def test_the_workspace_list_does_not_grow_queries_with_workspaces(cast, client_for):
    carol = client_for(cast.carol)
    with CaptureQueriesContext(connection) as few:
        carol.get(url("workspace-list"))
    for _ in range(5):
        MembershipFactory(user=cast.carol)
    with CaptureQueriesContext(connection) as many:
        response = carol.get(url("workspace-list"))
    assert len(response.json()["results"]) == 6
    assert len(many) == len(few)


def test_anyone_signed_in_can_create_a_workspace_and_owns_it(cast, client_for):
    response = client_for(cast.carol).post(
        url("workspace-list"), {"slug": "initech", "name": "Initech", "plan": "enterprise"}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["role"] == "owner"
    initech = Workspace.objects.get(slug="initech")
    assert initech.plan == Plan.ENTERPRISE
    assert Membership.objects.get(workspace=initech).user == cast.carol
    (event,) = events(initech, Action.WORKSPACE_CREATED)
    assert event.actor == cast.carol


def test_creating_a_workspace_explains_a_bad_or_taken_slug(cast, client_for):
    carol = client_for(cast.carol)
    bad = carol.post(url("workspace-list"), {"slug": "Not A Slug!"}, format="json")
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("slug: Use 1–50 lowercase letters")
    assert "slug" in bad.json()["fields"]
    taken = carol.post(url("workspace-list"), {"slug": "globex"}, format="json")
    assert taken.status_code == 400
    assert taken.json()["error"] == "slug: The slug 'globex' is taken; choose another."


def test_a_member_can_read_the_workspace(cast, client_for):
    response = client_for(cast.carol).get(url("workspace-detail", slug="acme"))
    assert response.status_code == 200
    assert response.json()["slug"] == "acme"
    assert response.json()["role"] == "member"


def test_renaming_needs_an_owner(cast, client_for):
    refused = client_for(cast.bob).patch(url("workspace-detail", slug="acme"), {"name": "Bob's"}, format="json")
    assert refused.status_code == 403
    assert refused.json() == {"error": "Your role in this workspace does not allow this (workspace.update)."}
    assert Workspace.objects.get(slug="acme").name == "Acme"

    response = client_for(cast.alice).patch(url("workspace-detail", slug="acme"), {"name": "Acme Inc"}, format="json")
    assert response.status_code == 200
    assert response.json()["name"] == "Acme Inc"
    (event,) = events(cast.acme, Action.WORKSPACE_UPDATED)
    assert (event.actor, event.metadata["changes"]) == (cast.alice, {"name": ["Acme", "Acme Inc"]})


def test_changing_the_plan_needs_an_owner(cast, client_for):
    path = url("workspace-detail", slug="acme")
    assert client_for(cast.bob).patch(path, {"plan": "enterprise"}, format="json").status_code == 403
    assert client_for(cast.alice).patch(path, {"plan": "enterprise"}, format="json").status_code == 200
    assert Workspace.objects.get(slug="acme").plan == Plan.ENTERPRISE
    assert len(events(cast.acme, Action.PLAN_CHANGED)) == 1


def test_the_gateway_policy_needs_an_admin(cast, client_for):
    path = url("workspace-detail", slug="acme")
    body = {"enforcement": "shadow", "deny_by_default": True, "rate_limit_per_minute": 30}
    refused = client_for(cast.carol).patch(path, body, format="json")
    assert refused.status_code == 403
    assert "allowlists.manage" in refused.json()["error"]

    response = client_for(cast.bob).patch(path, body, format="json")
    assert response.status_code == 200
    assert {name: response.json()[name] for name in body} == body
    # The same one row as the portal, the /policy endpoint and the admin write.
    (event,) = events(cast.acme, Action.ENFORCEMENT_CHANGED)
    assert (event.actor, event.metadata) == (
        cast.bob,
        {
            "changes": {
                "enforcement": ["off", "shadow"],
                "deny_by_default": [False, True],
                "rate_limit_per_minute": [200, 30],
            }
        },
    )


def test_name_and_policy_in_one_request_change_together_or_not_at_all(cast, client_for):
    path = url("workspace-detail", slug="acme")
    refused = client_for(cast.bob).patch(path, {"name": "Bob's", "enforcement": "shadow"}, format="json")
    assert refused.status_code == 403  # an Admin may not rename: the policy stays as well
    assert Workspace.objects.get(slug="acme").enforcement == "off"
    assert not events(cast.acme, Action.ENFORCEMENT_CHANGED)


def test_a_bad_value_says_what_is_allowed(cast, client_for):
    response = client_for(cast.alice).patch(
        url("workspace-detail", slug="acme"), {"enforcement": "strict"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"] == 'enforcement: "strict" is not a valid choice.'
    assert list(response.json()["fields"]) == ["enforcement"]


def test_malformed_json_is_a_json_error(cast, client_for):
    response = client_for(cast.alice).generic(
        "PATCH", url("workspace-detail", slug="acme"), "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("JSON parse error")


def test_deleting_needs_an_owner_and_revokes_every_token(cast, client_for):
    issued = token_create(access=cast.access(cast.carol), member=cast.carol)
    path = url("workspace-detail", slug="acme")
    assert client_for(cast.bob).delete(path).status_code == 403
    assert not Workspace.objects.get(slug="acme").is_deleted

    alice = client_for(cast.alice)
    assert alice.delete(path).status_code == 204
    assert alice.get(path).status_code == 404
    issued.token.refresh_from_db()
    assert issued.token.revoked_at is not None
    (event,) = events(cast.acme, Action.WORKSPACE_DELETED)
    assert event.actor == cast.alice


# --- Members ---------------------------------------------------------------------------


def test_listing_members_needs_an_admin(cast, client_for):
    refused = client_for(cast.carol).get(url("member-list", slug="acme"))
    assert refused.status_code == 403
    assert "members.view" in refused.json()["error"]

    response = client_for(cast.bob).get(url("member-list", slug="acme"))
    assert response.status_code == 200
    assert sorted((m["email"], m["role"]) for m in response.json()["results"]) == [
        ("alice@example.com", "owner"),
        ("bob@example.com", "admin"),
        ("carol@example.com", "member"),
    ]


def test_the_member_list_does_not_grow_queries_with_members(cast, client_for):
    bob = client_for(cast.bob)
    with CaptureQueriesContext(connection) as few:
        bob.get(url("member-list", slug="acme"))
    for _ in range(5):
        MembershipFactory(workspace=cast.acme)
    with CaptureQueriesContext(connection) as many:
        response = bob.get(url("member-list", slug="acme"))
    assert len(response.json()["results"]) == 8
    assert len(many) == len(few)


def test_an_admin_may_promote_a_member_but_a_member_may_not(cast, client_for):
    carol_row = Membership.objects.get(workspace=cast.acme, user=cast.carol)
    bob_row = Membership.objects.get(workspace=cast.acme, user=cast.bob)
    refused = client_for(cast.carol).patch(url("member-detail", slug="acme", pk=bob_row.pk), {"role": "member"})
    assert refused.status_code == 403
    assert Membership.objects.get(pk=bob_row.pk).role == Role.ADMIN

    response = client_for(cast.bob).patch(url("member-detail", slug="acme", pk=carol_row.pk), {"role": "admin"})
    assert response.status_code == 200
    assert response.json() == {
        "id": carol_row.pk,
        "email": "carol@example.com",
        "role": "admin",
        "created_at": response.json()["created_at"],
    }
    (event,) = events(cast.acme, Action.ROLE_CHANGED)
    assert (event.actor, event.metadata) == (cast.bob, {"before": "member", "after": "admin"})


def test_an_admin_cannot_touch_an_owner(cast, client_for):
    alice_row = Membership.objects.get(workspace=cast.acme, user=cast.alice)
    response = client_for(cast.bob).patch(url("member-detail", slug="acme", pk=alice_row.pk), {"role": "member"})
    assert response.status_code == 400
    assert response.json() == {"error": "Only an Owner can change or remove an Owner."}


def test_removing_a_member_needs_an_admin_and_revokes_their_tokens(cast, client_for):
    issued = token_create(access=cast.access(cast.carol), member=cast.carol)
    bob_row = Membership.objects.get(workspace=cast.acme, user=cast.bob)
    carol_row = Membership.objects.get(workspace=cast.acme, user=cast.carol)
    assert client_for(cast.carol).delete(url("member-detail", slug="acme", pk=bob_row.pk)).status_code == 403
    assert Membership.objects.filter(pk=bob_row.pk).exists()

    assert client_for(cast.bob).delete(url("member-detail", slug="acme", pk=carol_row.pk)).status_code == 204
    assert not Membership.objects.filter(pk=carol_row.pk).exists()
    issued.token.refresh_from_db()
    assert issued.token.revoked_at is not None
    (event,) = events(cast.acme, Action.MEMBER_REMOVED)
    assert (event.actor, event.target_repr, event.metadata["tokens_revoked"]) == (cast.bob, "carol@example.com", 1)


def test_a_member_may_leave(cast, client_for):
    carol_row = Membership.objects.get(workspace=cast.acme, user=cast.carol)
    carol = client_for(cast.carol)
    assert carol.delete(url("member-detail", slug="acme", pk=carol_row.pk)).status_code == 204
    assert carol.get(url("workspace-detail", slug="acme")).status_code == 404
    (event,) = events(cast.acme, Action.MEMBER_REMOVED)
    assert event.metadata["left"] is True


# --- Invitations -----------------------------------------------------------------------


def test_listing_invitations_needs_an_admin(cast, acme_ids, client_for):
    assert client_for(cast.carol).get(url("invitation-list", slug="acme")).status_code == 403
    response = client_for(cast.bob).get(url("invitation-list", slug="acme"))
    assert response.status_code == 200
    (invitation,) = response.json()["results"]
    assert (invitation["email"], invitation["status"], invitation["invited_by"]) == (
        "erin@example.com",
        "pending",
        "bob@example.com",
    )


def test_inviting_emails_the_link_and_never_returns_it(cast, client_for, django_capture_on_commit_callbacks):
    refused = client_for(cast.carol).post(url("invitation-list", slug="acme"), {"email": "erin@example.com"})
    assert refused.status_code == 403

    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(cast.bob).post(
            url("invitation-list", slug="acme"), {"email": "Erin@Example.com", "role": "admin"}, format="json"
        )
    assert response.status_code == 201
    assert (response.json()["email"], response.json()["role"]) == ("erin@example.com", "admin")
    (message,) = mail.outbox
    secret = re.search(r"mni_[0-9a-f]{48}", message.body).group()
    assert secret not in response.content.decode()
    assert "digest" not in response.json()
    (event,) = events(cast.acme, Action.MEMBER_INVITED)
    assert (event.actor, event.target_repr, event.metadata) == (cast.bob, "erin@example.com", {"role": "admin"})


def test_re_inviting_a_pending_address_is_refused_unless_replace_is_asked(cast, client_for):
    invite = url("invitation-list", slug="acme")
    assert client_for(cast.bob).post(invite, {"email": "erin@example.com", "role": "admin"}).status_code == 201
    again = client_for(cast.bob).post(invite, {"email": "erin@example.com"})
    assert again.status_code == 400 and "already has a pending invitation as Admin" in again.json()["error"]
    assert Invitation.objects.pending().get(email="erin@example.com").role == "admin"
    replaced = client_for(cast.bob).post(invite, {"email": "erin@example.com", "replace": True}, format="json")
    assert replaced.status_code == 201
    assert Invitation.objects.pending().get(email="erin@example.com").role == "member"


def test_an_admin_cannot_invite_an_owner(cast, client_for):
    response = client_for(cast.bob).post(
        url("invitation-list", slug="acme"), {"email": "erin@example.com", "role": "owner"}
    )
    assert response.status_code == 400
    assert response.json() == {"error": "Your role cannot invite someone as Owner."}
    assert not Invitation.objects.exists()


def test_revoking_an_invitation_needs_an_admin(cast, acme_ids, client_for):
    path = url("invitation-detail", slug="acme", pk=acme_ids["invitation"])
    assert client_for(cast.carol).delete(path).status_code == 403
    assert Invitation.objects.get(pk=acme_ids["invitation"]).status == "pending"

    bob = client_for(cast.bob)
    assert bob.delete(path).status_code == 204
    assert Invitation.objects.get(pk=acme_ids["invitation"]).status == "revoked"
    (event,) = events(cast.acme, Action.INVITATION_REVOKED)
    assert event.actor == cast.bob
    again = bob.delete(path)
    assert (again.status_code, again.json()) == (400, {"error": "That invitation is already revoked."})


def test_another_workspaces_invitation_is_not_found(cast, client_for):
    theirs, _ = invitation_create(access=cast.access(cast.dave, cast.globex), email="zed@example.com")
    response = client_for(cast.alice).delete(url("invitation-detail", slug="acme", pk=theirs.pk))
    assert response.status_code == 404
    assert Invitation.objects.get(pk=theirs.pk).status == "pending"


def test_a_new_user_with_no_workspaces_sees_an_empty_list(db, client_for):
    response = client_for(UserFactory()).get(url("workspace-list"))
    assert response.json()["results"] == []
