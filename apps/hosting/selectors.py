"""Reads for hosted servers."""

from __future__ import annotations

from apps.core import crypto
from apps.gateway.selectors import WAITING_CAP
from apps.hosting.models import AllowedImage, Instance
from apps.hosting.runtimes import LogChunk, runtime_for_settings
from apps.hosting.services import mask
from apps.rbac.access import Access
from apps.rbac.roles import Capability

UNREADABLE = (
    "(Its output is hidden: its credentials cannot be decrypted with MCPNEST_ENCRYPTION_KEYS, so they could "
    "not be masked in it. Put the key they were encrypted with back in the list.)"
)


def instances_for(*, access: Access):
    """Owners and Admins see every instance; a Member the ones they asked for (as with servers)."""
    access.require(Capability.REQUEST_SERVER)
    instances = Instance.objects.filter(workspace=access.workspace).select_related("image", "created_by")
    if not access.can(Capability.MANAGE_SERVERS):
        instances = instances.filter(created_by=access.user)
    return instances.order_by("-created_at")


def requests_waiting(workspace) -> int:
    """Members' requests waiting for an Owner's or Admin's decision: one query, no COUNT (at
    most WAITING_CAP ids are read; the badge says 99+ from 100)."""
    requested = Instance.objects.filter(workspace=workspace, status=Instance.Status.REQUESTED).order_by()
    return len(requested.values_list("pk", flat=True)[:WAITING_CAP])


def catalog():
    """The servers a workspace may run."""
    return AllowedImage.objects.order_by("-verified", "name")


def can_watch(*, access: Access, instance: Instance) -> bool:
    """Owners and Admins watch every instance of their workspace; a Member the ones they asked for."""
    if instance.workspace_id != access.workspace.pk:
        return False
    return access.can(Capability.MANAGE_SERVERS) or (
        instance.created_by_id is not None and instance.created_by_id == access.user.pk
    )


def instance_logs(*, access: Access, instance: Instance, lines: int = 50) -> LogChunk:
    """Its last output lines, credential values masked, and the log cursor they end at."""
    access.require(Capability.REQUEST_SERVER)
    if not can_watch(access=access, instance=instance) or not instance.runtime_id:
        return LogChunk([], 0)
    try:
        env = instance.get_env()
    except crypto.DecryptionError:
        # Without the values there is nothing to mask them with: show nothing rather than them.
        return LogChunk([UNREADABLE], 0)
    chunk = runtime_for_settings().tail(instance.runtime_id, lines)
    return LogChunk([mask(line, env) for line in chunk.lines], chunk.cursor)
