"""Roles and the capability matrix: the one table that says who may do what."""

from __future__ import annotations

from enum import StrEnum

from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


class Capability(StrEnum):
    VIEW_WORKSPACE = "workspace.view"
    UPDATE_WORKSPACE = "workspace.update"  # name, settings
    MANAGE_PLAN = "workspace.plan"
    DELETE_WORKSPACE = "workspace.delete"
    VIEW_MEMBERS = "members.view"
    MANAGE_MEMBERS = "members.manage"  # invite, change role, remove (Members, and promote to Admin)
    MANAGE_PRIVILEGED = "members.manage_privileged"  # change or remove Owners and Admins, make Owners
    USE_GATEWAY = "gateway.use"
    MANAGE_OWN_TOKENS = "tokens.own"  # see, create and revoke one's own member tokens
    MANAGE_TOKENS = "tokens.manage"  # everybody's tokens and workspace tokens
    MANAGE_SERVERS = "servers.manage"  # add, approve, disable upstream servers
    REQUEST_SERVER = "servers.request"
    MANAGE_ALLOWLISTS = "allowlists.manage"  # allowlists, enforcement mode, tool pins
    VIEW_AUDIT = "audit.view"


_MEMBER = {
    Capability.VIEW_WORKSPACE,
    Capability.USE_GATEWAY,
    Capability.MANAGE_OWN_TOKENS,
    Capability.REQUEST_SERVER,
}
_ADMIN = _MEMBER | {
    Capability.VIEW_MEMBERS,
    Capability.MANAGE_MEMBERS,
    Capability.MANAGE_TOKENS,
    Capability.MANAGE_SERVERS,
    Capability.MANAGE_ALLOWLISTS,
    Capability.VIEW_AUDIT,
}
_OWNER = set(Capability)

MATRIX: dict[str, frozenset[Capability]] = {
    Role.OWNER: frozenset(_OWNER),
    Role.ADMIN: frozenset(_ADMIN),
    Role.MEMBER: frozenset(_MEMBER),
}

# Roles an actor may hand out (invite with, or change a member to).
ASSIGNABLE: dict[str, frozenset[str]] = {
    Role.OWNER: frozenset({Role.OWNER, Role.ADMIN, Role.MEMBER}),
    Role.ADMIN: frozenset({Role.ADMIN, Role.MEMBER}),
    Role.MEMBER: frozenset(),
}


def role_allows(role: str | None, capability: Capability) -> bool:
    return role is not None and capability in MATRIX.get(role, frozenset())


def roles_with(capability: Capability) -> list[Role]:
    """The roles that hold ``capability``, most privileged first."""
    return [role for role in Role if capability in MATRIX[role]]
