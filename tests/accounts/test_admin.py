"""People and API keys in the admin: an email-only user admin, and keys that are only ever revoked."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from apps.accounts.models import ApiKey, User
from apps.accounts.services import api_key_authenticate, api_key_create
from tests.factories import UserFactory

KEYS = reverse("admin:accounts_apikey_changelist")


@pytest.fixture
def root(db):
    return UserFactory(email="root@example.com", is_staff=True, is_superuser=True)


def test_add_a_person_by_email_only(client, root):
    client.force_login(root)
    page = client.get(reverse("admin:accounts_user_add"))
    assert page.status_code == 200 and b'name="username"' not in page.content
    response = client.post(
        reverse("admin:accounts_user_add"),
        {
            "email": " Erin@Example.com ",
            "usable_password": "true",
            "password1": "a-long-pass-phrase",
            "password2": "a-long-pass-phrase",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    erin = User.objects.get(email="erin@example.com")
    assert erin.check_password("a-long-pass-phrase")


def test_the_same_address_in_other_case_is_refused(client, root, cast):
    client.force_login(root)
    response = client.post(
        reverse("admin:accounts_user_add"), {"email": "ALICE@example.com", "usable_password": "false"}
    )
    assert response.status_code == 200
    assert "email" in response.context["adminform"].form.errors
    assert User.objects.filter(email__iexact="alice@example.com").count() == 1


def test_change_page_lists_memberships_and_people_are_deactivated_not_deleted(client, root, cast):
    client.force_login(root)
    page = client.get(reverse("admin:accounts_user_change", args=[cast.alice.pk]))
    assert page.status_code == 200 and b"acme" in page.content
    assert client.get(reverse("admin:accounts_user_delete", args=[cast.alice.pk])).status_code == 403
    listing = client.get(reverse("admin:accounts_user_changelist"), {"q": "alice"})
    assert [u.email for u in listing.context["cl"].result_list] == ["alice@example.com"]


def test_api_key_pages_never_show_the_key_or_its_digest(client, root, cast):
    key, raw = api_key_create(user=cast.bob, name="ci")
    client.force_login(root)
    html = (
        client.get(KEYS).content.decode()
        + client.get(reverse("admin:accounts_apikey_change", args=[key.pk])).content.decode()
    )
    assert key.prefix in html
    assert key.digest not in html and raw not in html
    assert client.get(reverse("admin:accounts_apikey_add")).status_code == 403
    assert client.get(reverse("admin:accounts_apikey_delete", args=[key.pk])).status_code == 403


def test_an_operator_revokes_a_key_through_the_service(client, root, cast):
    key, raw = api_key_create(user=cast.bob, name="ci")
    client.force_login(root)
    response = client.post(KEYS, {"action": "revoke", "_selected_action": [key.pk], "index": 0}, follow=True)
    assert "Revoked: " in response.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is not None and api_key_authenticate(raw) is None


def test_staff_who_are_not_superusers_cannot_revoke_keys(client, cast):
    key, raw = api_key_create(user=cast.bob, name="ci")
    cast.alice.is_staff = True
    cast.alice.save()
    cast.alice.user_permissions.add(*Permission.objects.filter(codename__in=["view_apikey", "change_apikey"]))
    client.force_login(cast.alice)
    assert b'value="revoke"' not in client.get(KEYS).content
    client.post(KEYS, {"action": "revoke", "_selected_action": [key.pk], "index": 0})
    assert api_key_authenticate(raw) == ApiKey.objects.get(pk=key.pk)


def test_deactivate_a_person(client, root, cast):
    client.force_login(root)
    response = client.post(
        reverse("admin:accounts_user_change", args=[cast.carol.pk]),
        {
            "email": "carol@example.com",
            "first_name": "Carol",
            "last_name": "",
            "is_active": "",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    cast.carol.refresh_from_db()
    assert not cast.carol.is_active and cast.carol.first_name == "Carol"
