"""Personal API keys: managing them over REST, and authenticating the API with them."""

from __future__ import annotations

import re

from django.urls import reverse
from rest_framework.test import APIClient

from apps.accounts.models import ApiKey
from apps.accounts.services import api_key_create, api_key_revoke
from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.tokens.services import token_create
from tests.api import bearer

KEYS = reverse("api:api-key-list")
ACME = reverse("api:workspace-detail", kwargs={"slug": "acme"})
ACME_TOKENS = reverse("api:token-list", kwargs={"slug": "acme"})


def revoke_url(key: ApiKey) -> str:
    return reverse("api:api-key-revoke", kwargs={"pk": key.pk})


# --- Authenticating with a key ---------------------------------------------------------


def test_an_api_key_acts_as_its_owner(cast):
    _, raw = api_key_create(user=cast.bob, name="script")
    bob = bearer(raw)
    response = bob.get(ACME)
    assert response.status_code == 200
    assert response.json()["role"] == "admin"
    # Writes work too, without a CSRF token, and are attributed to the key's owner.
    created = bob.post(ACME_TOKENS, {"member_email": "carol@example.com"}, format="json")
    assert created.status_code == 201
    (event,) = AuditEvent.objects.filter(workspace=cast.acme, action=Action.TOKEN_CREATED)
    assert event.actor == cast.bob
    assert ApiKey.objects.get(user=cast.bob).last_used_at is not None


def test_an_api_key_gives_no_more_than_its_owners_roles(cast):
    _, raw = api_key_create(user=cast.dave, name="script")
    dave = bearer(raw)
    assert dave.get(ACME).status_code == 404
    assert dave.get(reverse("api:workspace-detail", kwargs={"slug": "globex"})).status_code == 200


def test_a_revoked_key_gets_401_with_a_json_error(cast):
    key, raw = api_key_create(user=cast.bob, name="script")
    api_key_revoke(user=cast.bob, key=key)
    response = bearer(raw).get(ACME)
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid or revoked API key. Create a new one under Account → API keys."}
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_an_unknown_key_gets_401(cast):
    response = bearer("mnk_" + "0" * 48).get(ACME)
    assert response.status_code == 401
    assert response.json()["error"].startswith("Invalid or revoked API key.")


def test_a_gateway_token_does_not_open_the_rest_api(cast):
    issued = token_create(access=cast.access(cast.alice), member=cast.alice)
    response = bearer(issued.raw).get(ACME)
    assert response.status_code == 401
    assert response.json() == {"error": "Authentication credentials were not provided."}


def test_session_writes_need_the_csrf_token(cast):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(cast.alice)
    response = client.post(KEYS, {"name": "no csrf"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"].startswith("CSRF Failed")
    assert not ApiKey.objects.exists()


# --- Managing one's own keys -----------------------------------------------------------


def test_anonymous_callers_get_401(cast):
    key, _ = api_key_create(user=cast.alice, name="k")
    for response in (APIClient().get(KEYS), APIClient().post(KEYS, {}), APIClient().post(revoke_url(key))):
        assert response.status_code == 401
        assert response.json() == {"error": "Authentication credentials were not provided."}


def test_the_raw_key_appears_once_in_the_create_response(cast, client_for):
    alice = client_for(cast.alice)
    response = alice.post(KEYS, {"name": "laptop"}, format="json")
    assert response.status_code == 201
    body = response.json()
    raw = body["key"]
    assert re.fullmatch(r"mnk_[0-9a-f]{48}", raw)
    assert (body["name"], body["is_active"], body["prefix"]) == ("laptop", True, raw[:12])
    assert "digest" not in body
    listing = alice.get(KEYS)
    assert [k["id"] for k in listing.json()["results"]] == [body["id"]]
    text = listing.content.decode()
    assert raw not in text and ApiKey.objects.get().digest not in text and '"key"' not in text
    # And it works.
    assert bearer(raw).get(ACME).status_code == 200


def test_people_see_and_revoke_only_their_own_keys(cast, client_for):
    bobs, bobs_raw = api_key_create(user=cast.bob, name="bob's")
    alices, alices_raw = api_key_create(user=cast.alice, name="alice's")
    alice = client_for(cast.alice)
    assert [k["id"] for k in alice.get(KEYS).json()["results"]] == [alices.pk]

    assert alice.post(revoke_url(bobs)).status_code == 404
    assert bearer(bobs_raw).get(ACME).status_code == 200

    response = alice.post(revoke_url(alices))
    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert bearer(alices_raw).get(ACME).status_code == 401


def test_an_api_key_cannot_manage_keys(cast):
    key, raw = api_key_create(user=cast.alice, name="script")
    client = bearer(raw)
    for response in (client.get(KEYS), client.post(KEYS, {"name": "more"}), client.post(revoke_url(key))):
        assert response.status_code == 403
        assert response.json()["error"].startswith("Manage API keys while signed in to MCPNest in a browser")
    assert ApiKey.objects.active().filter(user=cast.alice).count() == 1
