"""The access gate. Every portal view, API endpoint and admin action asks here.

Missing and forbidden look the same from outside (404), so workspace slugs don't leak to
people who are not members. A member already knows the workspace, so a page their role
does not reach answers 403 and says which role it needs (``RoleRequired``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404

from apps.core.errors import Forbidden, RuleViolation
from apps.rbac.roles import ASSIGNABLE, Capability, Role, role_allows, roles_with
from apps.workspaces.models import Membership, Workspace

if TYPE_CHECKING:
    from apps.accounts.models import User


@dataclass(frozen=True)
class Access:
    """Who is acting in which workspace, with which role."""

    workspace: Workspace
    user: User
    role: str | None
    membership: Membership | None

    def can(self, capability: Capability) -> bool:
        return role_allows(self.role, capability)

    def require(self, capability: Capability) -> None:
        """Inside a workspace the actor can see: a missing capability is a clear refusal."""
        if not self.can(capability):
            raise PermissionDenied(capability)


class PermissionDenied(Forbidden):
    def __init__(self, capability: Capability):
        self.capability = capability
        super().__init__(f"Your role in this workspace does not allow this ({capability.value}).")


class RoleRequired(DjangoPermissionDenied):
    """A member reached a page of their workspace that their role does not open.

    A Django ``PermissionDenied`` (403): the portal renders its message; elsewhere Django's
    403 handler answers.
    """

    def __init__(self, access: Access, capability: Capability):
        self.access = access
        self.capability = capability
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """E.g. "This page is for the workspace's Owners and Admins; you are a Member." """
        *others, last = [f"{role.label}s" for role in roles_with(self.capability)]
        who = f"{', '.join(others)} and {last}" if others else last
        label = Role(self.access.role).label
        article = "an" if label[0] in "AEIOU" else "a"
        return f"This page is for the workspace's {who}; you are {article} {label}."


def effective_role(*, user: User, workspace: Workspace) -> tuple[str | None, Membership | None]:
    if not user.is_authenticated or not user.is_active:
        return None, None
    membership = Membership.objects.filter(workspace=workspace, user=user).first()
    if membership is not None:
        return membership.role, membership
    # Platform operators (superusers) act with Owner rights; they can do so in admin anyway.
    if user.is_superuser:
        return Role.OWNER, None
    return None, None


def access_for(*, user: User, workspace: Workspace) -> Access:
    role, membership = effective_role(user=user, workspace=workspace)
    return Access(workspace=workspace, user=user, role=role, membership=membership)


def workspace_for(*, user: User, slug: str, capability: Capability = Capability.VIEW_WORKSPACE) -> Access:
    """Load a workspace by slug for ``user`` if they hold ``capability`` there.

    Raises ``Http404`` when it does not exist or ``user`` has no role in it, and
    ``RoleRequired`` (403) when ``user`` is in it with a role that lacks ``capability``.
    """
    workspace = Workspace.objects.active().filter(slug=slug).first()
    if workspace is None:
        raise Http404("No such workspace.")
    access = access_for(user=user, workspace=workspace)
    if access.role is None:
        raise Http404("No such workspace.")
    if not access.can(capability):
        raise RoleRequired(access, capability)
    return access


def permits(*, user: User, workspace: Workspace, capability: Capability) -> bool:
    return access_for(user=user, workspace=workspace).can(capability)


def check_role_change(*, actor_role: str | None, target_role: str, new_role: str | None) -> None:
    """Rules on changing (``new_role``) or removing (``new_role=None``) a member.

    An Admin manages Members only (and may promote one to Admin); Owners and Admins are
    managed by Owners.
    """
    if not role_allows(actor_role, Capability.MANAGE_MEMBERS):
        raise PermissionDenied(Capability.MANAGE_MEMBERS)
    if target_role != Role.MEMBER and not role_allows(actor_role, Capability.MANAGE_PRIVILEGED):
        raise RuleViolation(f"Only an Owner can change or remove an {Role(target_role).label}.")
    if new_role is not None and new_role not in ASSIGNABLE.get(actor_role, frozenset()):
        raise RuleViolation(f"Only an Owner can make someone an {Role(new_role).label}.")


def platform_access(workspace: Workspace) -> Access:
    """The platform's own background work on what a person already authorised and had
    audited (a hosted instance's upstream joining the gateway when its deployment
    completes, and leaving it when it fails or ends). Owner rights; audit rows show no
    person. Only the callers listed in tests/core/test_layering.py may use it."""
    return Access(workspace=workspace, user=AnonymousUser(), role=Role.OWNER, membership=None)
