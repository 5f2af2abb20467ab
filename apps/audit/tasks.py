"""Periodic audit jobs (scheduled by Celery beat; see CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from apps.audit.services import audit_heads_export, retention_apply
from apps.workspaces.models import Workspace


@shared_task(name="apps.audit.tasks.apply_retention", time_limit=60 * 30, soft_time_limit=60 * 25)
def apply_retention() -> int:
    deleted = 0
    for workspace in Workspace.objects.all().iterator():
        deleted += retention_apply(workspace=workspace)
    return deleted


@shared_task(name="apps.audit.tasks.export_heads", time_limit=60 * 5, soft_time_limit=60 * 4)
def export_heads() -> int:
    """Write every chain's signed head to MCPNEST_AUDIT_HEAD_EXPORT (see apps.audit.heads)."""
    return len(audit_heads_export())
