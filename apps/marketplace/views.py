"""The marketplace's pages: open to everybody, signed in or not (nothing here is a secret)."""

from __future__ import annotations

import json

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from apps.marketplace import search, selectors
from apps.workspaces.selectors import workspaces_with_role

PAGE_SIZE = 24


@require_safe
def server_list(request: HttpRequest) -> HttpResponse:
    query = search.Search.from_params(request.GET)
    page = Paginator(search.search(query), PAGE_SIZE).get_page(request.GET.get("page"))
    counts = search.facet_counts(query)
    params = request.GET.copy()
    params.pop("page", None)
    return render(
        request,
        "marketplace/list.html",
        {
            "query": query,
            "page": page,
            "params": params.urlencode(),
            "transports": [(t, counts[f"transport:{t}"]) for t in search.TRANSPORTS],
            "packages": [(p, counts[f"package:{p}"]) for p in search.PACKAGE_TYPES],
        },
    )


def _pretty(value) -> str:
    return json.dumps(value, indent=2)


@require_safe
def server_detail(request: HttpRequest, name: str) -> HttpResponse:
    page = selectors.ServerPage.of(name, versions=50)
    if page is None:
        raise Http404("No such server in the marketplace.")
    configs, remote = page.configs, page.remote
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
            "server": page.server,
            "versions": page.versions,
            "document": page.document,
            "variables": configs.launch.all_variables() if configs else [],
            "clients": clients,
            "no_launch": page.no_launch,
            "remote": remote,
            "workspaces": workspaces,
        },
    )
