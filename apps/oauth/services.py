"""Writes for OAuth connections: consent, revocation, the audit trail of issued and reused
tokens, and pruning clients nobody uses (reads: ``apps.oauth.selectors``).

django-oauth-toolkit writes the tokens themselves; everything here that revokes moves the
gateway's token epoch in the same transaction, so every gateway process refuses the
revoked tokens within a second, as it does for ``mng_`` tokens.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, RefreshToken

from apps.audit.events import Action
from apps.audit.services import audit_event_record
from apps.core import epochs
from apps.core.errors import RuleViolation
from apps.oauth.models import Connection
from apps.oauth.selectors import gateway_resource, resource_workspace
from apps.rbac.access import PermissionDenied
from apps.rbac.roles import Capability

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.rbac.access import Access
    from apps.workspaces.models import Workspace


def client_repr(application: Application) -> str:
    return application.name or application.client_id


def _audit(*, workspace, actor, action: Action, application: Application, ip=None, **metadata) -> None:
    audit_event_record(
        workspace=workspace,
        actor=actor,
        action=action,
        target_type="oauth_client",
        target_id=application.pk,
        target_repr=client_repr(application),
        metadata={"client_id": application.client_id, **metadata},
        ip=ip,
    )


@transaction.atomic
def connection_consent(
    *, application: Application, user: User, workspace: Workspace, scope: str, ip: str | None = None
) -> Connection:
    """The member allowed ``application`` to use ``workspace``'s gateway as them."""
    now = timezone.now()
    connection, created = Connection.objects.get_or_create(
        application=application, user=user, workspace=workspace, defaults={"scope": scope, "consented_at": now}
    )
    if not created:
        connection.scope = scope
        connection.consented_at = now
        connection.save(update_fields=["scope", "consented_at"])
    redirect_hosts = sorted({uri.split("/")[2] for uri in application.redirect_uris.split() if "://" in uri})
    _audit(
        workspace=workspace,
        actor=user,
        action=Action.OAUTH_CONSENTED,
        application=application,
        ip=ip,
        scope=scope,
        redirect_hosts=redirect_hosts[:5],
        registration=application.registration_source,
    )
    return connection


def consent_refused(*, application: Application, user: User, workspace: Workspace | None, reason: str, ip=None):
    _audit(
        workspace=workspace,
        actor=user,
        action=Action.OAUTH_CONSENT_REFUSED,
        application=application,
        ip=ip,
        reason=reason,
    )


def token_issued(*, token: AccessToken, ip: str | None = None, refreshed: bool) -> None:
    """Audit an access token the token endpoint issued (never the token itself)."""
    workspace = resource_workspace(token.resource)
    _audit(
        workspace=workspace,
        actor=token.user,
        action=Action.OAUTH_TOKEN_ISSUED,
        application=token.application,
        ip=ip,
        grant="refresh_token" if refreshed else "authorization_code",
        expires=token.expires.isoformat(),
    )


def refresh_reuse_detected(*, refresh_token: RefreshToken, ip: str | None = None) -> None:
    """A rotated refresh token came back: toolkit has revoked its whole family; say so."""
    epochs.tokens_changed()
    _audit(
        workspace=resource_workspace(refresh_token.resource),
        actor=refresh_token.user,
        action=Action.OAUTH_REFRESH_REUSED,
        application=refresh_token.application,
        ip=ip,
        family=str(refresh_token.token_family or ""),
    )


def _bound_to(token, resource: str | None) -> bool:
    return resource is None or list(token.resource or []) == [resource]


@transaction.atomic
def oauth_grants_revoke(
    *,
    user: User,
    workspace: Workspace | None = None,
    application: Application | None = None,
    actor: User | None,
    ip: str | None = None,
    reason: str = "",
) -> int:
    """Revoke what OAuth clients hold for ``user``: for one workspace (or all), one client
    (or all). Access tokens are deleted, refresh tokens revoked, the connections removed.
    Returns how many tokens stopped working."""
    resource = gateway_resource(workspace.slug) if workspace is not None else None
    tokens = AccessToken.objects.filter(user=user)
    refresh_tokens = RefreshToken.objects.filter(user=user, revoked__isnull=True)
    connections = Connection.objects.filter(user=user).select_related("application", "workspace")
    if application is not None:
        tokens = tokens.filter(application=application)
        refresh_tokens = refresh_tokens.filter(application=application)
        connections = connections.filter(application=application)
    if workspace is not None:
        connections = connections.filter(workspace=workspace)
    doomed = [token.pk for token in tokens if _bound_to(token, resource)]
    revoked = AccessToken.objects.filter(pk__in=doomed).delete()[0]
    for refresh_token in refresh_tokens.select_for_update():
        if _bound_to(refresh_token, resource):
            refresh_token.revoke()
            revoked += 1
    for connection in connections:
        _audit(
            workspace=connection.workspace,
            actor=actor,
            action=Action.OAUTH_CLIENT_REVOKED,
            application=connection.application,
            ip=ip,
            member=user.email,
            reason=reason,
        )
        connection.delete()
    epochs.tokens_changed()
    return revoked


def connection_revoke(*, access: Access, connection: Connection, ip: str | None = None) -> int:
    """A member disconnects one of their clients; token managers disconnect anybody's."""
    if connection.workspace_id != access.workspace.pk:
        raise RuleViolation("No such connection in this workspace.")
    if connection.user_id != access.user.pk and not access.can(Capability.MANAGE_TOKENS):
        raise PermissionDenied(Capability.MANAGE_TOKENS)
    return oauth_grants_revoke(
        user=connection.user,
        workspace=access.workspace,
        application=connection.application,
        actor=access.user,
        ip=ip,
        reason="disconnected in the portal",
    )


def connections_touch(uses: dict[tuple[int, int, int], datetime]) -> None:
    """Remember when each (application, user, workspace) connection was last used."""
    for (application_id, user_id, workspace_id), used_at in uses.items():
        Connection.objects.filter(application_id=application_id, user_id=user_id, workspace_id=workspace_id).update(
            last_used_at=used_at
        )


def clients_prune(*, now: datetime | None = None) -> int:
    """Delete dynamically registered clients (DCR and CIMD) idle for
    ``MCPNEST_OAUTH_IDLE_CLIENT_DAYS``: registered before then and holding no live token.
    A deleted client's next request gets ``invalid_client``; it registers again."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.MCPNEST_OAUTH_IDLE_CLIENT_DAYS)
    # A member's live token; the RFC 7592 registration token (no user) does not count.
    live_access = AccessToken.objects.filter(application=OuterRef("pk"), expires__gt=now, user__isnull=False)
    live_refresh = RefreshToken.objects.filter(application=OuterRef("pk"), revoked__isnull=True)
    idle = (
        Application.objects.filter(
            registration_source__in=[Application.RegistrationSource.DCR, Application.RegistrationSource.CIMD],
            created__lt=cutoff,
        )
        .filter(
            Q(connections__isnull=True) | Q(connections__last_used_at__lt=cutoff) | Q(connections__last_used_at=None)
        )
        .exclude(Exists(live_access))
        .exclude(Exists(live_refresh))
        .distinct()
    )
    with transaction.atomic():
        count = 0
        for application in idle:
            application.delete()  # its grants and (dead) tokens go with it
            count += 1
        if count:
            epochs.tokens_changed()
    return count
