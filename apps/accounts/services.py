"""Writes for accounts: API keys."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from apps.accounts.models import ApiKey, User
from apps.audit.events import Action
from apps.audit.services import audit_event_record
from apps.core import secrets


def _audit(*, key: ApiKey, actor: User, action: Action, ip: str | None) -> None:
    # Personal keys belong to no workspace: their events go to the global chain.
    audit_event_record(
        workspace=None,
        actor=actor,
        action=action,
        target_type="api_key",
        target_id=key.pk,
        target_repr=key.prefix,
        metadata={"owner": key.user.email, "key_name": key.name},
        ip=ip,
    )


@transaction.atomic
def api_key_create(*, user: User, name: str, ip: str | None = None) -> tuple[ApiKey, str]:
    """Create a personal API key; returns it with the raw secret (shown once)."""
    new = secrets.generate(ApiKey.SCHEME)
    key = ApiKey.objects.create(user=user, name=name.strip() or "API key", prefix=new.prefix, digest=new.digest)
    _audit(key=key, actor=user, action=Action.API_KEY_CREATED, ip=ip)
    return key, new.raw


@transaction.atomic
def api_key_revoke(*, user: User, key: ApiKey, ip: str | None = None) -> None:
    """Revoke a key: its owner may, and so may a platform operator (a superuser, in the admin)."""
    if key.user_id != user.pk and not user.is_superuser:
        raise PermissionError("Only the key's owner can revoke it.")
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        _audit(key=key, actor=user, action=Action.API_KEY_REVOKED, ip=ip)


def api_key_authenticate(raw: str) -> ApiKey | None:
    if not secrets.pattern(ApiKey.SCHEME).match(raw):
        return None
    key = ApiKey.objects.active().select_related("user").filter(digest=secrets.digest(raw)).first()
    if key is None or not secrets.matches(raw, key.digest) or not key.user.is_active:
        return None
    now = timezone.now()
    # Bounded write rate: at most one last_used_at write per key per minute.
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key
