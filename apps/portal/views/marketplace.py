"""From the marketplace into a workspace ("Add to workspace"), whichever way the server runs:

* with a hosted endpoint (a remote), it becomes one of the workspace's upstreams (approved for
  Owners and Admins, a request for Members), through the same service as the Security tab;
* run from a package the hosted catalog holds (``AllowedImage.registry_package``), it goes to
  the Hosted tab's deploy form for that catalog server, which asks for its credentials;
* otherwise it runs on the user's own machine only: we say so, with the command to run it.

Each way counts as an install of the server (``services.curation.install_record``).
"""

from __future__ import annotations

import logging
import re

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.core.http import client_ip
from apps.gateway import services as gateway_services
from apps.hosting.models import AllowedImage
from apps.marketplace import selectors as marketplace
from apps.marketplace.configs import with_values
from apps.marketplace.models import Install, Server
from apps.marketplace.registry_api import package_keys
from apps.marketplace.services.curation import InstallRateLimited, install_record
from apps.portal.views.base import attempt
from apps.portal.views.security import back_to_security
from apps.rbac.access import Access, RoleRequired, workspace_for
from apps.rbac.roles import Capability

logger = logging.getLogger(__name__)


def upstream_slug(name: str) -> str:
    """``io.github.acme/Weather_MCP`` → ``weather-mcp`` (an upstream slug: 1–40 of a-z0-9-)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.rsplit("/", 1)[-1].lower()).strip("-")[:40].strip("-")
    return slug or "server"


def hosted_image_for(document: dict) -> AllowedImage | None:
    """The hosted catalog server that runs this server.json's package, if any."""
    keys = package_keys(document)
    if not keys:
        return None
    return AllowedImage.objects.filter(registry_package__in=keys).order_by("-verified", "slug").first()


def _count_install(request: HttpRequest, server: Server) -> None:
    try:
        install_record(server=server, via=Install.Via.WORKSPACE, visitor_key=f"user:{request.user.pk}")
    except InstallRateLimited:
        # The add itself went through; only its count for trending is refused.
        logger.info("install of %s by user %s not counted: rate limited", server.name, request.user.pk)


def _to_hosted(request: HttpRequest, access: Access, server: Server, image: AllowedImage) -> HttpResponse:
    _count_install(request, server)
    url = reverse("portal:hosted", args=[access.workspace.slug])
    return redirect(f"{url}?deploy={image.slug}#image-{image.slug}")


def _local_only(request: HttpRequest, page: marketplace.ServerPage, back: str) -> HttpResponse:
    name = page.server.name
    if page.configs is None:
        messages.error(request, f"{name} names no package a client can start and no hosted endpoint: nothing to add.")
    else:
        messages.warning(
            request,
            f"{name} runs on your own machine (stdio), and MCPNest cannot host it yet: it is not in the hosted "
            f"catalog. To run it locally, for example with Claude Code: {page.configs.claude_code_command} "
            "(every client's config is under Install).",
        )
    return redirect(f"{back}#install-h")


@login_required
@require_POST
def add_to_workspace(request: HttpRequest, name: str) -> HttpResponse:
    page = marketplace.ServerPage.of(name, versions=1)
    if page is None:
        raise Http404("No such server in the marketplace.")
    server, remote = page.server, page.remote
    back = reverse("marketplace:detail", args=[server.name])
    try:
        access = workspace_for(
            user=request.user, slug=request.POST.get("workspace", ""), capability=Capability.REQUEST_SERVER
        )
    except (Http404, RoleRequired):
        messages.error(request, "Choose one of your workspaces.")
        return redirect(back)
    if remote is None:
        image = hosted_image_for(page.document)
        if image is None:
            return _local_only(request, page, back)
        return _to_hosted(request, access, server, image)
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
    _count_install(request, server)
    where = f"{server.name} as “{added.slug}” in {access.workspace.name}"
    if added.check_kind:  # an Owner's or Admin's: approved by a task
        messages.success(request, f"Added {where}; its tools are being approved.")
    else:
        messages.success(request, f"Requested {where}; an Owner or Admin will review it.")
    return back_to_security(access, "servers")
