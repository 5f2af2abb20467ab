"""Writes for gateway tokens: create, revoke, and recording their use (reads: ``apps.tokens.selectors``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from apps.audit.events import Action
from apps.audit.services import audit_event_record
from apps.core import epochs, secrets
from apps.core.errors import RuleViolation
from apps.rbac.roles import Capability
from apps.tokens.models import GatewayToken

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.rbac.access import Access
    from apps.workspaces.models import Workspace

MAX_EXPIRY_DAYS = 3650


@dataclass(frozen=True)
class IssuedToken:
    token: GatewayToken
    raw: str  # shown exactly once


def _audit(*, token: GatewayToken, actor: User | None, action: Action, ip: str | None) -> None:
    audit_event_record(
        workspace=token.workspace,
        actor=actor,
        action=action,
        target_type="token",
        target_id=token.pk,
        target_repr=token.prefix,
        metadata={
            "kind": token.kind,
            "member": token.user.email if token.user_id else None,
            "token_name": token.name,
        },
        ip=ip,
    )


@transaction.atomic
def token_create(
    *,
    access: Access,
    member: User | None,
    name: str = "",
    expires_days: int | None = None,
    kind: str = GatewayToken.Kind.MEMBER,
    ip: str | None = None,
) -> IssuedToken:
    """Issue a gateway token. ``member=None`` with ``kind=workspace`` issues a workspace token.

    Anyone may issue member tokens for themselves; issuing for someone else, or a
    workspace token, needs the tokens.manage capability.
    """
    workspace = access.workspace
    if kind == GatewayToken.Kind.WORKSPACE:
        access.require(Capability.MANAGE_TOKENS)
        member = None
    else:
        if member is None:
            raise RuleViolation("Say which member the token is for.")
        if member.pk != access.user.pk:
            access.require(Capability.MANAGE_TOKENS)
        else:
            access.require(Capability.MANAGE_OWN_TOKENS)
        if not workspace.memberships.filter(user=member).exists():
            raise RuleViolation(f"{member.email} is not a member of {workspace.slug}.")
    if expires_days is not None and not 1 <= expires_days <= MAX_EXPIRY_DAYS:
        raise RuleViolation(f"Expiry must be between 1 and {MAX_EXPIRY_DAYS} days.")
    new = secrets.generate(GatewayToken.SCHEME)
    token = GatewayToken.objects.create(
        workspace=workspace,
        kind=kind,
        user=member,
        name=name.strip()[:100],
        prefix=new.prefix,
        digest=new.digest,
        created_by=access.user if access.user.pk else None,
        expires_at=timezone.now() + timedelta(days=expires_days) if expires_days else None,
    )
    _audit(token=token, actor=access.user if access.user.pk else None, action=Action.TOKEN_CREATED, ip=ip)
    return IssuedToken(token=token, raw=new.raw)


def _revoke(*, token: GatewayToken, actor: User | None, ip: str | None, reason: str) -> bool:
    if token.revoked_at is not None:
        return False
    token.revoked_at = timezone.now()
    token.revoked_by = actor if actor is not None and actor.pk else None
    token.save(update_fields=["revoked_at", "revoked_by"])
    audit_event_record(
        workspace=token.workspace,
        actor=actor,
        action=Action.TOKEN_REVOKED,
        target_type="token",
        target_id=token.pk,
        target_repr=token.prefix,
        metadata={"kind": token.kind, "member": token.user.email if token.user_id else None, "reason": reason},
        ip=ip,
    )
    # In the same transaction: the revocation and the news of it commit together, and
    # every gateway process sees it within a second of the commit (apps.core.epochs).
    epochs.tokens_changed()
    return True


@transaction.atomic
def token_revoke(*, access: Access, token: GatewayToken, ip: str | None = None) -> bool:
    """Revoke one token; members may revoke their own. Returns False if already revoked."""
    if token.workspace_id != access.workspace.pk:
        raise RuleViolation("That token belongs to another workspace.")
    if token.user_id == access.user.pk:
        access.require(Capability.MANAGE_OWN_TOKENS)
    else:
        access.require(Capability.MANAGE_TOKENS)
    return _revoke(token=token, actor=access.user, ip=ip, reason="revoked")


def tokens_revoke_for_member(*, workspace: Workspace, user: User, actor: User | None, ip: str | None) -> int:
    """Revoke every token ``user`` holds in ``workspace`` (call inside the removal's transaction)."""
    revoked = 0
    for token in GatewayToken.objects.select_for_update().filter(
        workspace=workspace, user=user, revoked_at__isnull=True
    ):
        revoked += _revoke(token=token, actor=actor, ip=ip, reason="member removed")
    return revoked


def tokens_revoke_for_workspace(*, workspace: Workspace, actor: User | None, ip: str | None) -> int:
    revoked = 0
    for token in GatewayToken.objects.select_for_update().filter(workspace=workspace, revoked_at__isnull=True):
        revoked += _revoke(token=token, actor=actor, ip=ip, reason="workspace deleted")
    return revoked


LAST_USED_RESOLUTION = timedelta(minutes=1)


def token_touch(token: GatewayToken, *, now=None) -> bool:
    """Record use at most once a minute per token (never a write per request)."""
    now = now or timezone.now()
    if token.last_used_at and now - token.last_used_at < LAST_USED_RESOLUTION:
        return False
    GatewayToken.objects.filter(pk=token.pk).update(last_used_at=now)
    token.last_used_at = now
    return True
