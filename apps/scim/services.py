"""Writes for SCIM provisioning: tokens, people and groups, as a workspace's IdP asks.

The caller of every people and group service is a SCIM token (``token=``), and its
workspace is the tenant: these services never touch anyone outside what
``apps.scim.selectors.scim_users_for`` gives that workspace. Memberships change only
through ``apps.workspaces.services`` (so its rules hold: the last Owner is never demoted or
removed), with the platform's own access (``platform_access``): the IdP acts on the
authority staff gave it when they created its token. Audit rows name no person; they carry
the token's prefix.

Deprovisioning (``active=false`` or DELETE) is one transaction: the person's gateway tokens
in the workspace are revoked, their OAuth grants revoked, their sessions ended and, if the
IdP owns their account (``scim_owns_account``), the account is switched off. The epochs
move in that transaction, so gateway processes refuse their next call within a second.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from allauth.usersessions.models import UserSession
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.events import Action
from apps.audit.services import audit_event_record
from apps.core import secrets
from apps.core.errors import RuleViolation
from apps.oauth.services import oauth_grants_revoke
from apps.rbac.access import platform_access
from apps.rbac.roles import Capability, Role
from apps.scim.models import ScimGroup, ScimIdentity, ScimToken
from apps.scim.selectors import scim_owns_account, scim_role_for, scim_users_for
from apps.tokens.services import tokens_revoke_for_member
from apps.workspaces.models import Membership, Workspace
from apps.workspaces.services import member_add_by_platform, member_change_role, member_remove

if TYPE_CHECKING:
    from apps.rbac.access import Access

TOUCH_RESOLUTION = 60  # seconds: record a token's use at most once a minute


class ScimConflict(RuleViolation):
    """The request clashes with what exists (an address taken, a person already provisioned)."""


@dataclass(frozen=True)
class IssuedScimToken:
    token: ScimToken
    raw: str  # shown exactly once


# --- Tokens ---------------------------------------------------------------------------


def _token_audit(token: ScimToken, actor: User | None, action: Action, ip: str | None) -> None:
    audit_event_record(
        workspace=token.workspace,
        actor=actor,
        action=action,
        target_type="scim_token",
        target_id=token.pk,
        target_repr=token.prefix,
        metadata={"token_name": token.name},
        ip=ip,
    )


@transaction.atomic
def scim_token_create(*, access: Access, name: str = "", ip: str | None = None) -> IssuedScimToken:
    """Issue a SCIM token for ``access.workspace``; returns it with the raw secret, shown once.

    Owners only (``members.manage_privileged``): the token's holder can add, remove and
    promote anyone in the workspace. Staff in the admin act as Owners when superusers;
    operators at the shell use ``manage.py scim_token_create``.
    """
    access.require(Capability.MANAGE_PRIVILEGED)
    if access.workspace.is_deleted:
        raise RuleViolation(f"{access.workspace.slug} is deleted.")
    new = secrets.generate(ScimToken.SCHEME)
    actor = access.user if access.user.pk else None
    token = ScimToken.objects.create(
        workspace=access.workspace,
        name=(name or "").strip()[:100],
        prefix=new.prefix,
        digest=new.digest,
        created_by=actor,
    )
    _token_audit(token, actor, Action.SCIM_TOKEN_CREATED, ip)
    return IssuedScimToken(token=token, raw=new.raw)


@transaction.atomic
def scim_token_revoke(*, access: Access, token: ScimToken, ip: str | None = None) -> bool:
    """Revoke a SCIM token; its next request is refused. False if it was already revoked."""
    access.require(Capability.MANAGE_PRIVILEGED)
    if token.workspace_id != access.workspace.pk:
        raise RuleViolation("That SCIM token belongs to another workspace.")
    token = ScimToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is not None:
        return False
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    _token_audit(token, access.user if access.user.pk else None, Action.SCIM_TOKEN_REVOKED, ip)
    return True


def scim_token_touch(token: ScimToken) -> None:
    """Record use at most once a minute (never a write per request)."""
    now = timezone.now()
    if token.last_used_at and (now - token.last_used_at).total_seconds() < TOUCH_RESOLUTION:
        return
    ScimToken.objects.filter(pk=token.pk).update(last_used_at=now)
    token.last_used_at = now


# --- People ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class UserChanges:
    """What a SCIM request says about a person; a field left None stays as it is.

    The adapters (``apps.scim.adapters``) turn POST, PUT and PATCH bodies, Entra's and
    Okta's shapes alike, into this one shape.
    """

    email: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    external_id: str | None = None
    active: bool | None = None

    def given(self) -> dict[str, object]:
        return {name: value for name, value in asdict(self).items() if value is not None}


def _audit(token: ScimToken, action: Action, *, target: User | ScimGroup, ip: str | None, **metadata: object) -> None:
    if isinstance(target, ScimGroup):
        target_type, target_repr = "scim_group", target.display_name
    else:
        target_type, target_repr = "user", target.email
    audit_event_record(
        workspace=token.workspace,
        actor=None,
        action=action,
        target_type=target_type,
        target_id=target.pk,
        target_repr=target_repr,
        metadata={"via": "scim", "token_prefix": token.prefix, **metadata},
        ip=ip,
    )


def _clean_email(email: str) -> str:
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError({"userName": f"{email!r} is not an email address."}) from None
    return email


def _membership(workspace: Workspace, user: User) -> Membership | None:
    return Membership.objects.filter(workspace=workspace, user=user).select_related("user").first()


def _identity(workspace: Workspace, user: User, *, created_account: bool = False) -> ScimIdentity:
    identity, _ = ScimIdentity.objects.get_or_create(
        workspace=workspace, user=user, defaults={"created_account": created_account}
    )
    return identity


def _join(token: ScimToken, user: User) -> Membership:
    """Add ``user`` to the token's workspace with the role its mapped groups give (Member if none)."""
    workspace = token.workspace
    role = scim_role_for(workspace=workspace, user=user) or Role.MEMBER
    # The IdP acts with the platform's access, on the authority an operator or Owner gave it
    # by creating its token (see the module docstring).
    return member_add_by_platform(access=platform_access(workspace), user=user, role=role)


def _cut_off(token: ScimToken, user: User, *, owned: bool, leave: bool, ip: str | None) -> dict[str, object]:
    """Take ``user``'s access to the token's workspace away, within the caller's transaction.

    ``leave``: also remove their membership (refused for the last Owner). ``owned``: also
    switch the account off, which ends every token and grant it has anywhere.
    """
    workspace = token.workspace
    revoked = tokens_revoke_for_member(workspace=workspace, user=user, actor=None, ip=ip)
    membership = _membership(workspace, user)
    left = False
    if leave and membership is not None:
        # First, because it is the one step that may refuse (the last Owner): then nothing
        # has happened outside the transaction (sessions live in the cache) to undo.
        member_remove(access=platform_access(workspace), membership=membership, ip=ip)
        left = True
    deactivated = owned and user.is_active
    if deactivated:
        user.is_active = False
        user.save(update_fields=["is_active"])  # moves the tokens epoch (apps.accounts.receivers)
    grants = oauth_grants_revoke(
        user=user, workspace=None if owned else workspace, application=None, actor=None, ip=ip, reason="scim"
    )
    sessions = 0
    for session in UserSession.objects.filter(user=user):
        session.end()
        sessions += 1
    return {
        "tokens_revoked": revoked,
        "oauth_grants_revoked": grants,
        "sessions_ended": sessions,
        "account_deactivated": deactivated,
        "membership_removed": left,
    }


def _apply_account(user: User, changes: UserChanges) -> dict[str, list[str]]:
    """Name and email changes on an account the IdP owns; returns {field: [before, after]}."""
    wanted = {"email": changes.email, "first_name": changes.given_name, "last_name": changes.family_name}
    diff = {
        field: [getattr(user, field), value]
        for field, value in wanted.items()
        if value is not None and getattr(user, field) != value
    }
    if "email" in diff and User.objects.filter(email=diff["email"][1]).exclude(pk=user.pk).exists():
        raise ScimConflict(f"Another account already uses {diff['email'][1]}.")
    for field, (_, value) in diff.items():
        setattr(user, field, value)
    if diff:
        user.save(update_fields=list(diff))
    return diff


@transaction.atomic
def scim_user_provision(*, token: ScimToken, changes: UserChanges, ip: str | None = None) -> User:
    """POST /Users: create the person's account and add them to the workspace as a Member
    (or their mapped groups' role).

    An account with that email that already exists is linked, not taken over: it joins
    the workspace, and the IdP may later take it out again, but never rename it or switch
    it off (``scim_owns_account``), because someone made it themselves or it may belong to
    other workspaces. Someone the workspace's IdP already sees is refused with a conflict
    (409): the IdP should have matched them with ``filter=userName eq …``.
    """
    if changes.email is None:
        raise ValidationError({"userName": "userName (the person's email address) is required."})
    workspace = token.workspace
    email = _clean_email(changes.email)
    user = User.objects.select_for_update().filter(email=email).first()
    linked = user is not None
    if linked and scim_users_for(workspace).filter(pk=user.pk).exists():
        raise ScimConflict(f"{email} is already provisioned in {workspace.slug}; match them by userName.")
    if user is None:
        # No usable password: they sign in through the workspace's SSO, or set one with
        # "Forgot password?".
        user = User.objects.create_user(
            email=email, password=None, first_name=changes.given_name or "", last_name=changes.family_name or ""
        )
    identity = _identity(workspace, user, created_account=not linked)
    if changes.external_id is not None:
        identity.external_id = changes.external_id
        identity.save(update_fields=["external_id"])
    if changes.active is False:
        _audit(token, Action.SCIM_USER_PROVISIONED, target=user, ip=ip, linked=linked, active=False)
        if not linked:
            user.is_active = False
            user.save(update_fields=["is_active"])
        return user
    _join(token, user)
    _audit(token, Action.SCIM_USER_PROVISIONED, target=user, ip=ip, linked=linked, active=True)
    return user


@transaction.atomic
def scim_user_update(*, token: ScimToken, user: User, changes: UserChanges, ip: str | None = None) -> User:
    """PUT or PATCH /Users/<id>: apply what changed.

    ``active=false`` deprovisions (see the module docstring): an account the IdP owns is
    switched off and keeps its membership, so switching it back on restores the person
    (without their tokens, which stay revoked); anyone else leaves the workspace, and
    ``active=true`` brings them back in. Name and email change only on accounts the IdP
    owns; for others they are ignored, so an IdP's sync does not fail on them.
    """
    workspace = token.workspace
    user = User.objects.select_for_update().get(pk=user.pk)
    if not scim_users_for(workspace).filter(pk=user.pk).exists():
        raise RuleViolation("That person is not in this workspace.")  # the caller checked; a race
    identity = _identity(workspace, user)
    owned = scim_owns_account(workspace=workspace, user=user)
    metadata: dict[str, object] = {}
    if changes.external_id is not None and identity.external_id != changes.external_id:
        metadata["external_id"] = [identity.external_id, changes.external_id]
        identity.external_id = changes.external_id
    if owned:
        if changes.email is not None:
            changes = UserChanges(**{**asdict(changes), "email": _clean_email(changes.email)})
        metadata.update(_apply_account(user, changes))
    identity.updated_at = timezone.now()
    identity.save(update_fields=["external_id", "updated_at"])

    member = _membership(workspace, user) is not None
    if changes.active is False and ((owned and user.is_active) or (not owned and member)):
        outcome = _cut_off(token, user, owned=owned, leave=not owned, ip=ip)
        if metadata:
            outcome["changes"] = metadata
        _audit(token, Action.SCIM_USER_DEPROVISIONED, target=user, ip=ip, **outcome)
        return user
    if changes.active is True and ((owned and not user.is_active) or not member):
        if owned and not user.is_active:
            user.is_active = True
            user.save(update_fields=["is_active"])
        if not member:
            _join(token, user)
        metadata["reactivated"] = True
    if metadata:
        _audit(token, Action.SCIM_USER_UPDATED, target=user, ip=ip, changes=metadata)
    return user


@transaction.atomic
def scim_user_delete(*, token: ScimToken, user: User, ip: str | None = None) -> None:
    """DELETE /Users/<id>: deprovision, take them out of the workspace and forget the IdP's
    record of them (the workspace's IdP no longer sees them; the account is kept, switched
    off if the IdP owned it, for the audit trail)."""
    workspace = token.workspace
    user = User.objects.select_for_update().get(pk=user.pk)
    owned = scim_owns_account(workspace=workspace, user=user)
    outcome = _cut_off(token, user, owned=owned, leave=True, ip=ip)
    groups = list(ScimGroup.objects.filter(workspace=workspace, members=user))
    for group in groups:
        group.members.remove(user)
    ScimIdentity.objects.filter(workspace=workspace, user=user).delete()
    _audit(token, Action.SCIM_USER_DEPROVISIONED, target=user, ip=ip, deleted=True, **outcome)


# --- Groups ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class GroupChanges:
    """What a SCIM request says about a group; None leaves a field as it is.

    ``members`` replaces the member list; ``add`` and ``remove`` change it (PATCH).
    Members are SCIM user ids (account ids).
    """

    display_name: str | None = None
    external_id: str | None = None
    members: list[str] | None = None
    add: list[str] | None = None
    remove: list[str] | None = None


def _users_by_scim_id(workspace: Workspace, ids: list[str]) -> list[User]:
    """The people with these SCIM ids, all of whom the workspace's IdP must see."""
    wanted = {str(i) for i in ids}
    if not all(i.isdigit() for i in wanted):
        raise ValidationError({"members": "Member values must be User ids from this service."})
    users = list(scim_users_for(workspace).filter(pk__in=[int(i) for i in wanted]))
    if len(users) != len(wanted):
        raise ValidationError({"members": "A member is not a User of this workspace."})
    return users


def _roles_sync(workspace: Workspace, users: list[User], *, ip: str | None) -> dict[str, object]:
    """Give each member in ``users`` the role their mapped groups now give them (Member when
    none). The last Owner keeps the role: ``member_change_role`` refuses, and we record it."""
    access = platform_access(workspace)
    changed: dict[str, list[str]] = {}
    kept: dict[str, str] = {}
    for user in users:
        membership = _membership(workspace, user)
        if membership is None:
            continue
        wanted = scim_role_for(workspace=workspace, user=user) or Role.MEMBER
        if membership.role == wanted:
            continue
        try:
            member_change_role(access=access, membership=membership, role=wanted, ip=ip)
        except RuleViolation as exc:
            kept[user.email] = str(exc)
            continue
        changed[user.email] = [membership.role, wanted]
    result: dict[str, object] = {}
    if changed:
        result["roles_changed"] = changed
    if kept:
        result["roles_kept"] = kept
    return result


def _group_members_apply(group: ScimGroup, changes: GroupChanges) -> tuple[set[int], set[int]]:
    """Apply member changes; returns (added, removed) account ids."""
    workspace = group.workspace
    current = set(group.members.values_list("pk", flat=True))
    target = set(current)
    if changes.members is not None:
        target = {u.pk for u in _users_by_scim_id(workspace, changes.members)}
    if changes.add:
        target |= {u.pk for u in _users_by_scim_id(workspace, changes.add)}
    if changes.remove:
        # Removing someone the tenant cannot see (or who is not in the group) is a no-op.
        target -= {int(i) for i in changes.remove if str(i).isdigit()}
    added, removed = target - current, current - target
    if added:
        group.members.add(*added)
    if removed:
        group.members.remove(*removed)
    return added, removed


def _group_save(token: ScimToken, group: ScimGroup, changes: GroupChanges, *, ip: str | None, created: bool) -> None:
    workspace = group.workspace
    metadata: dict[str, object] = {}
    if changes.display_name is not None and changes.display_name != group.display_name:
        if not changes.display_name.strip():
            raise ValidationError({"displayName": "displayName is required."})
        if (
            ScimGroup.objects.filter(workspace=workspace, display_name=changes.display_name)
            .exclude(pk=group.pk)
            .exists()
        ):
            raise ScimConflict(f"A group named {changes.display_name!r} already exists.")
        metadata["display_name"] = [group.display_name, changes.display_name]
        group.display_name = changes.display_name
    if changes.external_id is not None and changes.external_id != group.external_id:
        metadata["external_id"] = [group.external_id, changes.external_id]
        group.external_id = changes.external_id
    group.updated_at = timezone.now()
    group.save()
    added, removed = _group_members_apply(group, changes)
    if added or removed:
        emails = dict(User.objects.filter(pk__in=added | removed).values_list("pk", "email"))
        metadata["members_added"] = sorted(emails[pk] for pk in added)
        metadata["members_removed"] = sorted(emails[pk] for pk in removed)
        if group.role:
            metadata.update(_roles_sync(workspace, list(User.objects.filter(pk__in=added | removed)), ip=ip))
    if metadata or created:
        _audit(token, Action.SCIM_GROUP_CHANGED, target=group, ip=ip, created=created, **metadata)


@transaction.atomic
def scim_group_create(*, token: ScimToken, changes: GroupChanges, ip: str | None = None) -> ScimGroup:
    """POST /Groups. A new group maps to no role until staff choose one in the admin."""
    if not (changes.display_name or "").strip():
        raise ValidationError({"displayName": "displayName is required."})
    if ScimGroup.objects.filter(workspace=token.workspace, display_name=changes.display_name).exists():
        raise ScimConflict(f"A group named {changes.display_name!r} already exists.")
    group = ScimGroup(workspace=token.workspace, display_name="", external_id="")
    _group_save(token, group, changes, ip=ip, created=True)
    return group


@transaction.atomic
def scim_group_update(*, token: ScimToken, group: ScimGroup, changes: GroupChanges, ip: str | None = None) -> ScimGroup:
    """PUT or PATCH /Groups/<id>: rename, re-key, add or remove members; roles follow."""
    if group.workspace_id != token.workspace_id:
        raise RuleViolation("That group belongs to another workspace.")
    group = ScimGroup.objects.select_for_update().select_related("workspace").get(pk=group.pk)
    _group_save(token, group, changes, ip=ip, created=False)
    return group


@transaction.atomic
def scim_group_delete(*, token: ScimToken, group: ScimGroup, ip: str | None = None) -> None:
    """DELETE /Groups/<id>; its members' roles are recomputed without it."""
    if group.workspace_id != token.workspace_id:
        raise RuleViolation("That group belongs to another workspace.")
    members = list(group.members.all())
    role = group.role
    _audit(token, Action.SCIM_GROUP_CHANGED, target=group, ip=ip, deleted=True, role=role or None)
    group.delete()
    if role:
        outcome = _roles_sync(token.workspace, members, ip=ip)
        if outcome:
            audit_event_record(
                workspace=token.workspace,
                actor=None,
                action=Action.SCIM_GROUP_CHANGED,
                target_type="scim_group",
                target_repr="(deleted group)",
                metadata={"via": "scim", "token_prefix": token.prefix, **outcome},
                ip=ip,
            )


@transaction.atomic
def scim_group_set_role(*, access: Access, group: ScimGroup, role: str | None, ip: str | None = None) -> ScimGroup:
    """Map a group to a workspace role (or to none); its members' roles follow at once.

    Owners only, like SCIM tokens: a mapping can make people Owners.
    """
    access.require(Capability.MANAGE_PRIVILEGED)
    if group.workspace_id != access.workspace.pk:
        raise RuleViolation("That group belongs to another workspace.")
    role = role or ""
    if role and role not in Role.values:
        raise ValidationError({"role": f"Role must be one of: {', '.join(Role.values)}."})
    group = ScimGroup.objects.select_for_update().select_related("workspace").get(pk=group.pk)
    if group.role == role:
        return group
    before = group.role
    group.role = role
    group.save(update_fields=["role"])
    workspace = group.workspace
    outcome = _roles_sync(workspace, list(group.members.all()), ip=ip)
    audit_event_record(
        workspace=workspace,
        actor=access.user if access.user.pk else None,
        action=Action.SCIM_GROUP_CHANGED,
        target_type="scim_group",
        target_id=group.pk,
        target_repr=group.display_name,
        metadata={"role": [before or None, role or None], **outcome},
        ip=ip,
    )
    return group
