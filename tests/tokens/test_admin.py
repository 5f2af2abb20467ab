"""Gateway tokens in the admin: never a digest or a raw token on a page; revocation through the service."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.tokens.models import GatewayToken
from apps.tokens.services import token_create
from tests.factories import UserFactory

CHANGELIST = reverse("admin:tokens_gatewaytoken_changelist")


@pytest.fixture
def root(db):
    return UserFactory(email="root@example.com", is_staff=True, is_superuser=True)


@pytest.fixture
def issued(cast):
    """carol's laptop token and a workspace token in acme; dave's token in globex."""
    return {
        "carol": token_create(access=cast.access(cast.carol), member=cast.carol, name="laptop"),
        "acme": token_create(access=cast.access(cast.alice), member=None, kind=GatewayToken.Kind.WORKSPACE, name="ci"),
        "dave": token_create(access=cast.access(cast.dave, cast.globex), member=cast.dave, name="desk"),
    }


def _staff(user, *codenames):
    user.is_staff = True
    user.save()
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="tokens", codename__in=codenames))
    return user


def _revoke(client, *tokens):
    return client.post(
        CHANGELIST, {"action": "revoke", "_selected_action": [t.pk for t in tokens], "index": 0}, follow=True
    )


def test_no_page_shows_a_digest_or_a_raw_token(client, root, issued):
    client.force_login(root)
    pages = [
        client.get(CHANGELIST),
        client.get(CHANGELIST, {"q": issued["carol"].token.prefix}),
        *(client.get(reverse("admin:tokens_gatewaytoken_change", args=[i.token.pk])) for i in issued.values()),
        *(client.get(reverse("admin:tokens_gatewaytoken_history", args=[i.token.pk])) for i in issued.values()),
    ]
    html = "".join(page.content.decode() for page in pages)
    assert all(page.status_code == 200 for page in pages)
    for i in issued.values():
        assert i.token.prefix in html
        assert i.token.digest not in html
        assert i.raw not in html and i.raw[len(i.token.prefix) :] not in html


def test_tokens_are_not_added_edited_or_deleted_here(client, root, issued):
    client.force_login(root)
    token = issued["carol"].token
    assert client.get(reverse("admin:tokens_gatewaytoken_add")).status_code == 403
    assert client.post(reverse("admin:tokens_gatewaytoken_change", args=[token.pk]), {"name": "x"}).status_code == 403
    assert client.get(reverse("admin:tokens_gatewaytoken_delete", args=[token.pk])).status_code == 403
    assert b"delete_selected" not in client.get(CHANGELIST).content
    token.refresh_from_db()
    assert token.name == "laptop"


def test_an_operator_revokes_through_the_service(client, root, cast, issued):
    client.force_login(root)
    carol, dave = issued["carol"].token, issued["dave"].token
    response = _revoke(client, carol, dave)
    assert "Revoked: " in response.content.decode()
    for token in (carol, dave):
        token.refresh_from_db()
        assert token.revoked_at is not None and token.revoked_by == root
    events = AuditEvent.objects.filter(action=Action.TOKEN_REVOKED, actor=root)
    assert sorted(e.target_repr for e in events) == sorted([carol.prefix, dave.prefix])
    assert {e.workspace_id for e in events} == {cast.acme.pk, cast.globex.pk}

    again = _revoke(client, carol)  # already revoked: nothing happens, nothing is written
    assert "Nothing to do" in again.content.decode()
    assert AuditEvent.objects.filter(action=Action.TOKEN_REVOKED).count() == 2


def test_staff_act_only_where_their_workspace_role_allows(client, cast, issued):
    # bob is an acme Admin (tokens.manage there) and has nothing in globex.
    client.force_login(_staff(cast.bob, "view_gatewaytoken", "change_gatewaytoken"))
    acme_token, dave = issued["acme"].token, issued["dave"].token
    response = _revoke(client, acme_token, dave)
    text = response.content.decode()
    assert "Revoked: " in text and "Refused: " in text and "globex does not allow tokens.manage" in text
    acme_token.refresh_from_db()
    dave.refresh_from_db()
    assert acme_token.revoked_at is not None and dave.revoked_at is None

    # carol is a plain Member: even with the Django permission, the RBAC gate refuses.
    client.force_login(_staff(cast.carol, "view_gatewaytoken", "change_gatewaytoken"))
    _revoke(client, issued["carol"].token)
    issued["carol"].token.refresh_from_db()
    assert issued["carol"].token.revoked_at is None


def test_view_only_staff_get_no_revoke_action(client, cast, issued):
    client.force_login(_staff(cast.alice, "view_gatewaytoken"))
    assert b'value="revoke"' not in client.get(CHANGELIST).content
    _revoke(client, issued["carol"].token)
    issued["carol"].token.refresh_from_db()
    assert issued["carol"].token.revoked_at is None


def test_changelist_query_count_does_not_grow_with_tokens(client, root, cast, issued, django_assert_max_num_queries):
    for n in range(10):
        token_create(access=cast.access(cast.carol), member=cast.carol, name=f"t{n}")
    client.force_login(root)
    with django_assert_max_num_queries(8):
        response = client.get(CHANGELIST, {"status": "active", "kind__exact": "member"})
    assert len(response.context["cl"].result_list) == 12
