"""Template helpers for the portal."""

from __future__ import annotations

from django import template

from apps.rbac.access import Access
from apps.rbac.roles import Capability

register = template.Library()


@register.filter
def can(access: Access, capability: str) -> bool:
    """``{% if access|can:"members.view" %}``; a misspelt capability fails loudly."""
    return access.can(Capability(capability))
