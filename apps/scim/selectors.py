"""Reads for SCIM: the token check and what a tenant (a SCIM token's workspace) may see."""

from __future__ import annotations

import uuid

from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet, Subquery

from apps.accounts.models import User
from apps.core import secrets
from apps.rbac.roles import Role
from apps.scim.models import ScimGroup, ScimIdentity, ScimToken
from apps.workspaces.models import Membership, Workspace

# Most privileged first: a person in several mapped groups gets the first of these.
ROLE_ORDER = (Role.OWNER, Role.ADMIN, Role.MEMBER)


def scim_token_verify(raw: str) -> ScimToken | None:
    """The active SCIM token for a presented secret, or None. Timing-safe; nothing logged.

    A token whose workspace is deleted is refused like a revoked one.
    """
    if not secrets.pattern(ScimToken.SCHEME).match(raw or ""):
        return None
    token = ScimToken.objects.active().select_related("workspace").filter(digest=secrets.digest(raw)).first()
    if token is None or token.workspace.is_deleted or not secrets.matches(raw, token.digest):
        return None
    return token


def scim_users_for(workspace: Workspace) -> QuerySet[User]:
    """Everyone the workspace's IdP may see and manage: its members and the people it
    provisioned (who stay visible while deprovisioned, so the IdP can bring them back).

    Each row carries what a SCIM answer needs without another query: ``scim_external_id``
    (the IdP's id for them, None if none), ``scim_updated_at``, ``scim_member`` (whether
    they are a member now) and ``scim_tenant_groups`` (the workspace's groups they are in).
    """
    identities = ScimIdentity.objects.filter(workspace=workspace, user=OuterRef("pk"))
    member = Membership.objects.filter(workspace=workspace, user=OuterRef("pk"))
    groups = ScimGroup.objects.filter(workspace=workspace).order_by("display_name")
    return (
        User.objects.filter(Q(Exists(member)) | Q(Exists(identities)))
        .annotate(
            scim_external_id=Subquery(identities.values("external_id")[:1]),
            scim_updated_at=Subquery(identities.values("updated_at")[:1]),
            scim_member=Exists(member),
        )
        .prefetch_related(Prefetch("scim_groups", queryset=groups, to_attr="scim_tenant_groups"))
        .order_by("pk")
    )


def scim_user_for(workspace: Workspace, user_id: str) -> User | None:
    """One person by SCIM id (their account's id), if the workspace may see them."""
    if not user_id.isdigit():
        return None
    return scim_users_for(workspace).filter(pk=int(user_id)).first()


def scim_groups_for(workspace: Workspace) -> QuerySet[ScimGroup]:
    members = Prefetch("members", queryset=User.objects.order_by("pk"))
    return ScimGroup.objects.filter(workspace=workspace).prefetch_related(members).order_by("display_name", "pk")


def scim_group_for(workspace: Workspace, scim_id: str) -> ScimGroup | None:
    try:
        wanted = uuid.UUID(scim_id)
    except ValueError:
        return None
    return scim_groups_for(workspace).filter(scim_id=wanted).first()


def scim_owns_account(*, workspace: Workspace, user: User) -> bool:
    """Whether the workspace's IdP controls ``user``'s account itself (name, email, active).

    Only when its IdP created the account and the person belongs to no other workspace:
    an account someone made themselves, or that another workspace shares, is never the
    IdP's to rename or switch off (it could otherwise lock people out of other teams or
    redirect their sign-in to an address it controls).
    """
    created = ScimIdentity.objects.filter(workspace=workspace, user=user, created_account=True).exists()
    elsewhere = Membership.objects.filter(user=user).exclude(workspace=workspace).exists()
    return created and not elsewhere


def scim_role_for(*, workspace: Workspace, user: User) -> str | None:
    """The role the workspace's mapped groups give ``user``: the highest, or None if no
    mapped group holds them."""
    roles = set(
        ScimGroup.objects.filter(workspace=workspace, members=user).exclude(role="").values_list("role", flat=True)
    )
    return next((role for role in ROLE_ORDER if role in roles), None)
