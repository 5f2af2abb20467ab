"""The Hosted tab: the catalog of servers the platform runs, deploying (or requesting) one,
deciding on Members' requests, each instance's page with its live console, terminating."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from apps.core.http import client_ip
from apps.hosting import selectors
from apps.hosting import services as hosting_services
from apps.hosting.models import Instance
from apps.portal.forms import DeployForm
from apps.portal.views.base import (
    ACTION_METHODS,
    PAGE_METHODS,
    Confirmation,
    ask,
    attempt,
    confirmed,
    page_of,
    when,
    workspace_context,
    workspace_view,
)
from apps.rbac.access import Access
from apps.rbac.roles import Capability

LOG_LINES = 50  # the instance page's last lines, as the console's snapshot sends them
# What Terminate applies to: a requested one is rejected instead, the others are over.
TERMINABLE = (Instance.Status.PENDING, Instance.Status.STARTING, Instance.Status.RUNNING, Instance.Status.FAILED)


def _instance(access: Access, pk: int) -> Instance:
    """One of the workspace's instances: another workspace's id is unknown here (404)."""
    return get_object_or_404(
        Instance.objects.select_related("workspace", "image", "created_by", "approved_by"),
        pk=pk,
        workspace=access.workspace,
    )


def _watched(access: Access, pk: int) -> Instance:
    """An instance the actor may watch; a Member asking for someone else's gets the same 404."""
    instance = _instance(access, pk)
    if not selectors.can_watch(access=access, instance=instance):
        raise Http404("No such instance.")
    return instance


def _label(instance: Instance) -> str:
    return f"#{instance.pk} ({instance.image.slug})"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no reason was recorded"


def _shown(instance: Instance) -> Instance:
    """The instance with what its row on a page needs: its status badge's class (as
    static/console.js sets it) and whether Terminate applies."""
    if instance.status == Instance.Status.RUNNING:
        instance.status_class = "active" if instance.healthy else "pending"
    elif instance.status == Instance.Status.FAILED:
        instance.status_class = "failed"
    elif instance.status in (Instance.Status.STOPPED, Instance.Status.REJECTED):
        instance.status_class = "revoked"
    else:
        instance.status_class = "pending"
    instance.terminable = instance.status in TERMINABLE
    return instance


def _outcome(instance: Instance) -> str:
    """Which outcome the instance page shows (static/console.js maps a status the same way)."""
    if instance.status == Instance.Status.RUNNING:
        return "healthy" if instance.healthy else "starting"
    if instance.status in (Instance.Status.PENDING, Instance.Status.STARTING):
        return "starting"
    return instance.status


def isolated() -> bool:
    """Only the docker runtime separates a hosted server from the platform (see apps.hosting.runtimes)."""
    return settings.MCPNEST_HOSTING_RUNTIME != "process"


def hosted_page(request: HttpRequest, access: Access, *, refused: DeployForm | None = None) -> HttpResponse:
    """The tab; ``refused`` is a deploy form the service said no to, shown again with its errors."""
    used, limit = hosting_services.plan_usage(access.workspace)
    # ?deploy=<slug>: "Add to workspace" from the marketplace chose this catalog server.
    chosen = request.GET.get("deploy", "")
    cards = []
    for image in selectors.catalog():
        if refused is not None and refused.image.pk == image.pk:
            form = refused
        elif image.unavailable_reason:
            form = None  # listed with its reason, without a form
        else:
            form = DeployForm(image=image)
        cards.append((image, form))
    page = page_of(selectors.instances_for(access=access), request)
    for instance in page.rows:
        _shown(instance)
    context = workspace_context(
        access,
        used=used,
        limit=limit,
        isolated=isolated(),
        cards=cards,
        refused=refused,
        page=page,
        manages=access.can(Capability.MANAGE_SERVERS),
        chosen=next((image for image, _ in cards if image.slug == chosen), None),
    )
    return render(request, "portal/hosting.html", context)


def back_to_hosted(access: Access, anchor: str = "") -> HttpResponse:
    return redirect(reverse("portal:hosted", args=[access.workspace.slug]) + (f"#{anchor}" if anchor else ""))


def to_instance(access: Access, instance: Instance) -> HttpResponse:
    return redirect("portal:hosted-instance", slug=access.workspace.slug, pk=instance.pk)


def _report_start(request: HttpRequest, instance: Instance, done: str) -> None:
    """Say how a deploy just asked for went: tasks run in-process without a broker, so it is
    usually running or failed already; with a worker it is still on its way."""
    if instance.status == Instance.Status.RUNNING and instance.healthy:
        messages.success(request, f"Instance {_label(instance)} {done}: running as {instance.server_slug}.")
    elif instance.status == Instance.Status.FAILED:
        messages.error(request, f"Instance {_label(instance)} {done}, but it failed: {_first_line(instance.error)}")
    else:
        messages.info(request, f"Instance {_label(instance)} {done}; it is starting: follow it below.")


@workspace_view(Capability.REQUEST_SERVER, methods=("GET", "HEAD"))
def hosted(request: HttpRequest, access: Access) -> HttpResponse:
    return hosted_page(request, access)


@workspace_view(Capability.REQUEST_SERVER, methods=ACTION_METHODS)
def hosted_deploy(request: HttpRequest, access: Access, image_slug: str) -> HttpResponse:
    """An Owner or Admin deploys (then watches it start); a Member's deploy is a request."""
    image = get_object_or_404(selectors.catalog(), slug=image_slug)
    form = DeployForm(request.POST, image=image)
    if form.is_valid():

        def deploy() -> Instance:
            try:
                return hosting_services.instance_deploy(
                    access=access,
                    image=image,
                    profile=form.cleaned_data["profile"],
                    env=form.env(),
                    egress=form.egress_choice(),
                    ip=client_ip(request),
                )
            except ValidationError as exc:
                # The credentials have one input each, not one "env" field: the service's
                # message (it names the variables) goes on top of the card's form.
                if not hasattr(exc, "error_dict") or "env" not in exc.error_dict:
                    raise
                errors = dict(exc.error_dict)
                errors[NON_FIELD_ERRORS] = errors.pop("env")
                raise ValidationError(errors) from None

        ok, instance = attempt(request, deploy, form=form)
        if ok:
            if instance.status == Instance.Status.REQUESTED:
                messages.success(
                    request, f"{image.name} requested as instance #{instance.pk}; an Owner or Admin will review it."
                )
                return back_to_hosted(access, "instances")
            _report_start(request, instance, "deployed")
            return to_instance(access, instance)
    return hosted_page(request, access, refused=form)


@workspace_view(Capability.MANAGE_SERVERS, methods=ACTION_METHODS)
def hosted_approve(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    """Approve a Member's request: it deploys, and the approver watches it start."""
    instance = _instance(access, pk)
    ok, approved = attempt(
        request,
        lambda: hosting_services.instance_approve(access=access, instance=instance, ip=client_ip(request)),
    )
    if not ok:
        return back_to_hosted(access, "instances")
    _report_start(request, approved, "approved")
    return to_instance(access, approved)


@workspace_view(Capability.MANAGE_SERVERS, methods=ACTION_METHODS)
def hosted_reject(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    instance = _instance(access, pk)
    ok, _ = attempt(
        request,
        lambda: hosting_services.instance_reject(access=access, instance=instance, ip=client_ip(request)),
    )
    if ok:
        messages.success(request, f"Request {_label(instance)} rejected; the credentials given with it were deleted.")
    return back_to_hosted(access, "instances")


@workspace_view(Capability.REQUEST_SERVER, methods=("GET", "HEAD"))
def hosted_instance(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    """Status, the last log lines (credentials masked) and the live console. Without
    JavaScript the lines and status are as of the page load; static/console.js follows them."""
    instance = _shown(_watched(access, pk))
    logs = selectors.instance_logs(access=access, instance=instance, lines=LOG_LINES)
    context = workspace_context(
        access,
        instance=instance,
        logs=logs,
        settled=instance.status in Instance.SETTLED,
        outcome=_outcome(instance),
        log_lines=LOG_LINES,
        manages=access.can(Capability.MANAGE_SERVERS),
        isolated=isolated(),
        # A Channels route (mcpnest/routing.py), so there is no reverse() for it.
        console_path=f"/ws/w/{access.workspace.slug}/instances/{instance.pk}/console/",
    )
    return render(request, "portal/hosting_instance.html", context)


@workspace_view(Capability.MANAGE_SERVERS, methods=PAGE_METHODS)
def hosted_terminate(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    """GET asks for confirmation; a confirmed POST terminates (a request is rejected)."""
    instance = _instance(access, pk)
    if confirmed(request):
        ok, stopped = attempt(
            request,
            lambda: hosting_services.instance_terminate(access=access, instance=instance, ip=client_ip(request)),
        )
        if ok:
            if stopped.status == Instance.Status.REJECTED:
                messages.success(request, f"Request {_label(stopped)} rejected.")
            elif stopped.status == Instance.Status.STOPPED:
                messages.success(request, f"Instance {_label(stopped)} terminated: its tools left the gateway.")
            else:
                messages.info(request, f"Instance {_label(stopped)} is stopping; its tools leave the gateway shortly.")
        return back_to_hosted(access, "instances")
    confirmation = Confirmation(
        question=f"Terminate instance {_label(instance)}?",
        button=f"Terminate {instance.server_slug}",
        cancel=reverse("portal:hosted-instance", args=[access.workspace.slug, instance.pk]),
    )
    context = workspace_context(access, instance=instance, started=when(instance.started_at))
    return ask(request, context, confirmation, template="portal/hosting_terminate.html")
