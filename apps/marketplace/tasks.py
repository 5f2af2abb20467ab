"""Marketplace tasks: thin, they call the services."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from apps.marketplace import services
from apps.marketplace.services.curation import trending_refresh
from apps.marketplace.services.github import github_enrich


@shared_task(name="apps.marketplace.tasks.registry_index", time_limit=3600, soft_time_limit=3500)
def registry_index(full: bool = False) -> dict:
    """The registry at MCPNEST_REGISTRY_URL: what changed since the last run (beat: hourly)."""
    run = services.registry_index(url=settings.MCPNEST_REGISTRY_URL, full=full)
    return {"run": run.pk, "status": run.status, "written": run.written, "skipped": run.skipped}


@shared_task(name="apps.marketplace.tasks.github_enrich", time_limit=30 * 60, soft_time_limit=25 * 60)
def github_enrich_task(limit: int = 500) -> dict:
    """Up to ``limit`` repositories due a refresh (beat: hourly). 3 conditional requests
    each: 1,500 an hour at most, within an authenticated token's 5,000; without a token
    (60 an hour) a run stops at the limit and postpones the rest until its reset."""
    run = github_enrich(limit=limit)
    return {"due": run.due, "changed": run.changed, "failed": run.failed, "postponed": run.postponed}


@shared_task(name="apps.marketplace.tasks.trending_refresh", time_limit=10 * 60, soft_time_limit=9 * 60)
def trending_refresh_task() -> int:
    """Weekly installs and the decayed trending sum, for every server (beat: every 15 minutes)."""
    return trending_refresh()
