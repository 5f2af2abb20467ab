"""Server checks as Celery tasks: thin, they take ids and call ``apps.gateway.services``.

A check contacts an upstream, so it never runs inside a request or a transaction: the
portal, the admin and the API record what was asked on the server and queue
``server_check_run`` on commit; beat runs ``check_servers``, which gives up checks stuck
under way and queues a scheduled ``server_check`` of every live server (CELERY_BEAT_SCHEDULE).
"""

from __future__ import annotations

from celery import shared_task

from apps.gateway import services
from apps.gateway.models import UpstreamServer

# How often beat checks every live server; a check not started by then is dropped (the next replaces it).
CHECK_EVERY_SECONDS = 15 * 60


@shared_task(name="apps.gateway.tasks.server_check_run", time_limit=90, soft_time_limit=75)
def server_check_run(server_id: int) -> None:
    """Carry out the check or approval queued on one server (``services.server_check_run``).

    Safe to deliver twice: the service claims the queued check first, and a second
    delivery finds nothing queued.
    """
    services.server_check_run(server_id=server_id)


@shared_task(name="apps.gateway.tasks.server_check", time_limit=90, soft_time_limit=75)
def server_check(server_id: int, *_earlier_arguments: object) -> None:
    """A scheduled check of one server, for the system.

    Messages queued before checks asked for by people became ``server_check_run`` also
    carry an actor and an IP address: such a check still runs, as a scheduled one.
    """
    server = UpstreamServer.objects.select_related("workspace").filter(pk=server_id).first()
    if server is None:
        return  # removed since the check was queued
    services.server_check(server=server)


@shared_task(name="apps.gateway.tasks.check_servers", time_limit=60, soft_time_limit=50)
def check_servers() -> int:
    """Give up stuck checks, then queue a check of every approved, enabled server of every
    active workspace, except those a person's check is already under way on."""
    services.server_check_sweep()
    ids = list(
        UpstreamServer.objects.filter(
            status=UpstreamServer.Status.APPROVED, enabled=True, workspace__deleted_at__isnull=True
        )
        .exclude(check_state__in=[UpstreamServer.CheckState.QUEUED, UpstreamServer.CheckState.RUNNING])
        .values_list("pk", flat=True)
    )
    for server_id in ids:
        server_check.apply_async((server_id,), expires=CHECK_EVERY_SECONDS)
    return len(ids)
