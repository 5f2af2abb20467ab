"""Connecting MCP clients: ready-to-paste client configurations for the gateway."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.gateway import client_configs
from apps.portal.views.base import gateway_url, workspace_context, workspace_view
from apps.rbac.access import Access
from apps.rbac.roles import Capability


@workspace_view(Capability.USE_GATEWAY, methods=("GET", "HEAD"))
def connect(request: HttpRequest, access: Access) -> HttpResponse:
    url = gateway_url(request, access.workspace)
    configs = client_configs.all_configs(access.workspace.slug, url)
    context = workspace_context(access, gateway_url=url, configs=configs, placeholder=client_configs.TOKEN_PLACEHOLDER)
    return render(request, "portal/connect.html", context)
