"""Writes for workspaces, memberships and invitations.

Every function takes keyword arguments, checks the actor's capability through
``apps.rbac``, and writes its change and the audit event in one transaction.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from apps.audit.events import Action
from apps.audit.services import audit_event_record
from apps.core import epochs, secrets
from apps.core.errors import RuleViolation
from apps.rbac.access import Access, check_role_change
from apps.rbac.roles import ASSIGNABLE, Capability, Role
from apps.tokens.services import tokens_revoke_for_member, tokens_revoke_for_workspace
from apps.workspaces.models import Enforcement, Invitation, Membership, Plan, Workspace

if TYPE_CHECKING:
    from apps.accounts.models import User


def _audit(workspace: Workspace, actor: User | None, action: Action, *, target=None, ip=None, **metadata) -> None:
    target_type, target_id, target_repr = "", "", ""
    if isinstance(target, Membership):
        target_type, target_id, target_repr = "membership", target.pk, target.user.email
    elif isinstance(target, Invitation):
        target_type, target_id, target_repr = "invitation", target.pk, target.email
    elif isinstance(target, Workspace):
        target_type, target_id, target_repr = "workspace", target.pk, target.slug
    audit_event_record(
        workspace=workspace,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        target_repr=target_repr,
        metadata=metadata,
        ip=ip,
    )


# --- Workspaces ------------------------------------------------------------------


def workspace_create(
    *, actor: User, slug: str, name: str = "", plan: str = Plan.TEAM, ip: str | None = None
) -> Workspace:
    """Create a workspace with ``actor`` as its first Owner."""
    workspace = Workspace(slug=(slug or "").strip(), name=(name or slug or "").strip(), plan=plan)
    workspace.full_clean(validate_unique=False)
    try:
        with transaction.atomic():
            workspace.save()
            Membership.objects.create(workspace=workspace, user=actor, role=Role.OWNER)
            _audit(workspace, actor, Action.WORKSPACE_CREATED, target=workspace, ip=ip, plan=plan)
    except IntegrityError:
        raise ValidationError({"slug": f"The slug {workspace.slug!r} is taken; choose another."}) from None
    return workspace


@transaction.atomic
def workspace_update(
    *, access: Access, name: str | None = None, plan: str | None = None, ip: str | None = None
) -> Workspace:
    workspace = access.workspace
    changes: dict[str, list[str]] = {}
    if name is not None and name.strip() != workspace.name:
        access.require(Capability.UPDATE_WORKSPACE)
        changes["name"] = [workspace.name, name.strip()]
        workspace.name = name.strip()
    if plan is not None and plan != workspace.plan:
        access.require(Capability.MANAGE_PLAN)
        if plan not in Plan.values:
            raise ValidationError({"plan": f"Plan must be one of: {', '.join(Plan.values)}."})
        changes["plan"] = [workspace.plan, plan]
        workspace.plan = plan
    if not changes:
        return workspace
    workspace.full_clean()
    workspace.save()
    action = Action.PLAN_CHANGED if set(changes) == {"plan"} else Action.WORKSPACE_UPDATED
    _audit(workspace, access.user, action, target=workspace, ip=ip, changes=changes)
    return workspace


@transaction.atomic
def workspace_set_enforcement(*, access: Access, mode: str, ip: str | None = None) -> Workspace:
    access.require(Capability.MANAGE_ALLOWLISTS)
    if mode not in Enforcement.values:
        raise ValidationError({"enforcement": f"Enforcement must be one of: {', '.join(Enforcement.values)}."})
    workspace = access.workspace
    if workspace.enforcement != mode:
        before = workspace.enforcement
        workspace.enforcement = mode
        workspace.save(update_fields=["enforcement"])
        epochs.workspace_changed(workspace.pk)
        _audit(workspace, access.user, Action.ENFORCEMENT_CHANGED, target=workspace, ip=ip, before=before, after=mode)
    return workspace


@transaction.atomic
def workspace_set_rate_limit(*, access: Access, per_minute: int, ip: str | None = None) -> Workspace:
    access.require(Capability.MANAGE_ALLOWLISTS)
    if per_minute < 1:
        raise ValidationError({"rate_limit_per_minute": "The rate limit must be at least 1 request per minute."})
    workspace = access.workspace
    if workspace.rate_limit_per_minute != per_minute:
        before = workspace.rate_limit_per_minute
        workspace.rate_limit_per_minute = per_minute
        workspace.save(update_fields=["rate_limit_per_minute"])
        epochs.workspace_changed(workspace.pk)
        _audit(
            workspace, access.user, Action.RATE_LIMIT_CHANGED, target=workspace, ip=ip, before=before, after=per_minute
        )
    return workspace


@transaction.atomic
def workspace_set_deny_by_default(*, access: Access, deny: bool, ip: str | None = None) -> Workspace:
    """Whether members without any allowlist rule may call nothing (True) or everything (False)."""
    access.require(Capability.MANAGE_ALLOWLISTS)
    workspace = access.workspace
    if workspace.deny_by_default != deny:
        before = workspace.deny_by_default
        workspace.deny_by_default = deny
        workspace.save(update_fields=["deny_by_default"])
        epochs.workspace_changed(workspace.pk)
        _audit(
            workspace,
            access.user,
            Action.ENFORCEMENT_CHANGED,
            target=workspace,
            ip=ip,
            deny_by_default=[before, deny],
        )
    return workspace


@transaction.atomic
def workspace_delete(*, access: Access, ip: str | None = None) -> None:
    """Mark the workspace deleted and revoke all its tokens. Its audit trail stays."""
    access.require(Capability.DELETE_WORKSPACE)
    workspace = access.workspace
    tokens_revoke_for_workspace(workspace=workspace, actor=access.user, ip=ip)
    workspace.deleted_at = timezone.now()
    workspace.save(update_fields=["deleted_at"])
    Invitation.objects.pending().filter(workspace=workspace).update(revoked_at=workspace.deleted_at)
    epochs.workspace_changed(workspace.pk)
    _audit(workspace, access.user, Action.WORKSPACE_DELETED, target=workspace, ip=ip)


# --- Memberships -----------------------------------------------------------------


def _lock_memberships(workspace: Workspace) -> list[Membership]:
    # Locking every membership row of the workspace serialises role changes, so two
    # concurrent demotions can never leave it without an Owner.
    return list(Membership.objects.select_for_update().filter(workspace=workspace).select_related("user"))


def _owner_count(memberships: list[Membership]) -> int:
    return sum(1 for m in memberships if m.role == Role.OWNER)


@transaction.atomic
def member_add(
    *,
    workspace: Workspace,
    user: User,
    role: str,
    actor: User | None,
    ip: str | None = None,
    action: Action = Action.MEMBER_ADDED,
) -> Membership:
    """Add ``user`` with ``role`` (operators, invitations). Callers check the actor's rights."""
    if role not in Role.values:
        raise ValidationError({"role": f"Role must be one of: {', '.join(Role.values)}."})
    if Membership.objects.filter(workspace=workspace, user=user).exists():
        raise RuleViolation(f"{user.email} is already a member of {workspace.slug}.")
    membership = Membership.objects.create(workspace=workspace, user=user, role=role)
    epochs.workspace_changed(workspace.pk)
    _audit(workspace, actor, action, target=membership, ip=ip, role=role)
    return membership


@transaction.atomic
def member_change_role(*, access: Access, membership: Membership, role: str, ip: str | None = None) -> Membership:
    if role not in Role.values:
        raise ValidationError({"role": f"Role must be one of: {', '.join(Role.values)}."})
    if membership.workspace_id != access.workspace.pk:
        raise RuleViolation("That membership belongs to another workspace.")
    if membership.user_id == access.user.pk:
        raise RuleViolation("You cannot change your own role; ask another Owner.")
    memberships = _lock_memberships(access.workspace)
    current = next((m for m in memberships if m.pk == membership.pk), None)
    if current is None:
        raise RuleViolation("That person is no longer a member.")
    check_role_change(actor_role=access.role, target_role=current.role, new_role=role)
    if current.role == role:
        return current
    if current.role == Role.OWNER and _owner_count(memberships) == 1:
        raise RuleViolation("A workspace needs at least one Owner; make someone else Owner first.")
    before = current.role
    current.role = role
    current.save(update_fields=["role"])
    _audit(access.workspace, access.user, Action.ROLE_CHANGED, target=current, ip=ip, before=before, after=role)
    return current


@transaction.atomic
def member_remove(*, access: Access, membership: Membership, ip: str | None = None) -> None:
    """Remove a member (or let a member leave) and revoke all their tokens, atomically."""
    if membership.workspace_id != access.workspace.pk:
        raise RuleViolation("That membership belongs to another workspace.")
    memberships = _lock_memberships(access.workspace)
    current = next((m for m in memberships if m.pk == membership.pk), None)
    if current is None:
        raise RuleViolation("That person is no longer a member.")
    leaving = current.user_id == access.user.pk
    if not leaving:
        check_role_change(actor_role=access.role, target_role=current.role, new_role=None)
    if current.role == Role.OWNER and _owner_count(memberships) == 1:
        raise RuleViolation("A workspace needs at least one Owner; make someone else Owner first.")
    revoked = tokens_revoke_for_member(workspace=access.workspace, user=current.user, actor=access.user, ip=ip)
    _audit(
        access.workspace,
        access.user,
        Action.MEMBER_REMOVED,
        target=current,
        ip=ip,
        role=current.role,
        tokens_revoked=revoked,
        left=leaving,
    )
    current.delete()
    epochs.workspace_changed(access.workspace.pk)


# --- Invitations -----------------------------------------------------------------


def invitation_url(raw: str) -> str:
    return reverse("portal:invitation-accept", kwargs={"secret": raw})


@transaction.atomic
def invitation_create(
    *,
    access: Access,
    email: str,
    role: str = Role.MEMBER,
    base_url: str = "",
    ip: str | None = None,
    replace: bool = False,
) -> tuple[Invitation, str]:
    """Invite ``email`` with ``role``; emails a single-use link. Returns (invitation, raw secret).

    An address with a pending invitation is refused (saying its role and expiry) unless
    ``replace=True``: then that invitation is revoked, and audited as such, in favour of this one.
    """
    access.require(Capability.MANAGE_MEMBERS)
    email = (email or "").strip().lower()
    if role not in ASSIGNABLE.get(access.role, frozenset()):
        # (!r inside the f-string would apply to the whole expression and quote the label.)
        label = Role(role).label if role in Role.values else repr(role)
        raise RuleViolation(f"Your role cannot invite someone as {label}.")
    invitation = Invitation(
        workspace=access.workspace,
        email=email,
        role=role,
        invited_by=access.user,
        expires_at=timezone.now() + timedelta(days=settings.MCPNEST_INVITATION_DAYS),
    )
    new = secrets.generate(Invitation.SCHEME)
    invitation.digest = new.digest
    invitation.full_clean(exclude=["digest"])
    if access.workspace.memberships.filter(user__email=email).exists():
        raise RuleViolation(f"{email} is already a member of {access.workspace.slug}.")
    # Locking the workspace row queues concurrent invitations, so each sees the other's.
    Workspace.objects.select_for_update().only("pk").get(pk=access.workspace.pk)
    pending = Invitation.objects.pending().filter(workspace=access.workspace, email=email).first()
    if pending is not None and not replace:
        expires = timezone.localtime(pending.expires_at)
        raise RuleViolation(
            f"{email} already has a pending invitation as {pending.get_role_display()}, "
            f"expiring {expires:%Y-%m-%d %H:%M %Z}. Revoke it first, or replace it with this one."
        )
    if pending is not None:
        pending.revoked_at = timezone.now()
        pending.save(update_fields=["revoked_at"])
        _audit(access.workspace, access.user, Action.INVITATION_REVOKED, target=pending, ip=ip, replaced=True)
    invitation.save()
    replaces = {"replaces": pending.pk} if pending is not None else {}
    _audit(access.workspace, access.user, Action.MEMBER_INVITED, target=invitation, ip=ip, role=role, **replaces)
    link = base_url.rstrip("/") + invitation_url(new.raw)
    workspace_name = access.workspace.name
    transaction.on_commit(
        lambda: send_mail(
            subject=f"You are invited to {workspace_name} on MCPNest",
            message=(
                f"{access.user.email} invited you to the workspace “{workspace_name}” as {Role(role).label}.\n\n"
                f"Accept within {settings.MCPNEST_INVITATION_DAYS} days, signed in as {email}:\n{link}\n"
            ),
            from_email=None,
            recipient_list=[email],
        )
    )
    return invitation, new.raw


@transaction.atomic
def invitation_revoke(*, access: Access, invitation: Invitation, ip: str | None = None) -> None:
    access.require(Capability.MANAGE_MEMBERS)
    if invitation.workspace_id != access.workspace.pk:
        raise RuleViolation("That invitation belongs to another workspace.")
    if invitation.status != "pending":
        raise RuleViolation(f"That invitation is already {invitation.status}.")
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    _audit(access.workspace, access.user, Action.INVITATION_REVOKED, target=invitation, ip=ip)


def invitation_lookup(raw: str) -> Invitation | None:
    if not secrets.pattern(Invitation.SCHEME).match(raw or ""):
        return None
    invitation = Invitation.objects.select_related("workspace").filter(digest=secrets.digest(raw)).first()
    if invitation is None or not secrets.matches(raw, invitation.digest):
        return None
    return invitation


@transaction.atomic
def invitation_accept(*, user: User, raw: str, ip: str | None = None) -> Membership:
    """Join the invitation's workspace. The signed-in user's email must be the invited one."""
    invitation = invitation_lookup(raw)
    if invitation is None:
        raise RuleViolation("This invitation link is not valid.")
    invitation = Invitation.objects.select_for_update().select_related("workspace").get(pk=invitation.pk)
    if invitation.status != "pending" or invitation.workspace.is_deleted:
        raise RuleViolation(
            f"This invitation is {invitation.status if invitation.status != 'pending' else 'no longer valid'}."
        )
    if user.email.lower() != invitation.email.lower():
        raise RuleViolation(f"This invitation is for {invitation.email}; sign in with that address to accept it.")
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    return member_add(
        workspace=invitation.workspace, user=user, role=invitation.role, actor=user, ip=ip, action=Action.MEMBER_JOINED
    )
