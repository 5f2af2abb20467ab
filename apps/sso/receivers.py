"""Thin signal receivers.

* Gateway reloads: whether a member is shut out by "SSO required" depends on the
  workspace's connection and on the member's SSO identities (allauth's SocialAccount rows,
  which allauth writes itself), so every save and delete of either moves the workspace's
  epoch, in the transaction of the change.
* Sign-ins through an IdP are handed to ``apps.sso.services.sso_sign_in_record``.
"""

from __future__ import annotations

from allauth.account.signals import user_logged_in
from allauth.socialaccount.models import SocialAccount, SocialApp
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apps.core import epochs
from apps.core.http import client_ip
from apps.sso.models import SsoConnection
from apps.sso.selectors import connections_for_identity_provider, idp_groups
from apps.sso.services import sso_sign_in_record


@receiver(post_save, sender=SsoConnection)
@receiver(post_delete, sender=SsoConnection)
def connection_changed(sender, instance: SsoConnection, **kwargs) -> None:
    epochs.workspace_changed(instance.workspace_id)


@receiver(post_save, sender=SocialApp)
def idp_changed(sender, instance: SocialApp, **kwargs) -> None:
    # A new provider id changes which identities count for the workspace.
    for connection in SsoConnection.objects.filter(social_app=instance):
        epochs.workspace_changed(connection.workspace_id)


@receiver(post_save, sender=SocialAccount)
@receiver(post_delete, sender=SocialAccount)
def identity_changed(sender, instance: SocialAccount, created: bool = True, **kwargs) -> None:
    if not created:
        return  # allauth re-saves the account at every sign-in (its extra data): nothing moved
    for connection in connections_for_identity_provider(instance.provider):
        epochs.workspace_changed(connection.workspace_id)


@receiver(user_logged_in)
def record_sso_sign_in(sender, request, user, sociallogin=None, **kwargs) -> None:
    if sociallogin is None:
        return
    # By the identity's provider id, not the SocialLogin's provider object: a sign-in that
    # went through an MFA stage reaches here deserialised from the session.
    connection = next(iter(connections_for_identity_provider(sociallogin.account.provider)), None)
    if connection is None:
        return
    sso_sign_in_record(
        connection=connection,
        user=user,
        groups=idp_groups(connection, sociallogin.account.extra_data or {}),
        ip=client_ip(request),
    )
