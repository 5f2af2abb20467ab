"""The marketplace's pages: open to everybody, signed in or not (nothing here is a secret).

The one write, counting an install when a copy button is pressed, is open to everybody too:
CSRF still applies (the page's script sends the token), and the service deduplicates and
rate-limits per visitor."""

from __future__ import annotations

import json
from dataclasses import replace

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST, require_safe

from apps.core.http import client_ip
from apps.marketplace import search, selectors
from apps.marketplace.configs import CLIENTS
from apps.marketplace.models import Install
from apps.marketplace.services.curation import InstallRateLimited, install_record
from apps.workspaces.selectors import workspaces_with_role

PAGE_SIZE = 24
CLIENT_LABELS = {via.value: via.label for via in Install.Via}
# What a copy button may report; "workspace" is counted where a server is really added.
COPY_VIAS = frozenset(CLIENTS)


@require_safe
def server_list(request: HttpRequest) -> HttpResponse:
    query = search.Search.from_params(request.GET)
    page = Paginator(search.search(query), PAGE_SIZE).get_page(request.GET.get("page"))
    counts = search.facet_counts(query)
    params = request.GET.copy()
    params.pop("page", None)
    # The home sections greet a visitor who has not searched yet (the sort aside).
    home = replace(query, sort="relevance") == search.Search() and page.number == 1
    return render(
        request,
        "marketplace/list.html",
        {
            "query": query,
            "page": page,
            "params": params.urlencode(),
            "transports": [(t, counts[f"transport:{t}"]) for t in search.TRANSPORTS],
            "packages": [(p, counts[f"package:{p}"]) for p in search.PACKAGE_TYPES],
            # Only the categories that hold a server here (the chosen one always).
            "categories": [
                (slug, name, counts[f"category:{slug}"])
                for slug, name in sorted(search.CATEGORY_SLUGS.items(), key=lambda item: item[1].lower())
                if counts[f"category:{slug}"] or query.category == slug
            ],
            "clients": [(client, CLIENT_LABELS[client], counts[f"client:{client}"]) for client in CLIENTS],
            "sorts": [(key, key.capitalize()) for key in search.SORTS],
            "home": home,
            "featured": selectors.featured() if home else None,
            "trending": selectors.trending(limit=8) if home else [],
            "collections": selectors.collections_published() if home else [],
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
    workspaces = (
        list(workspaces_with_role(user=request.user)) if request.user.is_authenticated and (remote or configs) else []
    )
    clients = []
    if configs is not None:
        # id, label, where it goes, text, install link, the install channel it counts as
        clients = [
            (
                "claude-desktop",
                "Claude Desktop",
                "claude_desktop_config.json",
                _pretty(configs.claude_desktop),
                "",
                "claude-desktop",
            ),
            ("claude-code", "Claude Code", "in a terminal", configs.claude_code_command, "", "claude-code"),
            (
                "claude-code-json",
                "Claude Code (.mcp.json)",
                ".mcp.json",
                _pretty(configs.claude_code_json),
                "",
                "claude-code",
            ),
            ("cursor", "Cursor", "~/.cursor/mcp.json", _pretty(configs.cursor), configs.cursor_deeplink, "cursor"),
            ("vscode", "VS Code", ".vscode/mcp.json", _pretty(configs.vscode), configs.vscode_install_url, "vscode"),
            ("windsurf", "Windsurf", "~/.codeium/windsurf/mcp_config.json", _pretty(configs.windsurf), "", "windsurf"),
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
            "readme_html": page.readme_html,
            "collections": page.collections,
        },
    )


def visitor_key(request: HttpRequest) -> str:
    """Who pressed: the signed-in user, or else the client's address (hashed by the service)."""
    if request.user.is_authenticated:
        return f"user:{request.user.pk}"
    return f"ip:{client_ip(request) or 'unknown'}"


@require_POST
def server_install(request: HttpRequest, name: str) -> JsonResponse:
    """A copy button was pressed (the copy itself happened in the browser): count it."""
    server = selectors.server_named(name)
    if server is None:
        return JsonResponse({"error": "No such server in the marketplace."}, status=404)
    via = request.POST.get("via", "")
    if via not in COPY_VIAS:
        return JsonResponse({"error": f"via must be one of: {', '.join(sorted(COPY_VIAS))}."}, status=400)
    try:
        counted = install_record(server=server, via=via, visitor_key=visitor_key(request))
    except InstallRateLimited as exc:
        return JsonResponse({"error": str(exc)}, status=429)
    return JsonResponse({"counted": counted})


@require_safe
def collection_list(request: HttpRequest) -> HttpResponse:
    return render(request, "marketplace/collections.html", {"collections": selectors.collections_published()})


@require_safe
def collection_detail(request: HttpRequest, slug: str) -> HttpResponse:
    collection = selectors.collection_page(slug)
    if collection is None:
        raise Http404("No such collection.")
    return render(request, "marketplace/collection.html", {"collection": collection})


@require_safe
def publisher_detail(request: HttpRequest, namespace: str) -> HttpResponse:
    page = selectors.publisher_page(namespace)
    if page is None:
        raise Http404("No such publisher in the marketplace.")
    return render(
        request, "marketplace/publisher.html", {"page": page, "publisher": page.publisher, "servers": page.servers}
    )
