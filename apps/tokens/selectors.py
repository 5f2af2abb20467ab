"""Reads of gateway tokens: the one token check, finding one by prefix, who sees which."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet

from apps.core import secrets
from apps.core.errors import RuleViolation
from apps.rbac.roles import Capability
from apps.tokens.models import GatewayToken

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.rbac.access import Access
    from apps.workspaces.models import Workspace


def token_for_digest(digest: str) -> GatewayToken | None:
    """The one token check: the usable token with this digest, or None.

    Usable means not revoked, not expired, its workspace not deleted and, for a member
    token, its person still active. The portal, the API and the gateway (which caches the
    answer) all ask this.
    """
    token = GatewayToken.objects.active().select_related("workspace", "user").filter(digest=digest).first()
    if token is None or token.workspace.is_deleted:
        return None
    if token.user_id is not None and not token.user.is_active:
        return None  # a deactivated person's tokens stop working with their account
    return token


def token_find(*, workspace: Workspace, prefix: str) -> GatewayToken:
    """The token of ``workspace`` whose display prefix is ``prefix`` (as shown in lists)."""
    prefix = prefix.strip().rstrip("…").rstrip(".")
    matches = list(GatewayToken.objects.filter(workspace=workspace, prefix__startswith=prefix)[:2]) if prefix else []
    if not matches:
        raise RuleViolation(f"No token with prefix {prefix!r} in workspace {workspace.slug}.")
    if len(matches) > 1:
        raise RuleViolation(f"Prefix {prefix!r} matches more than one token; give more characters.")
    return matches[0]


def token_verify(raw: str) -> GatewayToken | None:
    """The active token for a presented secret, or None. Timing-safe; no secret is logged."""
    if not secrets.pattern(GatewayToken.SCHEME).match(raw or ""):
        return None
    token = token_for_digest(secrets.digest(raw))
    if token is None or not secrets.matches(raw, token.digest):
        return None
    return token


def tokens_visible_to(*, access: Access) -> QuerySet[GatewayToken]:
    """All of the workspace's tokens for token managers; otherwise only the actor's own."""
    tokens = GatewayToken.objects.filter(workspace=access.workspace)
    if not access.can(Capability.MANAGE_TOKENS):
        tokens = tokens.filter(kind=GatewayToken.Kind.MEMBER, user=access.user)
    return tokens


def active_token_count(*, workspace: Workspace, user: User) -> int:
    """How many usable tokens ``user`` holds in ``workspace`` (what leaving or removal revokes)."""
    return GatewayToken.objects.filter(workspace=workspace, user=user).active().count()
