"""Reads for single sign-on: which connection an address or an IdP belongs to, and whom
"SSO required" shuts out of a workspace."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from allauth.account.authentication import get_authentication_records
from allauth.socialaccount.models import SocialAccount, SocialApp

from apps.sso.models import SsoConnection, email_domain

if TYPE_CHECKING:
    from django.http import HttpRequest

    from apps.workspaces.models import Workspace


def connection_for_email(email: str) -> SsoConnection | None:
    """The connection whose e-mail domains include ``email``'s, on a live workspace.

    Connections are few (one per enterprise workspace) and ``clean`` keeps domains unique
    across them, so a scan of the lists is simpler than a lookup table and as correct.
    """
    domain = email_domain(email)
    if not domain:
        return None
    connections = SsoConnection.objects.filter(workspace__deleted_at__isnull=True).select_related(
        "social_app", "workspace"
    )
    return next((c for c in connections if domain in c.email_domains), None)


def connection_for_app(app: SocialApp | None) -> SsoConnection | None:
    """The connection that owns ``app`` (None for an app no connection uses)."""
    if app is None or app.pk is None:
        return None
    return SsoConnection.objects.select_related("social_app", "workspace").filter(social_app_id=app.pk).first()


def connection_for_workspace(workspace: Workspace) -> SsoConnection | None:
    return SsoConnection.objects.select_related("social_app", "workspace").filter(workspace=workspace).first()


def connections_for_identity_provider(provider: str) -> list[SsoConnection]:
    """Connections whose IdP creates SocialAccounts with ``provider`` (normally one)."""
    return [
        c
        for c in SsoConnection.objects.select_related("social_app").filter(social_app__provider_id=provider)
        if c.identity_provider == provider
    ]


def sso_required_blocked_user_ids(*, workspace_id: int, user_ids: Iterable[int]) -> frozenset[int]:
    """Of ``user_ids`` (the workspace's members), those shut out because the workspace
    requires SSO and they have no identity at its IdP yet (never signed in through it).

    Two queries at most, whatever the number of members; none of them when SSO is not required.
    """
    connection = (
        SsoConnection.objects.select_related("social_app").filter(workspace_id=workspace_id, sso_required=True).first()
    )
    if connection is None:
        return frozenset()
    wanted = set(user_ids)
    if not wanted:
        return frozenset()
    linked = SocialAccount.objects.filter(provider=connection.identity_provider, user_id__in=wanted).values_list(
        "user_id", flat=True
    )
    return frozenset(wanted - set(linked))


def sso_session_blocks(*, request: HttpRequest, workspace: Workspace) -> bool:
    """Whether "SSO required" keeps this session out of ``workspace``: it was not signed in
    through the workspace's IdP (a password sign-in does not do, even for a person who has
    an identity there). allauth records each sign-in method of the session; one query, the
    connection's. The portal and the OAuth consent page ask this; the gateway, which sees
    tokens and no session, asks ``sso_required_blocked_user_ids``."""
    if not request.user.is_authenticated:
        return False
    connection = (
        SsoConnection.objects.select_related("social_app").filter(workspace_id=workspace.pk, sso_required=True).first()
    )
    if connection is None:
        return False
    return not any(
        record.get("method") == "socialaccount" and record.get("provider") == connection.identity_provider
        for record in get_authentication_records(request, request.user)
    )


def idp_groups(connection: SsoConnection, extra_data: dict[str, Any]) -> list[str]:
    """The person's IdP groups from a sign-in's data, under the connection's groups claim.

    OpenID Connect data is ``{"userinfo": {...}, "id_token": {...}}`` (allauth); SAML data
    is the assertion's attributes, each a list of values.
    """
    claim = connection.groups_claim
    if connection.social_app.provider == "openid_connect":
        sources = [extra_data.get("userinfo") or {}, extra_data.get("id_token") or {}]
        value = next((source[claim] for source in sources if claim in source), None)
    else:
        value = extra_data.get(claim)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(item) for item in value]
    return []
