"""Marketplace tasks: thin, they call ``apps.marketplace.services``."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from apps.marketplace import services


@shared_task(name="apps.marketplace.tasks.registry_index", time_limit=3600, soft_time_limit=3500)
def registry_index(full: bool = False) -> dict:
    """The registry at MCPNEST_REGISTRY_URL: what changed since the last run (beat: hourly)."""
    run = services.registry_index(url=settings.MCPNEST_REGISTRY_URL, full=full)
    return {"run": run.pk, "status": run.status, "written": run.written, "skipped": run.skipped}
