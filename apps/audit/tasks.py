"""Periodic audit jobs (scheduled by Celery beat; see CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from apps.audit.services import retention_apply


@shared_task(name="apps.audit.tasks.apply_retention", time_limit=60 * 30, soft_time_limit=60 * 25)
def apply_retention() -> int:
    from apps.workspaces.models import Workspace

    deleted = 0
    for workspace in Workspace.objects.all().iterator():
        deleted += retention_apply(workspace=workspace)
    return deleted
