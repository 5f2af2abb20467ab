"""Server checks as Celery tasks: thin, they load rows and call ``apps.gateway.services``.

A check contacts an upstream, so it never runs inside a request's transaction: the portal
queues ``server_check`` on commit, and beat runs ``check_servers`` (CELERY_BEAT_SCHEDULE).
"""

from __future__ import annotations

import logging

from celery import shared_task

from apps.gateway import services
from apps.gateway.models import UpstreamServer
from apps.rbac.access import PermissionDenied, access_for

logger = logging.getLogger(__name__)

# How often beat checks every live server; a check not started by then is dropped (the next replaces it).
CHECK_EVERY_SECONDS = 15 * 60


@shared_task(name="apps.gateway.tasks.server_check", time_limit=90, soft_time_limit=75)
def server_check(server_id: int, actor_id: int | None = None, ip: str | None = None) -> None:
    """Check one server: for ``actor_id`` (their rights are checked again now), or for the system."""
    from apps.accounts.models import User

    server = UpstreamServer.objects.select_related("workspace").filter(pk=server_id).first()
    if server is None:
        return  # removed since the check was asked for
    if actor_id is None:
        services.server_check(server=server, scheduled=True)
        return
    user = User.objects.filter(pk=actor_id).first()
    if user is None:
        return
    try:
        services.server_health_check(access=access_for(user=user, workspace=server.workspace), server=server, ip=ip)
    except PermissionDenied:
        logger.info("Check of server %s dropped: %s may no longer check it", server, user.email)


@shared_task(name="apps.gateway.tasks.check_servers", time_limit=60, soft_time_limit=50)
def check_servers() -> int:
    """Queue a check of every approved, enabled server of every active workspace."""
    ids = list(
        UpstreamServer.objects.filter(
            status=UpstreamServer.Status.APPROVED, enabled=True, workspace__deleted_at__isnull=True
        ).values_list("pk", flat=True)
    )
    for server_id in ids:
        server_check.apply_async((server_id, None, None), expires=CHECK_EVERY_SECONDS)
    return len(ids)
