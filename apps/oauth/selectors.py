"""Reads for the authorization server and the gateway: resource URLs, the token check,
who sees which connections."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import QuerySet
from oauth2_provider.models import AccessToken

from apps.oauth.models import Connection
from apps.rbac.roles import Capability
from apps.workspaces.models import Workspace

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.rbac.access import Access

SCOPE = "mcp"
GATEWAY_PATH = "/api/gw/"
_SLUG = re.compile(r"[-a-zA-Z0-9_]+")


def gateway_resource(slug: str) -> str:
    """The workspace's resource identifier: exactly the URL its clients call."""
    return f"{settings.MCPNEST_PUBLIC_URL}{GATEWAY_PATH}{slug}"


def resource_metadata_url(slug: str) -> str:
    """Where the workspace's RFC 9728 metadata lives (the path-inserted well-known URL)."""
    return f"{settings.MCPNEST_PUBLIC_URL}/.well-known/oauth-protected-resource{GATEWAY_PATH}{slug}"


def resource_slug(resource: str) -> str | None:
    """The workspace slug a resource URL names, or None: only an exact gateway URL counts."""
    base = f"{settings.MCPNEST_PUBLIC_URL}{GATEWAY_PATH}"
    if not isinstance(resource, str) or not resource.startswith(base):
        return None
    slug = resource[len(base) :]
    return slug if _SLUG.fullmatch(slug) else None


def resource_workspace(resources: list[str] | None) -> Workspace | None:
    """The active workspace a token's audience names. A token must name exactly one gateway:
    none (an unbound token) or several are refused, so no token works on two workspaces."""
    if not resources or len(resources) != 1:
        return None
    slug = resource_slug(resources[0])
    if slug is None:
        return None
    return Workspace.objects.active().filter(slug=slug).first()


def access_token_for_digest(digest: str) -> tuple[AccessToken, Workspace] | None:
    """The one OAuth token check: the live access token with this digest and the workspace
    it is for, or None. Live means unexpired, its client still registered, its member an
    active person, its audience exactly one active workspace's gateway."""
    token = AccessToken.objects.select_related("application", "user").filter(token_checksum=digest).first()
    if token is None or token.is_expired() or token.application is None or token.user is None:
        return None
    if not token.user.is_active:
        return None
    workspace = resource_workspace(token.resource)
    if workspace is None:
        return None
    return token, workspace


def connections_visible_to(*, access: Access) -> QuerySet[Connection]:
    """Every connection in the workspace for token managers; otherwise the actor's own."""
    connections = Connection.objects.filter(workspace=access.workspace).select_related("application", "user")
    if not access.can(Capability.MANAGE_TOKENS):
        connections = connections.filter(user=access.user)
    return connections


def memberships_for_consent(*, user: User) -> QuerySet[Workspace]:
    """The workspaces a person may connect a client to: active ones they belong to."""
    return Workspace.objects.active().filter(memberships__user=user).order_by("name")
