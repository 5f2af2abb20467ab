"""Template helpers for the portal."""

from __future__ import annotations

from django import template

from apps.gateway import selectors
from apps.hosting import selectors as hosting_selectors
from apps.rbac.access import Access
from apps.rbac.roles import Capability

register = template.Library()


@register.filter
def can(access: Access, capability: str) -> bool:
    """``{% if access|can:"members.view" %}``; a misspelt capability fails loudly."""
    return access.can(Capability(capability))


@register.simple_tag
def approvals_waiting(access: Access) -> int:
    """Server requests and tool definitions waiting for this member to decide (0 if they cannot)."""
    servers, pins = access.can(Capability.MANAGE_SERVERS), access.can(Capability.MANAGE_ALLOWLISTS)
    if not (servers or pins):
        return 0
    return selectors.approvals_waiting(access.workspace, servers=servers, pins=pins)


@register.simple_tag
def deployments_waiting(access: Access) -> int:
    """Members' hosted-server requests waiting for this member to decide (0 if they cannot)."""
    if not access.can(Capability.MANAGE_SERVERS):
        return 0
    return hosting_selectors.requests_waiting(access.workspace)
