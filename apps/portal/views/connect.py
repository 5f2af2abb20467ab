"""Connecting MCP clients: signing in with OAuth, or ready-to-paste configurations with a
gateway token."""

from __future__ import annotations

import ipaddress
import json
import shlex
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from apps.gateway import client_configs
from apps.oauth.selectors import gateway_resource, resource_metadata_url
from apps.portal.views.base import gateway_url, workspace_context, workspace_view
from apps.rbac.access import Access
from apps.rbac.roles import Capability


def oauth_snippets(slug: str, url: str) -> dict[str, str]:
    """For the clients configured with text, what signing in with OAuth takes: the URL and
    no token header. (Keyed for template lookups, which cannot hold a hyphen.)"""
    return {
        "claude_code": f"claude mcp add --transport http {shlex.quote(slug)} {shlex.quote(url)}\n",
        "vscode": json.dumps({"servers": {slug: {"type": "http", "url": url}}}, indent=2) + "\n",
        "cursor": json.dumps({"mcpServers": {slug: {"url": url}}}, indent=2) + "\n",
    }


def reachable_from_the_internet(url: str) -> bool:
    """Whether a cloud-hosted client (Claude, ChatGPT) could call ``url``: HTTPS to a name
    or a public address. A guess from the URL alone, to warn, never to refuse."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "https" or host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return False
    try:
        return ipaddress.ip_address(host).is_global
    except ValueError:  # a name, not an address
        return "." in host


@workspace_view(Capability.USE_GATEWAY, methods=("GET", "HEAD"))
def connect(request: HttpRequest, access: Access) -> HttpResponse:
    slug = access.workspace.slug
    url = gateway_url(request, access.workspace)
    configs = client_configs.all_configs(slug, url)
    # OAuth tokens are bound to the gateway's public URL (RFC 8707), so a client must call
    # exactly that one, whatever host this page was opened on.
    oauth_url = gateway_resource(slug)
    # The workspace's own registry (apps.marketplace.registry_api): what it approved, for
    # clients and tools that read an MCP registry, with the same tokens as the gateway.
    registry_url = request.build_absolute_uri(reverse("workspace-registry-servers", kwargs={"workspace": slug}))
    context = workspace_context(
        access,
        gateway_url=url,
        oauth_url=oauth_url,
        oauth_public=reachable_from_the_internet(oauth_url),
        oauth_snippets=oauth_snippets(slug, oauth_url),
        metadata_url=resource_metadata_url(slug),
        registry_url=registry_url,
        configs=configs,
        placeholder=client_configs.TOKEN_PLACEHOLDER,
    )
    return render(request, "portal/connect.html", context)
