"""The live deploy console over a real WebSocket stack: the routing, the session
authentication and the channel layer the settings name (Redis when REDIS_URL is set),
fed by the real deploy task running the bridge (ProcessRuntime)."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import Client

from apps.hosting.consumers import CLOSE_REFUSED
from apps.hosting.models import Instance
from apps.hosting.services import MASK, instance_approve, instance_deploy, instance_terminate
from mcpnest.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "console-secret-31337"


def _application():
    return AuthMiddlewareStack(URLRouter(websocket_urlpatterns))


def _cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def _open(user, slug: str, instance_id: int) -> tuple[WebsocketCommunicator, bool, int | None]:
    headers = [(b"cookie", await sync_to_async(_cookie)(user))] if user is not None else []
    communicator = WebsocketCommunicator(
        _application(), f"/ws/w/{slug}/instances/{instance_id}/console/", headers=headers
    )
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


async def _until(communicator: WebsocketCommunicator, done, timeout: float = 20.0) -> list[dict]:
    """Messages until ``done(message)`` is true."""
    seen = []
    async with asyncio.timeout(timeout):
        while True:
            message = await communicator.receive_json_from(timeout=timeout)
            seen.append(message)
            if done(message):
                return seen


async def test_the_console_follows_an_approved_request_to_running_and_healthy(cast, notes):
    asked = await sync_to_async(lambda: instance_deploy(access=cast.access(cast.carol), image=notes, env={}))()
    communicator, connected, _ = await _open(cast.carol, "acme", asked.pk)  # the Member who asked
    assert connected
    snapshot = await communicator.receive_json_from(timeout=5)
    assert (snapshot["kind"], snapshot["status"], snapshot["settled"]) == ("snapshot", "requested", False)

    # Approval runs the deploy task in-process (no broker in tests), publishing as it goes.
    approving = asyncio.create_task(
        sync_to_async(lambda: instance_approve(access=cast.access(cast.bob), instance=asked))()
    )
    seen = await _until(communicator, lambda m: m["kind"] == "status" and m["status"] == "running")
    running = await approving
    await communicator.disconnect()

    assert running.status == Instance.Status.RUNNING, running.error
    statuses = [m["status"] for m in seen if m["kind"] == "status"]
    assert statuses == ["pending", "starting", "running"]
    assert seen[-1]["healthy"] is True
    lines = [line for m in seen if m["kind"] == "log" for line in m["lines"]]
    assert any("bridge" in line for line in lines), lines  # the bridge's own start-up output, live
    cursors = [m["cursor"] for m in seen if m["kind"] == "log"]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)


async def test_a_late_browser_gets_the_state_and_last_lines_masked_then_the_end(cast, keyed, process_runtime):
    instance = await sync_to_async(
        lambda: instance_deploy(access=cast.access(cast.alice), image=keyed, env={"NOTES_API_KEY": SECRET})
    )()
    assert instance.status == Instance.Status.RUNNING, instance.error
    # Servers print their configuration more often than they should: the console masks it.
    with process_runtime._log_path(instance.runtime_id).open("a") as log:
        log.write(f"connecting with key {SECRET}\n")

    communicator, connected, _ = await _open(cast.bob, "acme", instance.pk)
    assert connected
    snapshot = await communicator.receive_json_from(timeout=5)
    assert (snapshot["status"], snapshot["healthy"], snapshot["settled"]) == ("running", True, False)
    assert snapshot["lines"][-1] == f"connecting with key {MASK}"
    assert SECRET not in str(snapshot)

    await sync_to_async(lambda: instance_terminate(access=cast.access(cast.alice), instance=instance))()
    seen = await _until(communicator, lambda m: m["kind"] == "status" and m["settled"])
    await communicator.disconnect()
    assert [m["status"] for m in seen if m["kind"] == "status"] == ["stopping", "stopped"]


async def test_outsiders_are_turned_away(cast, notes):
    mine = await sync_to_async(lambda: instance_deploy(access=cast.access(cast.carol), image=notes, env={}))()
    others = await sync_to_async(Instance.objects.create)(workspace=cast.acme, image=notes, created_by=cast.alice)
    refused = [
        (None, "acme", mine.pk),  # not signed in
        (cast.dave, "acme", mine.pk),  # not a member of acme
        (cast.dave, "globex", mine.pk),  # his workspace, acme's instance
        (cast.carol, "acme", others.pk),  # a Member, someone else's instance
        (cast.alice, "acme", 999_999),  # no such instance
    ]
    for user, slug, instance_id in refused:
        communicator, connected, code = await _open(user, slug, instance_id)
        assert (connected, code) == (False, CLOSE_REFUSED), (user, slug, instance_id)
        await communicator.disconnect()
