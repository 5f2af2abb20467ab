"""Personal API keys: created with the raw key shown once (after a redirect), listed by prefix,
revoked by their owner only, after a confirmation."""

from __future__ import annotations

import re

from django.urls import reverse

from apps.accounts.models import ApiKey
from apps.accounts.services import api_key_authenticate, api_key_create

RAW_KEY = re.compile(r"mnk_[0-9a-f]{48}")


def test_key_is_shown_once(cast, signed_in, django_assert_max_num_queries):
    client = signed_in(cast.carol)
    created = client.post(reverse("portal:api-keys"), {"name": "CI pipeline"})
    assert created.status_code == 302 and created["Location"] == reverse("portal:api-keys")
    assert "no-store" in created["Cache-Control"]
    assert not RAW_KEY.search(str(dict(client.session)))  # held encrypted until shown
    shown = client.get(created["Location"])
    assert "no-store" in shown["Cache-Control"]
    (raw,) = set(RAW_KEY.findall(shown.content.decode()))
    assert not RAW_KEY.search(client.get(reverse("portal:api-keys")).content.decode())  # the reload
    assert ApiKey.objects.filter(user=cast.carol).count() == 1
    key = api_key_authenticate(raw)
    assert key is not None and key.user == cast.carol and key.name == "CI pipeline"
    for n in range(10):
        api_key_create(user=cast.carol, name=f"k{n}")
    with django_assert_max_num_queries(3):
        listed = client.get(reverse("portal:api-keys"))
    html = listed.content.decode()
    assert not RAW_KEY.search(html)
    assert key.digest not in html
    assert f"{key.prefix}…" in html and "CI pipeline" in html


def test_name_is_required(cast, signed_in):
    response = signed_in(cast.carol).post(reverse("portal:api-keys"), {"name": ""})
    assert response.status_code == 200
    assert "name" in response.context["form"].errors
    assert not ApiKey.objects.exists()


def test_owner_revokes_and_others_cannot_see_or_revoke(cast, signed_in):
    key, raw = api_key_create(user=cast.carol, name="mine")
    dave = signed_in(cast.dave)
    assert "mine" not in dave.get(reverse("portal:api-keys")).content.decode()
    assert dave.post(reverse("portal:api-key-revoke", args=[key.pk])).status_code == 404
    assert api_key_authenticate(raw) is not None
    assert dave.get(reverse("portal:api-key-revoke", args=[key.pk])).status_code == 404
    assert dave.post(reverse("portal:api-key-revoke", args=[key.pk]), {"confirm": "yes"}).status_code == 404
    assert api_key_authenticate(raw) is not None
    response = signed_in(cast.carol).post(
        reverse("portal:api-key-revoke", args=[key.pk]), {"confirm": "yes"}, follow=True
    )
    assert f"API key {key.prefix}… revoked." in [str(m) for m in response.context["messages"]]
    assert api_key_authenticate(raw) is None


def test_revoking_a_key_asks_first(cast, signed_in):
    key, raw = api_key_create(user=cast.carol, name="nightly backup")
    url = reverse("portal:api-key-revoke", args=[key.pk])
    client = signed_in(cast.carol)
    listed = client.get(reverse("portal:api-keys")).content.decode()
    assert f'href="{url}"' in listed and f'action="{url}"' not in listed
    asked = client.get(url)
    assert asked.status_code == 200
    html = asked.content.decode()
    assert f"Revoke the API key {key.prefix}…?" in html and "nightly backup" in html
    assert 'class="card allauth"' in html  # in the account pages' layout
    unconfirmed = client.post(url)
    assert unconfirmed.status_code == 200
    assert any("Nothing was changed" in str(m) for m in unconfirmed.context["messages"])
    assert api_key_authenticate(raw) is not None
    client.post(url, {"confirm": "yes"})
    assert api_key_authenticate(raw) is None
    again = client.get(url, follow=True)
    assert f"API key {key.prefix}… was already revoked." in [str(m) for m in again.context["messages"]]
