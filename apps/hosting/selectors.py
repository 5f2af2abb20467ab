"""Reads for hosted servers."""

from __future__ import annotations

from apps.hosting.models import Instance
from apps.hosting.runtimes import runtime_for_settings
from apps.hosting.services import mask
from apps.rbac.access import Access
from apps.rbac.roles import Capability


def instances_for(*, access: Access):
    access.require(Capability.VIEW_WORKSPACE)
    return Instance.objects.filter(workspace=access.workspace).select_related("image").order_by("-created_at")


def instance_logs(*, access: Access, instance: Instance, lines: int = 50) -> list[str]:
    """Its last output lines, credential values masked."""
    access.require(Capability.MANAGE_SERVERS)
    if instance.workspace_id != access.workspace.pk or not instance.runtime_id:
        return []
    env = instance.get_env()
    return [mask(line, env) for line in runtime_for_settings().logs(instance.runtime_id, lines)]
