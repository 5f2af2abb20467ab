"""From the marketplace into a workspace: a server with a hosted endpoint becomes one of the
workspace's upstreams (approved for Owners and Admins, a request for Members), through the
same service as the Security tab's form."""

from __future__ import annotations

import re

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.core.http import client_ip
from apps.gateway import services as gateway_services
from apps.marketplace import selectors as marketplace
from apps.marketplace.configs import with_values
from apps.portal.views.base import attempt
from apps.portal.views.security import back_to_security
from apps.rbac.access import RoleRequired, workspace_for
from apps.rbac.roles import Capability


def upstream_slug(name: str) -> str:
    """``io.github.acme/Weather_MCP`` → ``weather-mcp`` (an upstream slug: 1–40 of a-z0-9-)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.rsplit("/", 1)[-1].lower()).strip("-")[:40].strip("-")
    return slug or "server"


@login_required
@require_POST
def add_to_workspace(request: HttpRequest, name: str) -> HttpResponse:
    page = marketplace.ServerPage.of(name, versions=1)
    if page is None or page.remote is None:
        raise Http404("No such server with a hosted endpoint.")
    server, remote = page.server, page.remote
    back = reverse("marketplace:detail", args=[server.name])
    try:
        access = workspace_for(
            user=request.user, slug=request.POST.get("workspace", ""), capability=Capability.REQUEST_SERVER
        )
    except (Http404, RoleRequired):
        messages.error(request, "Choose one of your workspaces.")
        return redirect(back)
    values = {var.name: request.POST.get(f"var_{var.name}", "") for var in remote.variables}
    missing = [var.name for var in remote.variables if not values[var.name].strip()]
    if missing:
        messages.error(request, f"{server.name} needs {', '.join(missing)} for its headers: give a value for each.")
        return redirect(back)
    # Stored encrypted with the upstream, as the Security tab's headers are.
    headers = {header: with_values(value, values) for header, value in remote.headers}
    ok, added = attempt(
        request,
        lambda: gateway_services.server_add(
            access=access,
            slug=upstream_slug(server.name),
            url=remote.url,
            headers=headers,
            ip=client_ip(request),
        ),
    )
    if not ok:
        return redirect(back)
    where = f"{server.name} as “{added.slug}” in {access.workspace.name}"
    if added.check_kind:  # an Owner's or Admin's: approved by a task
        messages.success(request, f"Added {where}; its tools are being approved.")
    else:
        messages.success(request, f"Requested {where}; an Owner or Admin will review it.")
    return back_to_security(access, "servers")
