"""Thin signal receivers: they hand sign-in events to the audit service."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import post_save
from django.dispatch import receiver

from apps.audit.events import Action
from apps.audit.services import audit_event_record
from apps.core import epochs
from apps.core.http import client_ip


@receiver(user_login_failed)
def record_login_failed(sender, credentials: dict, request=None, **kwargs) -> None:
    # The credentials dict is already scrubbed of passwords by Django; keep only the email.
    email = str(credentials.get("email") or credentials.get("username") or "")[:254]
    audit_event_record(
        workspace=None,
        actor=None,
        action=Action.SIGN_IN_FAILED,
        target_type="user",
        target_repr=email,
        ip=client_ip(request) if request is not None else None,
    )


@receiver(user_logged_in)
def record_login(sender, request, user, **kwargs) -> None:
    audit_event_record(
        workspace=None,
        actor=user,
        action=Action.SIGNED_IN,
        target_type="user",
        target_id=user.pk,
        target_repr=user.email,
        ip=client_ip(request) if request is not None else None,
    )


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def drop_gateway_token_cache(sender, instance, created=False, update_fields=None, **kwargs) -> None:
    # A deactivated person's tokens must stop working on every gateway worker; a new user
    # has no tokens yet, and sign-ins (which save only last_login) change nothing cached.
    if created or (update_fields is not None and set(update_fields) <= {"last_login"}):
        return
    epochs.tokens_changed()
