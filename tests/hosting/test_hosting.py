"""Hosted servers with the ProcessRuntime: alice (acme's Owner) deploys the notes server,
its tools answer through acme's gateway, and terminating it takes it away again."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import timedelta
from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.core.errors import RuleViolation
from apps.gateway.models import ToolPin, UpstreamServer
from apps.hosting import runtimes, services, tasks
from apps.hosting.models import AllowedImage, Instance
from apps.hosting.runtimes import ProcessRuntime, runtime_for_settings
from apps.hosting.services import instance_deploy, instance_health_sweep, instance_reconcile, instance_terminate
from apps.rbac.access import PermissionDenied
from tests.factories import UserFactory
from tests.gateway.test_transport import ACCEPT, URL, rpc

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "s3cr3t-value-4242"


async def _call(client, headers, method, id, **params):
    response = await client.post(URL, json=rpc(method, id=id, **params), headers=headers)
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
        return events[-1]
    return response.json()


async def test_deploy_serves_tools_through_the_gateway_then_terminate(cast, notes, issue, asgi_client, process_runtime):
    instance = await sync_to_async(lambda: instance_deploy(access=cast.access(cast.alice), image=notes, env={}))()

    assert (instance.status, instance.healthy) == (Instance.Status.RUNNING, True), instance.error
    assert process_runtime.alive(instance.runtime_id)
    server = await UpstreamServer.objects.aget(pk=instance.upstream_server_id)
    assert (server.slug, server.url) == (f"h-notes-{instance.pk}", f"http://127.0.0.1:{instance.host_port}/mcp")
    assert server.is_live
    pinned = {name async for name in ToolPin.objects.filter(server=server).values_list("tool_name", flat=True)}
    assert pinned == {"add_note", "list_notes", "search_notes"}

    token = await sync_to_async(issue)(cast.carol)  # a Member uses it
    async with asgi_client(token) as client:
        hello = rpc("initialize", protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "t"})
        session = (await client.post(URL, json=hello, headers=ACCEPT)).headers["mcp-session-id"]
        headers = {**ACCEPT, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
        listed = await _call(client, headers, "tools/list", 2)
        add, search = f"notes-{instance.pk}_add_note", f"notes-{instance.pk}_search_notes"
        await _call(client, headers, "tools/call", 3, name=add, arguments={"text": "buy milk"})
        found = await _call(client, headers, "tools/call", 4, name=search, arguments={"query": "MILK"})
    # Namespaced by instance: two notes servers in one workspace never collide.
    assert {tool["name"] for tool in listed["result"]["tools"]} == {
        f"notes-{instance.pk}_{name}" for name in ("add_note", "list_notes", "search_notes")
    }
    assert "buy milk" in found["result"]["content"][0]["text"]

    stopped = await sync_to_async(lambda: instance_terminate(access=cast.access(cast.bob), instance=instance))()

    assert stopped.status == Instance.Status.STOPPED
    assert not process_runtime.alive(instance.runtime_id)
    assert not await UpstreamServer.objects.filter(slug=server.slug).aexists()
    actions = [
        a
        async for a in AuditEvent.objects.filter(target_type="instance").order_by("pk").values_list("action", flat=True)
    ]
    assert actions == ["instance.deployed", "instance.terminated"]


def test_a_missing_required_credential_is_named(cast, keyed):
    with pytest.raises(ValidationError, match="NOTES_API_KEY"):
        instance_deploy(access=cast.access(cast.alice), image=keyed, env={"NOTES_API_KEY": " "})
    with pytest.raises(ValidationError, match="takes no LD_PRELOAD"):
        instance_deploy(access=cast.access(cast.alice), image=keyed, env={"NOTES_API_KEY": "k", "LD_PRELOAD": "x"})
    assert not Instance.objects.exists()


def test_a_server_that_dies_without_its_credential_fails_naming_it(cast, keyed):
    keyed.required_env_vars = [{**keyed.required_env_vars[0], "required": False}]  # let it reach the runtime
    keyed.save()

    instance = instance_deploy(access=cast.access(cast.alice), image=keyed, env={})

    assert instance.status == Instance.Status.FAILED
    assert not instance.healthy
    assert "NOTES_API_KEY" in instance.error
    assert not UpstreamServer.objects.exists()
    assert AuditEvent.objects.filter(action="instance.failed", target_id=str(instance.pk)).exists()


def test_the_plan_limit_refuses_the_fourth_on_team(cast, notes):
    for status in (Instance.Status.PENDING, Instance.Status.STARTING, Instance.Status.RUNNING):
        Instance.objects.create(workspace=cast.acme, image=notes, status=status)
    Instance.objects.create(workspace=cast.acme, image=notes, status=Instance.Status.STOPPED)  # does not count

    with pytest.raises(RuleViolation, match="Team plan runs at most 3"):
        instance_deploy(access=cast.access(cast.alice), image=notes, env={})
    assert Instance.objects.count() == 4


def test_only_owners_and_admins_of_the_workspace_deploy_and_terminate(cast, notes):
    with pytest.raises(PermissionDenied):
        instance_deploy(access=cast.access(cast.dave, cast.acme), image=notes, env={})  # outsider
    asked = instance_deploy(access=cast.access(cast.carol), image=notes, env={})  # a Member only asks
    assert asked.status == Instance.Status.REQUESTED and not asked.runtime_id
    with pytest.raises(PermissionDenied):
        instance_terminate(access=cast.access(cast.carol), instance=asked)
    asked.delete()
    theirs = Instance.objects.create(workspace=cast.acme, image=notes, status=Instance.Status.RUNNING)
    with pytest.raises(RuleViolation, match="another workspace"):
        instance_terminate(access=cast.access(cast.dave, cast.globex), instance=theirs)
    assert not Instance.objects.exclude(pk=theirs.pk).exists()
    assert Instance.objects.get(pk=theirs.pk).status == Instance.Status.RUNNING


def test_the_health_sweep_fails_an_instance_whose_process_died(cast, notes, process_runtime):
    instance = instance_deploy(access=cast.access(cast.alice), image=notes, env={})
    assert instance.status == Instance.Status.RUNNING, instance.error
    assert instance_health_sweep() == 0

    os.killpg(int(instance.runtime_id), signal.SIGKILL)
    deadline = time.monotonic() + 5
    while process_runtime.alive(instance.runtime_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert instance_health_sweep() == 1

    instance.refresh_from_db()
    assert (instance.status, instance.healthy) == (Instance.Status.FAILED, False)
    assert "exited" in instance.error
    assert UpstreamServer.objects.get(slug=instance.server_slug).enabled is False
    assert instance_health_sweep() == 0  # once
    # Terminating a failed instance still cleans up: stopped, its upstream gone.
    assert instance_terminate(access=cast.access(cast.alice), instance=instance).status == Instance.Status.STOPPED
    assert not UpstreamServer.objects.filter(slug=instance.server_slug).exists()


def test_credentials_never_show(cast, keyed, client):
    instance = instance_deploy(access=cast.access(cast.alice), image=keyed, env={"NOTES_API_KEY": SECRET})
    assert instance.status == Instance.Status.RUNNING, instance.error
    assert SECRET not in instance.env_encrypted
    assert instance.get_env() == {"NOTES_API_KEY": SECRET}
    assert SECRET not in str(instance) and SECRET not in repr(instance)
    audit = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert "NOTES_API_KEY" in audit and SECRET not in audit
    assert services.mask(f"key={SECRET}", instance.get_env()) == f"key={services.MASK}"

    operator = UserFactory(email="root@example.com", is_staff=True, is_superuser=True)
    client.force_login(operator)
    for url in (f"/admin/hosting/instance/{instance.pk}/change/", "/admin/hosting/instance/"):
        page = client.get(url)
        assert page.status_code == 200
        assert SECRET not in page.content.decode()
    assert "NOTES_API_KEY" in client.get(f"/admin/hosting/instance/{instance.pk}/change/").content.decode()


def test_the_operator_commands(cast, notes):
    out = StringIO()
    call_command("deploy", "acme", "notes", "--profile", "medium", "--wait", stdout=out)
    instance = Instance.objects.get(pk=int(out.getvalue().strip()))
    assert (instance.status, instance.profile) == (Instance.Status.RUNNING, "medium")

    out = StringIO()
    call_command("instances", "acme", stdout=out)
    assert f"{instance.pk}\tnotes\tmedium\trunning\thealthy" in out.getvalue()

    out = StringIO()
    call_command("terminate", "acme", str(instance.pk), stdout=out)
    assert out.getvalue().strip() == f"Instance {instance.pk}: stopped."

    others = [instance_deploy(access=cast.access(cast.alice), image=notes, env={}) for _ in range(2)]
    out = StringIO()
    call_command("terminate", "acme", "--all", stdout=out)  # what make run does when it stops
    assert out.getvalue().split("\n")[:2] == [f"Instance {i.pk}: stopped." for i in sorted(others, key=lambda i: -i.pk)]
    assert not Instance.objects.counting_against_plan().exists()
    with pytest.raises(CommandError, match="Name one INSTANCE_ID, or --all"):
        call_command("terminate", "acme")


def test_the_runtime_is_chosen_by_a_setting(settings, monkeypatch, tmp_path):
    assert isinstance(runtime_for_settings(), ProcessRuntime)
    settings.MCPNEST_HOSTING_RUNTIME = "docker"
    monkeypatch.setattr(runtimes, "_docker_runtime", None)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(ImproperlyConfigured, match="no Docker engine answers"):
        runtime_for_settings()
    settings.MCPNEST_HOSTING_RUNTIME = "kubernetes"
    with pytest.raises(ImproperlyConfigured, match="must be process or docker"):
        runtime_for_settings()


def test_a_redelivered_deploy_starts_nothing_twice(cast, notes, process_runtime):
    instance = instance_deploy(access=cast.access(cast.alice), image=notes, env={})
    services.instance_deploy_run(instance_id=instance.pk)
    assert list(process_runtime._children) == [int(instance.runtime_id)]
    assert AllowedImage.objects.get(slug="notes").instances.count() == 1


def test_a_deploy_whose_worker_died_is_failed_by_reconcile(cast, notes, process_runtime):
    """The worker was killed between starting the bridge and recording it running: the row
    stays "starting" until reconcile, past the task's time limit, fails it and stops the bridge."""
    instance = Instance.objects.create(workspace=cast.acme, image=notes, status=Instance.Status.STARTING)
    runtime_id, port = process_runtime.start(instance, {})
    Instance.objects.filter(pk=instance.pk).update(
        runtime_id=runtime_id,
        host_port=port,
        started_at=timezone.now() - timedelta(seconds=tasks.DEPLOY_TIME_LIMIT - 5),
    )
    assert instance_reconcile() == (0, 0)  # it may still be deploying
    Instance.objects.filter(pk=instance.pk).update(
        started_at=timezone.now() - timedelta(seconds=tasks.DEPLOY_TIME_LIMIT + 5)
    )
    assert instance_reconcile() == (0, 1)
    instance.refresh_from_db()
    assert instance.status == Instance.Status.FAILED and "worker running it stopped" in instance.error
    assert not process_runtime.alive(runtime_id)
    assert instance_reconcile() == (0, 0)
