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
from datetime import timedelta
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
from apps.hosting import console, tasks
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


def _clean_env(image: AllowedImage, env: dict[str, str]) -> dict[str, str]:
    """``env`` as the instance keeps it: only the variables the image lists, every required
    one given, empty values dropped."""
    env = {(key or "").strip(): value for key, value in env.items()}
    unknown = sorted(set(env) - set(image.env_keys))
    if unknown:
        raise ValidationError(
            {"env": f"{image.slug} takes no {', '.join(unknown)}; it takes: {', '.join(image.env_keys) or 'nothing'}."}
        )
    missing = [key for key in image.required_keys if not (env.get(key) or "").strip()]
    if missing:
        raise ValidationError({"env": f"{image.slug} needs {', '.join(missing)}: give a value for each."})
    return {key: value for key, value in env.items() if value}


def _lock_a_place(workspace_id: int) -> Workspace:
    """Lock the workspace row and check its plan has room for one more running instance
    (two deploys or approvals at once cannot both take the last place)."""
    workspace = Workspace.objects.select_for_update().get(pk=workspace_id)
    limit = PLAN_LIMITS.get(workspace.plan, PLAN_LIMITS[Plan.TEAM])
    used = Instance.objects.filter(workspace=workspace).counting_against_plan().count()
    if used >= limit:
        raise RuleViolation(
            f"The {Plan(workspace.plan).label} plan runs at most {limit} hosted instances per workspace "
            f"and {workspace.slug} has {used}: terminate one first."
        )
    return workspace


def plan_usage(workspace: Workspace) -> tuple[int, int]:
    """(instances counting against the plan, the plan's limit)."""
    used = Instance.objects.filter(workspace=workspace).counting_against_plan().count()
    return used, PLAN_LIMITS.get(workspace.plan, PLAN_LIMITS[Plan.TEAM])


def instance_deploy(
    *,
    access: Access,
    image: AllowedImage,
    profile: str | None = None,
    env: dict[str, str],
    egress: str = AllowedImage.Egress.NONE,
    ip: str | None = None,
) -> Instance:
    """Deploy ``image`` with credentials ``env`` (Owners and Admins: a task starts it on
    commit), or request it (Members: it waits, credentials encrypted, for an Owner's or
    Admin's ``instance_approve``), as ``server_add`` does for remote servers.

    ``env`` may only hold the variables the image lists, and must give every required one.
    ``egress="open"`` lets the container reach the network beyond its workspace (a Member
    may ask for it; the approval grants it).
    """
    access.require(Capability.REQUEST_SERVER)
    if image.unavailable_reason:
        raise RuleViolation(f"{image.name} cannot be deployed here: {image.unavailable_reason}")
    env = _clean_env(image, env)
    if egress not in AllowedImage.Egress.values:
        raise ValidationError({"egress": f"Choose one of {', '.join(AllowedImage.Egress.values)}."})
    profile = profile or image.default_profile
    if profile not in Profile.values:
        raise ValidationError({"profile": f"Choose one of {', '.join(Profile.values)}."})
    deploys = access.can(Capability.MANAGE_SERVERS)
    with transaction.atomic():
        if deploys:
            workspace = _lock_a_place(access.workspace.pk)
            status = Instance.Status.PENDING
        else:
            workspace, status = access.workspace, Instance.Status.REQUESTED
        instance = Instance(
            workspace=workspace, image=image, profile=profile, egress=egress, status=status, created_by=_actor(access)
        )
        if deploys:
            instance.approved_by = _actor(access)
        instance.set_env(env)
        instance.save()
        action = Action.INSTANCE_DEPLOYED if deploys else Action.INSTANCE_REQUESTED
        _audit(instance, _actor(access), action, ip, image=image.slug, profile=profile, egress=egress, env=sorted(env))
        if deploys:
            transaction.on_commit(lambda: tasks.instance_deploy_run.delay(instance.pk))
    instance.refresh_from_db()  # with tasks run in-process, already running or failed
    return instance


def _decide(access: Access, instance: Instance) -> Instance:
    """The requested instance, locked, for an Owner's or Admin's decision."""
    _require_instance(access, instance)
    locked = Instance.objects.select_for_update().select_related("workspace", "image").get(pk=instance.pk)
    if locked.status != Instance.Status.REQUESTED:
        raise RuleViolation(f"Instance #{locked.pk} is {locked.get_status_display().lower()}, not requested.")
    return locked


def instance_approve(*, access: Access, instance: Instance, ip: str | None = None) -> Instance:
    """Approve a Member's request: it is deployed as if the approver had deployed it."""
    with transaction.atomic():
        _lock_a_place(access.workspace.pk)
        locked = _decide(access, instance)
        locked.status = Instance.Status.PENDING
        locked.approved_by = _actor(access)
        locked.save(update_fields=["status", "approved_by", "updated_at"])
        _audit(locked, _actor(access), Action.INSTANCE_APPROVED, ip, image=locked.image.slug, egress=locked.egress)
        # In this order: the console hears "pending" before whatever the task says.
        transaction.on_commit(lambda: console.publish_status(locked.pk))
        transaction.on_commit(lambda: tasks.instance_deploy_run.delay(locked.pk))
    locked.refresh_from_db()
    return locked


def instance_reject(*, access: Access, instance: Instance, ip: str | None = None) -> Instance:
    """Reject a Member's request; its credentials are deleted."""
    with transaction.atomic():
        locked = _decide(access, instance)
        locked.status = Instance.Status.REJECTED
        locked.set_env({})
        locked.save(update_fields=["status", "env_encrypted", "updated_at"])
        _audit(locked, _actor(access), Action.INSTANCE_REJECTED, ip, image=locked.image.slug)
        transaction.on_commit(lambda: console.publish_status(locked.pk))
    return locked


def instance_terminate(*, access: Access, instance: Instance, ip: str | None = None) -> Instance:
    """Stop an instance and take it out of the gateway; a task does it on commit. Twice is once."""
    _require_instance(access, instance)
    with transaction.atomic():
        locked = Instance.objects.select_for_update().select_related("workspace", "image").get(pk=instance.pk)
        if locked.status in (Instance.Status.STOPPING, Instance.Status.STOPPED):
            return locked
        if locked.status == Instance.Status.REQUESTED:
            return instance_reject(access=access, instance=locked, ip=ip)
        if locked.status == Instance.Status.REJECTED:
            return locked
        was = locked.status
        locked.status = Instance.Status.STOPPING
        locked.save(update_fields=["status", "updated_at"])
        _audit(locked, _actor(access), Action.INSTANCE_TERMINATED, ip, status=was)
        transaction.on_commit(lambda: console.publish_status(locked.pk))
        transaction.on_commit(lambda: tasks.instance_terminate_run.delay(locked.pk))
    locked.refresh_from_db()
    return locked


# --- The tasks' steps (no request, no transaction around them) ---------------------------


def _wait_healthy(runtime: Runtime, instance: Instance, runtime_id: str, port: int, env: dict[str, str]) -> str:
    """'' once the bridge answers /healthz 200, else why not. Meanwhile its output goes to
    the deploy console as it comes (masked)."""
    deadline = time.monotonic() + settings.MCPNEST_HOSTING_START_TIMEOUT
    url = f"http://127.0.0.1:{port}/healthz"
    cursor = 0

    def forward() -> None:
        nonlocal cursor
        chunk = runtime.follow(runtime_id, cursor)
        if chunk.lines:
            console.publish(instance.pk, console.log_event([mask(line, env) for line in chunk.lines], chunk.cursor))
        cursor = chunk.cursor

    # /healthz is asked often (a refused loopback connection costs next to nothing); the
    # runtime (a Docker API call each) only a few times a second, for the console's lines
    # and to notice a server that died.
    next_look = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() >= next_look:
            next_look = time.monotonic() + 0.25
            forward()
            if not runtime.alive(runtime_id):
                forward()
                return "The server exited before it was ready."
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:  # our own loopback URL
                if response.status == 200:
                    forward()
                    return ""
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.025)
    return f"The server was not ready after {settings.MCPNEST_HOSTING_START_TIMEOUT:g} seconds."


def _fail(instance: Instance, reason: str, lines: list[str], env: dict[str, str]) -> None:
    """Record a failure: the reason and the last log lines (credentials masked)."""
    error = mask("\n".join([reason, *lines]), env)[-8000:]
    with transaction.atomic():
        Instance.objects.filter(pk=instance.pk).update(
            status=Instance.Status.FAILED, healthy=False, error=error, updated_at=timezone.now()
        )
        _audit(instance, None, Action.INSTANCE_FAILED, reason=reason)
    console.publish_status(instance.pk)


def _remove_upstream(instance: Instance) -> None:
    server = UpstreamServer.objects.filter(workspace=instance.workspace, slug=instance.server_slug).first()
    if server is not None:
        gateway.server_remove(access=platform_access(instance.workspace), server=server)


def _disable_upstream(instance: Instance) -> None:
    server = UpstreamServer.objects.filter(workspace=instance.workspace, slug=instance.server_slug).first()
    if server is not None:
        gateway.server_set_enabled(access=platform_access(instance.workspace), server=server, enabled=False)


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
    console.publish_status(instance.pk)
    runtime = runtime_for_settings()
    env = instance.get_env()
    try:
        runtime_id, port = runtime.start(instance, env)
    except RuntimeStartError as exc:
        _fail(instance, str(exc), [], env)
        return None
    Instance.objects.filter(pk=instance.pk).update(runtime_id=runtime_id, host_port=port)
    problem = _wait_healthy(runtime, instance, runtime_id, port, env)
    if problem:
        lines = runtime.tail(runtime_id).lines
        runtime.stop(runtime_id)
        _fail(instance, problem, lines, env)
        return None
    system = platform_access(instance.workspace)
    try:
        server = gateway.server_add(
            access=system, slug=instance.server_slug, url=f"http://127.0.0.1:{port}/mcp", prefix=instance.tool_prefix
        )
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
    if updated:
        runtime.settle(runtime_id, instance.profile)
    else:  # terminated while it started: its terminate task may have found nothing to stop
        runtime.stop(runtime_id)
        _remove_upstream(instance)
    console.publish_status(instance.pk)
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
    # Its credentials are of no more use: a stopped instance never starts again.
    Instance.objects.filter(pk=instance.pk, status=Instance.Status.STOPPING).update(
        status=Instance.Status.STOPPED,
        healthy=False,
        env_encrypted="",
        stopped_at=timezone.now(),
        updated_at=timezone.now(),
    )
    console.publish_status(instance.pk)
    instance.refresh_from_db()
    return instance


def instance_health_sweep() -> int:
    """Mark failed every running instance whose process died, and disable its upstream."""
    runtime = runtime_for_settings()
    failed = 0
    for instance in Instance.objects.filter(status=Instance.Status.RUNNING).select_related("workspace", "image"):
        if instance.runtime_id and runtime.alive(instance.runtime_id):
            continue
        lines = runtime.tail(instance.runtime_id).lines if instance.runtime_id else []
        if instance.runtime_id:
            runtime.stop(instance.runtime_id)  # whatever is left of its process group
        _disable_upstream(instance)
        _fail(instance, "The server's process exited.", lines, instance.get_env())
        failed += 1
    return failed


def instance_reconcile() -> tuple[int, int]:
    """Make the runtime and the rows agree: a container labelled as an instance that is not
    starting or running is removed (an orphan: its row was terminated, failed or deleted
    while the container lived on), and a running row whose container is gone is failed
    (with its upstream disabled, as the health sweep does). (removed, failed). A row still
    starting after the deploy task's time limit lost its worker (``kill -9``, a crash): it is
    failed and whatever it started stopped. A runtime that cannot list what it runs (the
    process runtime) has only that last check."""
    runtime = runtime_for_settings()
    failed = 0
    cutoff = timezone.now() - timedelta(seconds=tasks.DEPLOY_TIME_LIMIT)
    stale = Instance.objects.filter(status=Instance.Status.STARTING, started_at__lt=cutoff)
    for instance in stale.select_related("workspace", "image"):
        lines = runtime.tail(instance.runtime_id).lines if instance.runtime_id else []
        if instance.runtime_id:
            runtime.stop(instance.runtime_id)
        _remove_upstream(instance)
        _fail(instance, "Its deploy did not finish: the worker running it stopped.", lines, instance.get_env())
        failed += 1
    listed = runtime.listed()
    if listed is None:
        return 0, failed
    live = set(
        Instance.objects.filter(status__in=(Instance.Status.STARTING, Instance.Status.RUNNING)).values_list(
            "pk", "runtime_id"
        )
    )
    live_ids = {pk for pk, _ in live}
    removed = 0
    for runtime_id, instance_id in listed.items():
        if instance_id not in live_ids:
            runtime.stop(runtime_id)
            removed += 1
    gone = Instance.objects.filter(status=Instance.Status.RUNNING).exclude(runtime_id__in=list(listed))
    for instance in gone.select_related("workspace", "image"):
        _disable_upstream(instance)
        _fail(instance, "Its container is gone.", [], instance.get_env())
        failed += 1
    return removed, failed
