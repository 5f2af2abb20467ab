"""The live deploy console: one WebSocket per instance page.

``/ws/w/<slug>/instances/<id>/console/``. The access gate decides as everywhere: outsiders
(not signed in, not a member, another workspace's instance, a Member watching an instance
they did not ask for) get the connection closed, as other pages answer 404. An admitted
browser joins the instance's group (``apps.hosting.console``), then gets a snapshot: the
status and the last 50 log lines (masked) with the cursor they end at; then every event the
tasks publish. It only listens: anything the browser sends is ignored.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import Http404

from apps.hosting import console, selectors
from apps.hosting.models import Instance
from apps.rbac.access import Access, RoleRequired, workspace_for
from apps.rbac.roles import Capability

CLOSE_REFUSED = 4404  # an application close code: "no such page for you"


def _admit(user, slug: str, instance_id: int) -> tuple[Access, Instance] | None:
    """Who watches which instance, or None when the gate says no."""
    try:
        access = workspace_for(user=user, slug=slug, capability=Capability.REQUEST_SERVER)
    except (Http404, RoleRequired):
        return None
    instance = Instance.objects.filter(pk=instance_id, workspace=access.workspace).first()
    if instance is None or not selectors.can_watch(access=access, instance=instance):
        return None
    return access, instance


def _snapshot(access: Access, instance: Instance) -> dict[str, Any]:
    instance.refresh_from_db()
    logs = selectors.instance_logs(access=access, instance=instance)
    return {**console.status_event(instance), "kind": "snapshot", "lines": logs.lines, "cursor": logs.cursor}


class InstanceConsole(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        kwargs = self.scope["url_route"]["kwargs"]
        self.group = None
        user = self.scope.get("user")
        admitted = None
        if user is not None and user.is_authenticated:
            admitted = await database_sync_to_async(_admit)(user, kwargs["slug"], int(kwargs["instance_id"]))
        if admitted is None:
            await self.close(code=CLOSE_REFUSED)
            return
        access, instance = admitted
        # Join before the snapshot is read, so no event falls between the two (a line in
        # both is dropped by the browser by its cursor).
        self.group = console.group_name(instance.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json(await database_sync_to_async(_snapshot)(access, instance))

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The console only listens."""

    async def instance_event(self, message: dict[str, Any]) -> None:
        await self.send_json(message["event"])
