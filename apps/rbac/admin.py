"""Admin actions through the RBAC gate: the admin's counterpart of ``workspace_view``.

Lives beside the gate (``apps.rbac.access``) rather than in ``apps.core``, which holds
framework helpers only and imports no domain app. No models here: the admin registers
nothing from this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest

from apps.core.admin import error_text
from apps.core.errors import RuleViolation
from apps.core.http import client_ip
from apps.rbac.access import Access, access_for
from apps.rbac.roles import Capability
from apps.workspaces.models import Workspace


def act_in_workspaces(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    objects: Iterable[Any],
    *,
    capability: Capability,
    workspace: Callable[[Any], Workspace],
    act: Callable[[Access, Any, str | None], bool | None],
    done: str,
) -> None:
    """Run a service on each selected object the acting staff user may act on.

    Access is decided per workspace by the RBAC gate, exactly as in the portal: a member
    acts with their role; a superuser who is not a member acts as Owner. Each object is
    its own transaction, and every refusal is reported by name. ``act`` returns False
    when there was nothing to do (e.g. already revoked).
    """
    changed: list[str] = []
    unchanged: list[str] = []
    refused: list[str] = []
    ip = client_ip(request)
    for obj in objects:
        access = access_for(user=request.user, workspace=workspace(obj))
        if not access.can(capability):
            refused.append(f"{obj} (your role in {access.workspace.slug} does not allow {capability.value})")
            continue
        try:
            with transaction.atomic():
                result = act(access, obj, ip)
        except (RuleViolation, ValidationError) as exc:
            refused.append(f"{obj} ({error_text(exc)})")
            continue
        (unchanged if result is False else changed).append(str(obj))
    if changed:
        modeladmin.message_user(request, f"{done}: {', '.join(changed)}.", messages.SUCCESS)
    if unchanged:
        modeladmin.message_user(request, f"Nothing to do for: {', '.join(unchanged)}.", messages.INFO)
    if refused:
        modeladmin.message_user(request, f"Refused: {'; '.join(refused)}.", messages.ERROR)
