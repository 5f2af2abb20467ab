"""Hosted-server tasks: thin, they take ids and call ``apps.hosting.services``.

Each is safe to deliver twice (the services claim the row's state first). Deploys wait up
to MCPNEST_HOSTING_START_TIMEOUT for the instance, hence the time limits.
"""

from __future__ import annotations

from celery import shared_task

from apps.hosting import services

# A deploy never runs longer than this (the worker kills it): a row still "starting" after it
# lost its worker (services.instance_reconcile).
DEPLOY_TIME_LIMIT = 180


@shared_task(name="apps.hosting.tasks.instance_deploy_run", time_limit=DEPLOY_TIME_LIMIT, soft_time_limit=150)
def instance_deploy_run(instance_id: int) -> None:
    services.instance_deploy_run(instance_id=instance_id)


@shared_task(name="apps.hosting.tasks.instance_terminate_run", time_limit=90, soft_time_limit=75)
def instance_terminate_run(instance_id: int) -> None:
    services.instance_terminate_run(instance_id=instance_id)


@shared_task(name="apps.hosting.tasks.instance_health_sweep", time_limit=120, soft_time_limit=100)
def instance_health_sweep() -> int:
    return services.instance_health_sweep()


@shared_task(name="apps.hosting.tasks.instance_reconcile", time_limit=120, soft_time_limit=100)
def instance_reconcile() -> tuple[int, int]:
    return services.instance_reconcile()
