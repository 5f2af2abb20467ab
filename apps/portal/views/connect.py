"""Connecting MCP clients: ready-to-paste client configurations for the gateway."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from apps.gateway import client_configs
from apps.portal.views.base import gateway_url, workspace_context, workspace_view
from apps.rbac.access import Access
from apps.rbac.roles import Capability


@workspace_view(Capability.USE_GATEWAY, methods=("GET", "HEAD"))
def connect(request: HttpRequest, access: Access) -> HttpResponse:
    url = gateway_url(request, access.workspace)
    configs = client_configs.all_configs(access.workspace.slug, url)
    # The workspace's own registry (apps.marketplace.registry_api): what it approved, for
    # clients and tools that read an MCP registry, with the same tokens as the gateway.
    registry_url = request.build_absolute_uri(
        reverse("workspace-registry-servers", kwargs={"workspace": access.workspace.slug})
    )
    context = workspace_context(
        access,
        gateway_url=url,
        registry_url=registry_url,
        configs=configs,
        placeholder=client_configs.TOKEN_PLACEHOLDER,
    )
    return render(request, "portal/connect.html", context)
