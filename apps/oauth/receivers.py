"""Signal receivers: the gateway forgets deleted OAuth tokens within a second, and the
audit trail records registrations and issued tokens."""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from oauth2_provider.models import AccessToken, Application
from oauth2_provider.signals import app_authorized

from apps.audit.events import Action
from apps.audit.services import audit_event_record
from apps.core import epochs
from apps.core.http import client_ip
from apps.oauth import services
from apps.workspaces.models import Membership


@receiver(post_delete, sender=AccessToken)
@receiver(post_delete, sender=Application)
def drop_gateway_token_cache(sender, instance, **kwargs) -> None:
    # Revoking a token deletes it (RFC 7009 revocation, refresh rotation, an admin, a
    # cascade from its client): every gateway process re-reads its tokens within a second.
    epochs.tokens_changed()


@receiver(post_delete, sender=Membership)
def revoke_on_leaving(sender, instance: Membership, **kwargs) -> None:
    # Like their mng_ tokens, a member's OAuth grants for a workspace end with their
    # membership (removed, left, SCIM), so rejoining never revives an old client.
    services.oauth_grants_revoke(
        user=instance.user, workspace=instance.workspace, actor=None, reason="membership ended"
    )


@receiver(post_save, sender=Application)
def record_registration(sender, instance: Application, created: bool, **kwargs) -> None:
    if created and instance.registration_source != Application.RegistrationSource.MANUAL:
        audit_event_record(
            workspace=None,
            actor=None,
            action=Action.OAUTH_CLIENT_REGISTERED,
            target_type="oauth_client",
            target_id=instance.pk,
            target_repr=services.client_repr(instance),
            metadata={
                "client_id": instance.client_id,
                "registration": instance.registration_source,
                "redirect_uris": instance.redirect_uris.split()[:5],
            },
        )


@receiver(app_authorized)
def record_token_issued(sender, request, token: AccessToken, **kwargs) -> None:
    services.token_issued(
        token=token, ip=client_ip(request), refreshed=request.POST.get("grant_type") == "refresh_token"
    )
