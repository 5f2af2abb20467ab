"""The marketplace's pages: open to everybody, signed in or not (nothing here is a secret)."""

from __future__ import annotations

import json

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from apps.marketplace import selectors
from apps.marketplace.configs import NoLaunch, install_configs, launches
from apps.workspaces.selectors import workspaces_with_role

PAGE_SIZE = 24


@require_safe
def server_list(request: HttpRequest) -> HttpResponse:
    query = selectors.Search.from_params(request.GET)
    page = Paginator(selectors.search(query), PAGE_SIZE).get_page(request.GET.get("page"))
    counts = selectors.facet_counts(query)
    params = request.GET.copy()
    params.pop("page", None)
    return render(
        request,
        "marketplace/list.html",
        {
            "query": query,
            "page": page,
            "params": params.urlencode(),
            "transports": [(t, counts[f"transport:{t}"]) for t in selectors.TRANSPORTS],
            "packages": [(p, counts[f"package:{p}"]) for p in selectors.PACKAGE_TYPES],
        },
    )


def _pretty(value) -> str:
    return json.dumps(value, indent=2)


@require_safe
def server_detail(request: HttpRequest, name: str) -> HttpResponse:
    server = selectors.server_named(name)
    if server is None:
        raise Http404("No such server in the marketplace.")
    versions = list(server.versions.order_by("-is_latest", "-published_at")[:50])
    latest = versions[0].document if versions else {}
    try:
        configs = install_configs(latest)
    except NoLaunch as exc:
        configs, no_launch = None, str(exc)
    else:
        no_launch = ""
    remote = next((launch for launch in launches(latest) if launch.remote), None)
    workspaces = list(workspaces_with_role(user=request.user)) if request.user.is_authenticated and remote else []
    clients = []
    if configs is not None:
        clients = [
            ("claude-desktop", "Claude Desktop", "claude_desktop_config.json", _pretty(configs.claude_desktop), ""),
            ("claude-code", "Claude Code", "in a terminal", configs.claude_code_command, ""),
            ("claude-code-json", "Claude Code (.mcp.json)", ".mcp.json", _pretty(configs.claude_code_json), ""),
            ("cursor", "Cursor", "~/.cursor/mcp.json", _pretty(configs.cursor), configs.cursor_deeplink),
            ("vscode", "VS Code", ".vscode/mcp.json", _pretty(configs.vscode), configs.vscode_install_url),
            ("windsurf", "Windsurf", "~/.codeium/windsurf/mcp_config.json", _pretty(configs.windsurf), ""),
        ]
    return render(
        request,
        "marketplace/detail.html",
        {
            "server": server,
            "versions": versions,
            "document": latest,
            "variables": configs.launch.all_variables() if configs else [],
            "clients": clients,
            "no_launch": no_launch,
            "remote": remote,
            "workspaces": workspaces,
        },
    )
