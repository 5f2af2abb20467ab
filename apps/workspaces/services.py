"""Writes for workspaces, memberships and invitations.

Every function takes keyword arguments, checks the actor's capability through
``apps.rbac``, and writes its change and the audit event in one transaction. Reads live
in ``apps.workspaces.selectors``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, models, transaction
from django.urls import reverse
from django.utils import timezone

from apps.audit.events import Action
from apps.audit.services import audit_event_record
from apps.core import epochs, secrets
from apps.core.errors import RuleViolation
from apps.rbac.access import Access, access_for, check_role_change
from apps.rbac.roles import ASSIGNABLE, Capability, Role
from apps.tokens.services import tokens_revoke_for_member, tokens_revoke_for_workspace
from apps.workspaces.models import Invitation, Membership, Plan, Workspace
from apps.workspaces.selectors import invitation_lookup, invitation_pending_for

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


@dataclass(frozen=True, kw_only=True)
class GatewayPolicy:
    """A change to how the gateway treats a workspace's calls; a field left None stays as is.

    The one input shape of ``workspace_set_policy``, whoever asks: the portal's form, the
    REST API (``/policy`` and the workspace itself), the admin and the operator commands.
    They validate their own input format; the values are checked again, by the Workspace
    model's own field rules, when the service applies them.
    """

    enforcement: str | None = None  # an Enforcement value
    deny_by_default: bool | None = None
    rate_limit_per_minute: int | None = None

    @classmethod
    def pick(cls, values: Mapping[str, Any]) -> GatewayPolicy:
        """The policy fields present in ``values`` (a serializer's or a form's data); others are ignored."""
        return cls(**{field.name: values[field.name] for field in fields(cls) if field.name in values})

    def given(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items() if value is not None}


POLICY_FIELDS = tuple(field.name for field in fields(GatewayPolicy))


def _clean_fields(model: type[models.Model], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` as the model's fields accept them (choices, validators), or a ValidationError
    naming every refused field. The model owns the rule; callers' forms only pre-check it."""
    cleaned, errors = {}, {}
    for name, value in values.items():
        try:
            cleaned[name] = model._meta.get_field(name).clean(value, None)
        except ValidationError as exc:
            errors[name] = exc.messages
    if errors:
        raise ValidationError(errors)
    return cleaned


@transaction.atomic
def workspace_set_policy(*, access: Access, policy: GatewayPolicy, ip: str | None = None) -> Workspace:
    """Change the workspace's gateway policy: enforcement mode, deny-by-default, rate limit.

    Every field given changes, or (a refused value) none does. One audit row records what
    changed (``changes: {field: [before, after]}``) and gateway processes reload the
    workspace within a second of the commit. Nothing changed: nothing recorded.
    """
    access.require(Capability.MANAGE_ALLOWLISTS)
    wanted = _clean_fields(Workspace, policy.given())
    workspace = access.workspace
    # The row locked, so that two concurrent changes each record the other's result as "before".
    saved = Workspace.objects.select_for_update().filter(pk=workspace.pk).values(*POLICY_FIELDS).get()
    changes = {name: [saved[name], value] for name, value in wanted.items() if saved[name] != value}
    if not changes:
        return workspace
    for name, (_, value) in changes.items():
        setattr(workspace, name, value)
    workspace.save(update_fields=list(changes))
    epochs.workspace_changed(workspace.pk)
    _audit(workspace, access.user, Action.ENFORCEMENT_CHANGED, target=workspace, ip=ip, changes=changes)
    return workspace


def workspace_set_rate_limit(*, access: Access, per_minute: int, ip: str | None = None) -> Workspace:
    """``workspace_set_policy`` with the rate limit only.

    Kept for ``tests/faults/setup_data.py``, a script outside this app's reach; new code
    calls ``workspace_set_policy``.
    """
    return workspace_set_policy(access=access, policy=GatewayPolicy(rate_limit_per_minute=per_minute), ip=ip)


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


def _role_value(role: str) -> None:
    if role not in Role.values:
        raise ValidationError({"role": f"Role must be one of: {', '.join(Role.values)}."})


def _membership_create(
    *, workspace: Workspace, user: User, role: str, actor: User | None, ip: str | None, action: Action
) -> Membership:
    """The membership row, its audit event and the gateway's reload; who may is decided by the caller
    (``member_add``, ``member_add_by_operator``, or the invitation being accepted)."""
    _role_value(role)
    if workspace.is_deleted:
        raise RuleViolation(f"{workspace.slug} is deleted; nobody can join it.")
    if Membership.objects.filter(workspace=workspace, user=user).exists():
        raise RuleViolation(f"{user.email} is already a member of {workspace.slug}.")
    membership = Membership.objects.create(workspace=workspace, user=user, role=role)
    epochs.workspace_changed(workspace.pk)
    _audit(workspace, actor, action, target=membership, ip=ip, role=role)
    return membership


@transaction.atomic
def member_add(*, workspace: Workspace, user: User, role: str, actor: User, ip: str | None = None) -> Membership:
    """``actor`` adds ``user`` to ``workspace`` with ``role``, if the actor's own role allows it.

    The rules are the invitation's: the actor needs ``members.manage`` there, and may hand out
    only the roles their role may assign (``ASSIGNABLE``: an Admin adds Admins and Members,
    never an Owner). A superuser who is not a member acts as Owner, as everywhere. Operators
    at the shell, with no acting person, use ``member_add_by_operator``.
    """
    _role_value(role)
    access = access_for(user=actor, workspace=workspace)
    access.require(Capability.MANAGE_MEMBERS)
    if role not in ASSIGNABLE.get(access.role, frozenset()):
        raise RuleViolation(f"Your role in {workspace.slug} cannot add someone as {Role(role).label}.")
    return _membership_create(workspace=workspace, user=user, role=role, actor=actor, ip=ip, action=Action.MEMBER_ADDED)


@transaction.atomic
def member_add_by_operator(*, workspace: Workspace, user: User, role: str) -> Membership:
    """Add ``user`` with any ``role``, for an operator at the shell (``manage.py addmember``).

    No acting member and no role check: whoever runs management commands already holds the
    database. The audit row names no actor (the system), like every operator command's.
    Not for views, the API or the admin, which always have an acting user: use ``member_add``.
    """
    return _membership_create(
        workspace=workspace, user=user, role=role, actor=None, ip=None, action=Action.MEMBER_ADDED
    )


@transaction.atomic
def member_add_by_platform(*, access: Access, user: User, role: str, ip: str | None = None) -> Membership:
    """The platform adds ``user`` with ``role`` on what the workspace's Owners authorised: its
    identity provider provisioning people over SCIM (``apps.scim``), with the token an Owner
    or an operator issued. ``access`` is ``platform_access(workspace)``; the audit row names
    no person."""
    access.require(Capability.MANAGE_PRIVILEGED)
    return _membership_create(
        workspace=access.workspace, user=user, role=role, actor=None, ip=ip, action=Action.MEMBER_ADDED
    )


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
    pending = invitation_pending_for(workspace=access.workspace, email=email)
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
    # The invitation is the authority: its creator's right to invite with this role was
    # checked when it was sent, so the invitee joins without a role of their own.
    return _membership_create(
        workspace=invitation.workspace, user=user, role=invitation.role, actor=user, ip=ip, action=Action.MEMBER_JOINED
    )
