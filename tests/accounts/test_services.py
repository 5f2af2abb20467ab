"""Personal API keys: created once, stored as a digest, authenticate until revoked."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts.models import ApiKey
from apps.accounts.services import api_key_authenticate, api_key_create, api_key_revoke


def test_create_returns_the_raw_key_once_and_stores_its_digest(cast):
    key, raw = api_key_create(user=cast.alice, name=" scripts ")
    assert raw.startswith("mnk_") and len(raw) == 52
    assert key.digest == hashlib.sha256(raw.encode()).hexdigest() and key.prefix == raw[:12]
    assert (key.user, key.name, key.is_active) == (cast.alice, "scripts", True)
    row = json.dumps(ApiKey.objects.filter(pk=key.pk).values().get(), default=str)
    assert raw not in row and raw[12:] not in row


def test_a_blank_name_gets_a_default(cast):
    key, _ = api_key_create(user=cast.alice, name="   ")
    assert key.name == "API key"


def test_authenticate_finds_the_key_and_its_user(cast):
    key, raw = api_key_create(user=cast.bob, name="ci")
    found = api_key_authenticate(raw)
    assert found == key and found.user == cast.bob
    assert ApiKey.objects.get(pk=key.pk).last_used_at is not None


@pytest.mark.parametrize(
    "mangle",
    [
        lambda raw: raw[:-1] + ("0" if raw[-1] != "0" else "1"),
        lambda raw: raw.upper(),
        lambda raw: raw.replace("mnk_", "mng_"),
        lambda raw: raw + "0",
        lambda raw: "",
        lambda raw: "Bearer " + raw,
    ],
)
def test_authenticate_refuses_wrong_or_malformed_keys(cast, mangle):
    _, raw = api_key_create(user=cast.bob, name="ci")
    assert api_key_authenticate(mangle(raw)) is None


def test_a_revoked_key_no_longer_authenticates(cast):
    key, raw = api_key_create(user=cast.bob, name="ci")
    api_key_revoke(user=cast.bob, key=key)
    key.refresh_from_db()
    assert key.revoked_at is not None and not key.is_active
    assert api_key_authenticate(raw) is None
    revoked_at = key.revoked_at
    api_key_revoke(user=cast.bob, key=key)  # revoking again keeps the first time
    key.refresh_from_db()
    assert key.revoked_at == revoked_at


def test_only_the_owner_revokes_a_key(cast):
    key, raw = api_key_create(user=cast.bob, name="ci")
    with pytest.raises(PermissionError):
        api_key_revoke(user=cast.alice, key=key)
    assert api_key_authenticate(raw) == key


def test_an_inactive_users_key_is_refused(cast):
    _, raw = api_key_create(user=cast.bob, name="ci")
    cast.bob.is_active = False
    cast.bob.save()
    assert api_key_authenticate(raw) is None


def test_last_used_is_written_at_most_once_a_minute(cast, django_assert_num_queries):
    key, raw = api_key_create(user=cast.bob, name="ci")
    with django_assert_num_queries(2):  # lookup + the first last_used_at write
        api_key_authenticate(raw)
    with django_assert_num_queries(1):  # lookup only
        api_key_authenticate(raw)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now() - timedelta(minutes=2))
    with django_assert_num_queries(2):
        api_key_authenticate(raw)


def test_api_key_creation_and_revocation_are_audited(cast):
    from apps.accounts.services import api_key_create, api_key_revoke
    from apps.audit.events import Action
    from apps.audit.models import AuditEvent

    key, raw = api_key_create(user=cast.alice, name="ci", ip="10.0.0.1")
    api_key_revoke(user=cast.alice, key=key)
    events = list(AuditEvent.objects.filter(target_type="api_key").order_by("seq"))
    assert [e.action for e in events] == [Action.API_KEY_CREATED, Action.API_KEY_REVOKED]
    assert events[0].workspace_id is None and events[0].actor == cast.alice and events[0].ip == "10.0.0.1"
    assert raw not in str(events[0].metadata) and key.digest not in str(events[0].metadata)
