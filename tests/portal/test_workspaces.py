"""My workspaces, creating one, the overview and the Owner's settings, delete and leave."""

from __future__ import annotations

from django.urls import reverse

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.rbac.roles import Role
from apps.tokens.models import GatewayToken
from apps.tokens.services import token_create
from apps.workspaces.models import Membership, Workspace
from tests.factories import MembershipFactory, WorkspaceFactory


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_home_lists_only_my_workspaces_with_my_role(cast, signed_in, django_assert_max_num_queries):
    for n in range(15):
        MembershipFactory(workspace=WorkspaceFactory(slug=f"team-{n:02}"), user=cast.bob, role=Role.MEMBER)
    client = signed_in(cast.bob)
    with django_assert_max_num_queries(3):
        response = client.get(reverse("portal:home"))
    rows = response.context["rows"]
    assert [(w.slug, role) for w, role in rows][:1] == [("acme", "Admin")]
    assert len(rows) == 16
    assert all(role == "Member" for w, role in rows if w.slug != "acme")
    assert "globex" not in response.content.decode()


def test_deleted_workspaces_leave_the_list(cast, signed_in):
    Workspace.objects.filter(pk=cast.acme.pk).update(deleted_at="2026-01-01T00:00:00Z")
    response = signed_in(cast.alice).get(reverse("portal:home"))
    assert response.context["rows"] == []
    assert "not a member of any workspace" in response.content.decode()


def test_create_workspace_makes_me_owner(cast, signed_in):
    client = signed_in(cast.carol)
    response = client.post(
        reverse("portal:workspace-new"), {"slug": "carol-lab", "name": "Carol's lab", "plan": "enterprise"}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:workspace", args=["carol-lab"])
    workspace = Workspace.objects.get(slug="carol-lab")
    assert (workspace.name, workspace.plan) == ("Carol's lab", "enterprise")
    assert Membership.objects.get(workspace=workspace, user=cast.carol).role == Role.OWNER
    assert AuditEvent.objects.filter(workspace=workspace, action=Action.WORKSPACE_CREATED, actor=cast.carol).exists()
    page = client.get(response["Location"])
    assert "Carol&#x27;s lab" in page.content.decode()
    assert any("created" in m for m in _messages(page))


def test_create_workspace_shows_slug_errors_and_keeps_what_was_typed(cast, signed_in):
    client = signed_in(cast.carol)
    taken = client.post(reverse("portal:workspace-new"), {"slug": "acme", "name": "My Acme", "plan": "team"})
    assert taken.status_code == 200
    assert taken.context["form"].errors["slug"] == ["The slug 'acme' is taken; choose another."]
    html = taken.content.decode()
    assert 'value="My Acme"' in html and 'value="acme"' in html
    bad = client.post(reverse("portal:workspace-new"), {"slug": "Not Valid!", "name": "X", "plan": "team"})
    assert "lowercase letters" in bad.context["form"].errors["slug"][0]
    assert 'value="Not Valid!"' in bad.content.decode()
    assert Workspace.objects.count() == 2


def test_overview_shows_gateway_url_role_and_counts(cast, signed_in):
    token_create(access=cast.access(cast.carol), member=cast.carol)
    token_create(access=cast.access(cast.bob), member=cast.bob)
    carol = signed_in(cast.carol).get(reverse("portal:workspace", args=["acme"]))
    html = carol.content.decode()
    assert "http://testserver/api/gw/acme" in html
    assert carol.context["role_label"] == "Member"
    assert carol.context["counts"] == {"members": 3, "active_tokens": 1}  # a Member counts their own tokens
    assert carol.context["settings_form"] is None and carol.context["delete_form"] is None
    assert "Leave" in html
    alice = signed_in(cast.alice).get(reverse("portal:workspace", args=["acme"]))
    assert alice.context["counts"] == {"members": 3, "active_tokens": 2, "pending_invitations": 0}
    assert alice.context["settings_form"] is not None and alice.context["delete_form"] is not None


def test_owner_changes_name_and_plan(cast, signed_in):
    response = signed_in(cast.alice).post(
        reverse("portal:workspace-settings", args=["acme"]), {"name": "Acme Inc", "plan": "enterprise"}
    )
    assert response.status_code == 302
    acme = Workspace.objects.get(pk=cast.acme.pk)
    assert (acme.name, acme.plan) == ("Acme Inc", "enterprise")
    assert AuditEvent.objects.filter(workspace=acme, action=Action.WORKSPACE_UPDATED).exists()


def test_admin_cannot_change_settings_and_is_told_why(cast, signed_in):
    client = signed_in(cast.bob)
    response = client.post(
        reverse("portal:workspace-settings", args=["acme"]), {"name": "Bob's", "plan": "enterprise"}, follow=True
    )
    assert Workspace.objects.get(pk=cast.acme.pk).name == "Acme"
    assert any("does not allow" in m for m in _messages(response))


def test_settings_errors_are_shown_on_the_overview_with_the_input_kept(cast, signed_in):
    response = signed_in(cast.alice).post(
        reverse("portal:workspace-settings", args=["acme"]), {"name": "", "plan": "platinum"}
    )
    assert response.status_code == 200
    form = response.context["settings_form"]
    assert set(form.errors) == {"name", "plan"}
    assert Workspace.objects.get(pk=cast.acme.pk).plan == "team"


def test_delete_needs_the_slug_typed_then_revokes_tokens(cast, signed_in):
    issued = token_create(access=cast.access(cast.carol), member=cast.carol)
    client = signed_in(cast.alice)
    wrong = client.post(reverse("portal:workspace-delete", args=["acme"]), {"confirm": "acm"})
    assert wrong.status_code == 200
    assert "exactly" in wrong.context["delete_form"].errors["confirm"][0]
    assert 'value="acm"' in wrong.content.decode()
    assert Workspace.objects.get(pk=cast.acme.pk).deleted_at is None
    right = client.post(reverse("portal:workspace-delete", args=["acme"]), {"confirm": "acme"})
    assert right["Location"] == reverse("portal:home")
    assert Workspace.objects.get(pk=cast.acme.pk).is_deleted
    assert GatewayToken.objects.get(pk=issued.token.pk).revoked_at is not None
    assert client.get(reverse("portal:workspace", args=["acme"])).status_code == 404


def test_only_owners_delete(cast, signed_in):
    response = signed_in(cast.bob).post(
        reverse("portal:workspace-delete", args=["acme"]), {"confirm": "acme"}, follow=True
    )
    assert not Workspace.objects.get(pk=cast.acme.pk).is_deleted
    assert any("does not allow" in m for m in _messages(response))


def test_leaving_asks_first(cast, signed_in):
    issued = token_create(access=cast.access(cast.carol), member=cast.carol)
    client = signed_in(cast.carol)
    url = reverse("portal:workspace-leave", args=["acme"])
    overview = client.get(reverse("portal:workspace", args=["acme"])).content.decode()
    assert f'href="{url}"' in overview and f'action="{url}"' not in overview
    asked = client.get(url)
    assert asked.status_code == 200
    html = asked.content.decode()
    assert "Leave “Acme”?" in html and "<dt>Your active tokens</dt><dd>1</dd>" in html
    unconfirmed = client.post(url)
    assert unconfirmed.status_code == 200
    assert any(m.startswith("Nothing was changed") for m in _messages(unconfirmed))
    assert Membership.objects.filter(workspace=cast.acme, user=cast.carol).exists()
    assert GatewayToken.objects.get(pk=issued.token.pk).revoked_at is None


def test_member_leaves_and_their_tokens_are_revoked(cast, signed_in):
    issued = token_create(access=cast.access(cast.carol), member=cast.carol)
    client = signed_in(cast.carol)
    response = client.post(reverse("portal:workspace-leave", args=["acme"]), {"confirm": "yes"})
    assert response["Location"] == reverse("portal:home")
    assert not Membership.objects.filter(workspace=cast.acme, user=cast.carol).exists()
    assert GatewayToken.objects.get(pk=issued.token.pk).revoked_at is not None
    assert client.get(reverse("portal:workspace", args=["acme"])).status_code == 404


def test_the_last_owner_cannot_leave(cast, signed_in):
    response = signed_in(cast.alice).post(
        reverse("portal:workspace-leave", args=["acme"]), {"confirm": "yes"}, follow=True
    )
    assert Membership.objects.get(workspace=cast.acme, user=cast.alice).role == Role.OWNER
    assert any("at least one Owner" in m for m in _messages(response))
