"""Writes for hosted servers: deploy and terminate an instance, and the tasks' steps.

A person's request only records what was asked (an ``Instance`` row, pending or stopping)
and its audit row, in one transaction, and queues a task on commit. The tasks
(``apps.hosting.tasks``) start or stop the runtime, wait for the bridge's ``/healthz`` and
join or leave the workspace's gateway (``apps.gateway.services``) outside any transaction,
then record the outcome in a short transaction of their own.

Credentials are only ever: encrypted in ``Instance.env_encrypted``, and in the runtime's
environment. Audit rows name their keys, never their values; log lines and errors have the
values masked (``mask``).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.audit.events import Action
from apps.audit.services import audit_event_record
from apps.core.errors import RuleViolation
from apps.gateway import services as gateway
from apps.gateway.models import UpstreamServer
from apps.hosting import tasks
from apps.hosting.models import AllowedImage, Instance, Profile
from apps.hosting.runtimes import Runtime, RuntimeStartError, runtime_for_settings
from apps.rbac.access import Access, platform_access
from apps.rbac.roles import Capability
from apps.workspaces.models import Plan, Workspace

if TYPE_CHECKING:
    from apps.accounts.models import User

# Instances pending, starting or running per workspace, by plan.
PLAN_LIMITS = {Plan.TEAM: 3, Plan.ENTERPRISE: 20}
MASK = "••••••"


def mask(text: str, env: dict[str, str]) -> str:
    """``text`` with every credential value in ``env`` replaced by a mask."""
    for value in sorted((v for v in env.values() if v), key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def _actor(access: Access) -> User | None:
    return access.user if access.user.pk else None


def _audit(instance: Instance, actor: User | None, action: Action, ip: str | None = None, **metadata) -> None:
    audit_event_record(
        workspace=instance.workspace,
        actor=actor,
        action=action,
        target_type="instance",
        target_id=instance.pk,
        target_repr=f"{instance.image.slug}#{instance.pk}",
        metadata=metadata,
        ip=ip,
    )


def _require_instance(access: Access, instance: Instance) -> None:
    access.require(Capability.MANAGE_SERVERS)
    if instance.workspace_id != access.workspace.pk:
        raise RuleViolation("That instance belongs to another workspace.")


def instance_deploy(
    *, access: Access, image: AllowedImage, profile: str | None = None, env: dict[str, str], ip: str | None = None
) -> Instance:
    """Ask for an instance of ``image`` with credentials ``env``; a task starts it on commit.

    Owners and Admins deploy (the capability that adds servers). ``env`` may only hold the
    variables the image lists, and must give every required one.
    """
    access.require(Capability.MANAGE_SERVERS)
    env = {(key or "").strip(): value for key, value in env.items()}
    unknown = sorted(set(env) - set(image.env_keys))
    if unknown:
        raise ValidationError(
            {"env": f"{image.slug} takes no {', '.join(unknown)}; it takes: {', '.join(image.env_keys) or 'nothing'}."}
        )
    missing = [key for key in image.required_keys if not (env.get(key) or "").strip()]
    if missing:
        raise ValidationError({"env": f"{image.slug} needs {', '.join(missing)}: give a value for each."})
    profile = profile or image.default_profile
    if profile not in Profile.values:
        raise ValidationError({"profile": f"Choose one of {', '.join(Profile.values)}."})
    with transaction.atomic():
        # Locks the workspace row: two deploys at once cannot both take the last place.
        workspace = Workspace.objects.select_for_update().get(pk=access.workspace.pk)
        limit = PLAN_LIMITS.get(workspace.plan, PLAN_LIMITS[Plan.TEAM])
        used = Instance.objects.filter(workspace=workspace).counting_against_plan().count()
        if used >= limit:
            raise RuleViolation(
                f"The {Plan(workspace.plan).label} plan runs at most {limit} hosted instances per workspace "
                f"and {workspace.slug} has {used}: terminate one first."
            )
        instance = Instance(workspace=workspace, image=image, profile=profile, created_by=_actor(access))
        instance.set_env({key: value for key, value in env.items() if value})
        instance.save()
        _audit(
            instance, _actor(access), Action.INSTANCE_DEPLOYED, ip, image=image.slug, profile=profile, env=sorted(env)
        )
        transaction.on_commit(lambda: tasks.instance_deploy_run.delay(instance.pk))
    instance.refresh_from_db()  # with tasks run in-process, already running or failed
    return instance


def instance_terminate(*, access: Access, instance: Instance, ip: str | None = None) -> Instance:
    """Stop an instance and take it out of the gateway; a task does it on commit. Twice is once."""
    _require_instance(access, instance)
    with transaction.atomic():
        locked = Instance.objects.select_for_update().select_related("workspace", "image").get(pk=instance.pk)
        if locked.status in (Instance.Status.STOPPING, Instance.Status.STOPPED):
            return locked
        was = locked.status
        locked.status = Instance.Status.STOPPING
        locked.save(update_fields=["status", "updated_at"])
        _audit(locked, _actor(access), Action.INSTANCE_TERMINATED, ip, status=was)
        transaction.on_commit(lambda: tasks.instance_terminate_run.delay(locked.pk))
    locked.refresh_from_db()
    return locked


# --- The tasks' steps (no request, no transaction around them) ---------------------------


def _wait_healthy(runtime: Runtime, runtime_id: str, port: int, timeout: float) -> str:
    """'' once the bridge answers /healthz 200, else why not."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/healthz"
    while time.monotonic() < deadline:
        if not runtime.alive(runtime_id):
            return "The server exited before it was ready."
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:  # our own loopback URL
                if response.status == 200:
                    return ""
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return f"The server was not ready after {timeout:g} seconds."


def _fail(instance: Instance, reason: str, lines: list[str], env: dict[str, str]) -> None:
    """Record a failure: the reason and the last log lines (credentials masked)."""
    error = mask("\n".join([reason, *lines]), env)[-8000:]
    with transaction.atomic():
        Instance.objects.filter(pk=instance.pk).update(
            status=Instance.Status.FAILED, healthy=False, error=error, updated_at=timezone.now()
        )
        _audit(instance, None, Action.INSTANCE_FAILED, reason=reason)


def _remove_upstream(instance: Instance) -> None:
    server = UpstreamServer.objects.filter(workspace=instance.workspace, slug=instance.server_slug).first()
    if server is not None:
        gateway.server_remove(access=platform_access(instance.workspace), server=server)


def instance_deploy_run(*, instance_id: int) -> Instance | None:
    """Start a pending instance, wait until it is healthy, then add it to the gateway.

    Idempotent: only a pending instance is claimed (→ starting), so a redelivered message
    never starts a second process.
    """
    with transaction.atomic():
        instance = (
            Instance.objects.select_for_update().select_related("workspace", "image").filter(pk=instance_id).first()
        )
        if instance is None or instance.status != Instance.Status.PENDING:
            return instance
        instance.status = Instance.Status.STARTING
        instance.started_at = timezone.now()
        instance.save(update_fields=["status", "started_at", "updated_at"])
    runtime = runtime_for_settings()
    env = instance.get_env()
    try:
        runtime_id, port = runtime.start(instance, env)
    except RuntimeStartError as exc:
        _fail(instance, str(exc), [], env)
        return None
    Instance.objects.filter(pk=instance.pk).update(runtime_id=runtime_id, host_port=port)
    problem = _wait_healthy(runtime, runtime_id, port, settings.MCPNEST_HOSTING_START_TIMEOUT)
    if problem:
        lines = runtime.logs(runtime_id)
        runtime.stop(runtime_id)
        _fail(instance, problem, lines, env)
        return None
    system = platform_access(instance.workspace)
    try:
        server = gateway.server_add(access=system, slug=instance.server_slug, url=f"http://127.0.0.1:{port}/mcp")
        if server.checking:  # with a broker: pin its tools now rather than wait for a worker
            server = gateway.server_check_run(server_id=server.pk) or server
    except (ValidationError, RuleViolation) as exc:
        runtime.stop(runtime_id)
        _fail(instance, f"Could not add it to the gateway: {exc}", [], env)
        return None
    with transaction.atomic():
        updated = Instance.objects.filter(pk=instance.pk, status=Instance.Status.STARTING).update(
            status=Instance.Status.RUNNING, healthy=True, upstream_server=server, updated_at=timezone.now()
        )
    if not updated:  # terminated while it started: its terminate task may have found nothing to stop
        runtime.stop(runtime_id)
        _remove_upstream(instance)
    instance.refresh_from_db()
    return instance


def instance_terminate_run(*, instance_id: int) -> Instance | None:
    """Stop a stopping instance's runtime and remove its upstream; then it is stopped."""
    instance = Instance.objects.select_related("workspace", "image").filter(pk=instance_id).first()
    if instance is None or instance.status != Instance.Status.STOPPING:
        return instance
    if instance.runtime_id:
        runtime_for_settings().stop(instance.runtime_id)
    _remove_upstream(instance)
    Instance.objects.filter(pk=instance.pk, status=Instance.Status.STOPPING).update(
        status=Instance.Status.STOPPED, healthy=False, stopped_at=timezone.now(), updated_at=timezone.now()
    )
    instance.refresh_from_db()
    return instance


def instance_health_sweep() -> int:
    """Mark failed every running instance whose process died, and disable its upstream."""
    runtime = runtime_for_settings()
    failed = 0
    for instance in Instance.objects.filter(status=Instance.Status.RUNNING).select_related("workspace", "image"):
        if instance.runtime_id and runtime.alive(instance.runtime_id):
            continue
        lines = runtime.logs(instance.runtime_id) if instance.runtime_id else []
        if instance.runtime_id:
            runtime.stop(instance.runtime_id)  # whatever is left of its process group
        server = UpstreamServer.objects.filter(workspace=instance.workspace, slug=instance.server_slug).first()
        if server is not None:
            gateway.server_set_enabled(access=platform_access(instance.workspace), server=server, enabled=False)
        _fail(instance, "The server's process exited.", lines, instance.get_env())
        failed += 1
    return failed
