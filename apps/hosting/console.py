"""The deploy console's feed: what the tasks tell the browsers watching an instance.

The worker that deploys, terminates or sweeps an instance publishes each log line (masked)
and each status change to the instance's group on the channel layer (Redis in production,
in-memory embedded); ``apps.hosting.consumers.InstanceConsole`` forwards them to the
WebSockets in the group. A browser that connects late, or reconnects, first gets a
snapshot (status and the last lines, with the log cursor they end at) and ignores lines at
or before that cursor, so nothing shows twice.

Publishing never fails a task: with the channel layer down the deploy goes on, and the
next snapshot tells the browser where things stand.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from apps.hosting.models import Instance

logger = logging.getLogger(__name__)

EVENT_TYPE = "instance.event"  # the consumer's handler: InstanceConsole.instance_event


def group_name(instance_id: int) -> str:
    return f"hosting.instance.{instance_id}"


def status_event(instance: Instance) -> dict[str, Any]:
    return {
        "kind": "status",
        "status": instance.status,
        "status_label": instance.get_status_display(),
        "healthy": instance.healthy,
        "settled": instance.status in instance.SETTLED,
        "error": instance.error,
    }


def log_event(lines: list[str], cursor: int) -> dict[str, Any]:
    return {"kind": "log", "lines": lines, "cursor": cursor}


def publish(instance_id: int, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group_name(instance_id), {"type": EVENT_TYPE, "event": event})
    except Exception:  # the console is a view on the deploy; the deploy goes on without it
        logger.warning("could not publish instance %s's %s event", instance_id, event.get("kind"), exc_info=True)


def publish_status(instance_id: int) -> None:
    """The instance's status as it is now in the database."""
    instance = Instance.objects.filter(pk=instance_id).first()
    if instance is not None:
        publish(instance_id, status_event(instance))
