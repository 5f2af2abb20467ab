"""Upstream servers on the Security tab: add or request, approve, enable, check, remove."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse

from apps.core.http import client_ip
from apps.gateway import selectors
from apps.gateway import services as gateway_services
from apps.gateway.models import UpstreamServer
from apps.portal.forms import ServerForm
from apps.portal.views.base import (
    ACTION_METHODS,
    PAGE_METHODS,
    Confirmation,
    ask,
    attempt,
    confirmed,
    workspace_context,
    workspace_view,
)
from apps.portal.views.security import back_to_security, security_page
from apps.rbac.access import Access
from apps.rbac.roles import Capability


def _server(access: Access, pk: int) -> UpstreamServer:
    return get_object_or_404(UpstreamServer.objects.select_related("workspace"), pk=pk, workspace=access.workspace)


def _ask_check(request: HttpRequest, access: Access, pk: int, ask: Callable[..., UpstreamServer]) -> HttpResponse:
    """Ask for an approval or a check of server ``pk`` (``ask``: the service) and say how it went."""
    server = _server(access, pk)
    ok, asked = attempt(request, lambda: ask(access=access, server=server, ip=client_ip(request)))
    if ok:
        _report_check(request, asked)
    return back_to_security(access, "servers")


def _report_check(request: HttpRequest, server: UpstreamServer, *, added: bool = False) -> None:
    """Say how the approval or check just asked for went: still under way (a worker has it),
    refused when it started, or its outcome (tasks run in-process without a broker)."""
    approval = server.check_kind == UpstreamServer.CheckKind.APPROVE
    done = "added and approved" if added else "approved"
    if server.checking:
        doing = "Approving" if approval else "Checking"
        messages.info(request, f"{doing} server “{server.slug}”; the result appears here shortly.")
    elif server.check_state == UpstreamServer.CheckState.FAILED:
        messages.error(
            request, f"Server “{server.slug}” was not {done if approval else 'checked'}: {server.check_error}"
        )
    elif approval and server.health_ok:
        messages.success(request, f"Server “{server.slug}” {done}: {server.health_detail} pinned.")
    elif approval:
        messages.warning(
            request,
            f"Server “{server.slug}” {done}, but it did not answer ({server.health_detail}). "
            "Its tools wait for approval here once it does.",
        )
    elif server.health_ok:
        messages.success(request, f"Server “{server.slug}” answered: {server.health_detail}.")
    else:
        messages.warning(request, f"Server “{server.slug}” did not answer: {server.health_detail}.")


@workspace_view(Capability.REQUEST_SERVER, methods=ACTION_METHODS)
def server_add(request: HttpRequest, access: Access) -> HttpResponse:
    form = ServerForm(request.POST)
    if form.is_valid():
        ok, server = attempt(
            request,
            lambda: gateway_services.server_add(access=access, **form.cleaned_data, ip=client_ip(request)),
            form=form,
        )
        if ok:
            if server.check_kind:  # an Owner's or Admin's: approved by a task
                _report_check(request, server, added=True)
            else:
                messages.success(request, f"Server “{server.slug}” requested; an Owner or Admin will review it.")
            return back_to_security(access, "servers")
    return security_page(request, access, server_form=form)


@workspace_view(Capability.MANAGE_SERVERS, methods=ACTION_METHODS)
def server_approve(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    """Approve: a task asks the server for its tools and pins them after this request's
    transaction (at once without a broker); the page shows "approving…" until it has run."""
    return _ask_check(request, access, pk, gateway_services.server_approve)


@workspace_view(Capability.MANAGE_SERVERS, methods=ACTION_METHODS)
def server_enabled(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    server = _server(access, pk)
    enabled = request.POST.get("enabled") == "1"
    ok, _ = attempt(
        request,
        lambda: gateway_services.server_set_enabled(
            access=access, server=server, enabled=enabled, ip=client_ip(request)
        ),
    )
    if ok:
        messages.success(request, f"Server “{server.slug}” {'enabled' if enabled else 'disabled'}.")
    return back_to_security(access, "servers")


@workspace_view(Capability.MANAGE_SERVERS, methods=ACTION_METHODS)
def server_health(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    """*Check now*: the check runs as a task after this request's transaction (at once
    without a broker); the page shows "checking…" until it has run."""
    return _ask_check(request, access, pk, gateway_services.server_check_request)


@workspace_view(Capability.MANAGE_SERVERS, methods=PAGE_METHODS)
def server_remove(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    """GET asks for confirmation; a confirmed POST removes."""
    server = _server(access, pk)
    if confirmed(request):
        ok, _ = attempt(
            request, lambda: gateway_services.server_remove(access=access, server=server, ip=client_ip(request))
        )
        if ok:
            messages.success(request, f"Server “{server.slug}” removed.")
        return back_to_security(access, "servers")
    rules = selectors.allowlists(access.workspace)
    naming = sum(1 for user_rules in rules.values() if any(r.split(":", 1)[0] == server.slug for r in user_rules))
    context = workspace_context(access, server=server, members_with_rules=naming)
    confirmation = Confirmation(
        question=f"Remove the server {server.slug}?",
        button=f"Remove {server.slug}",
        cancel=reverse("portal:security", args=[access.workspace.slug]) + "#servers",
    )
    return ask(request, context, confirmation, template="portal/security_server_remove.html")
