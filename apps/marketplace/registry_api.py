"""A registry of our own: the official MCP registry's read API, served from the index, so
that MCP clients and tools that speak it can use MCPNest as their registry.

* ``GET /v0.1/servers?limit=&cursor=&updated_since=&search=&version=latest``
* ``GET /v0.1/servers/{name}/versions``
* ``GET /v0.1/servers/{name}/versions/{version}`` (``latest`` for the latest)

Same shapes as the official one: items ``{"server": server.json, "_meta":
{"io.modelcontextprotocol.registry/official": {status, publishedAt, updatedAt, isLatest}}}``,
``metadata.nextCursor`` (opaque) and ``metadata.count``. Pages are keyset-paged on
(name, version), so a page costs the same at any depth. Servers hidden by staff are not
served; deleted and deprecated ones are, with their status, as the official registry does.

A workspace has a registry of its own, the same API under ``/api/registry/<slug>/v0.1/``
for a token of the workspace (``Authorization: Bearer mng_…``): it lists only what the
workspace approved, so a company can point its MCP clients at a governed registry. Those
are the marketplace servers whose hosted endpoint is one of its approved upstreams, and
those whose package is a hosted catalog server it runs (``AllowedImage.registry_package``).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.http import HttpRequest, JsonResponse
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views.decorators.http import require_safe

from apps.gateway.models import UpstreamServer
from apps.hosting.models import AllowedImage, Instance
from apps.marketplace.models import ServerVersion
from apps.marketplace.registry import OFFICIAL
from apps.tokens.selectors import token_verify
from apps.tokens.services import token_touch
from apps.workspaces.models import Membership, Workspace

DEFAULT_LIMIT, MAX_LIMIT = 30, 100


TITLES = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}


def _error(status: int, detail: str) -> JsonResponse:
    # The official API answers errors as RFC 7807 problem details.
    return JsonResponse({"title": TITLES[status], "status": status, "detail": detail}, status=status)


def _when(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _item(version: ServerVersion) -> dict:
    return {
        "server": version.document,
        "_meta": {
            OFFICIAL: {
                "status": version.status,
                "publishedAt": _when(version.published_at),
                "updatedAt": _when(version.updated_at),
                "isLatest": version.is_latest,
            }
        },
    }


def _served() -> QuerySet[ServerVersion]:
    return ServerVersion.objects.filter(server__hidden=False).select_related("server")


def _encode(name: str, version: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([name, version]).encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[str, str]:
    try:
        name, version = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise ValueError("cursor is not one this registry gave out: start again without it") from None
    if not isinstance(name, str) or not isinstance(version, str):
        raise ValueError("cursor is not one this registry gave out: start again without it")
    return name, version


def _list(request: HttpRequest, versions: QuerySet[ServerVersion]) -> JsonResponse:
    """A page of ``versions`` as ``GET …/servers`` asks for it."""
    params = request.GET
    try:
        limit = int(params.get("limit", DEFAULT_LIMIT))
    except ValueError:
        return _error(400, f"limit must be a whole number from 1 to {MAX_LIMIT}")
    if not 1 <= limit <= MAX_LIMIT:
        return _error(400, f"limit must be a whole number from 1 to {MAX_LIMIT}")
    if params.get("updated_since"):
        try:
            since = datetime.fromisoformat(params["updated_since"].replace("Z", "+00:00"))
        except ValueError:
            return _error(400, "updated_since must be an RFC 3339 time, e.g. 2025-12-01T00:00:00Z")
        if since.tzinfo is None:
            return _error(400, "updated_since needs a time zone, e.g. 2025-12-01T00:00:00Z")
        versions = versions.filter(updated_at__gt=since)
    if params.get("search"):
        versions = versions.filter(server__name__icontains=params["search"][:200])
    if params.get("version") == "latest":
        versions = versions.filter(is_latest=True)
    if params.get("cursor"):
        try:
            name, version = _decode(params["cursor"])
        except ValueError as exc:
            return _error(400, str(exc))
        versions = versions.filter(Q(server__name__gt=name) | Q(server__name=name, version__gt=version))
    page = list(versions.order_by("server__name", "version")[:limit])
    metadata: dict = {"count": len(page)}
    if len(page) == limit:
        metadata["nextCursor"] = _encode(page[-1].server.name, page[-1].version)
    return JsonResponse({"servers": [_item(v) for v in page], "metadata": metadata})


def _versions(versions: QuerySet[ServerVersion], name: str) -> JsonResponse:
    found = list(versions.filter(server__name=name).order_by("-published_at", "version"))
    if not found:
        return _error(404, f"No server named {name}.")
    return JsonResponse({"servers": [_item(v) for v in found], "metadata": {"count": len(found)}})


def _version(versions: QuerySet[ServerVersion], name: str, version: str) -> JsonResponse:
    versions = versions.filter(server__name=name)
    found = (
        versions.order_by("-is_latest", "-published_at").first()
        if version == "latest"
        else versions.filter(version=version).first()
    )
    if found is None:
        return _error(404, f"No version {version} of {name}.")
    return JsonResponse(_item(found))


@require_safe
def servers(request: HttpRequest) -> JsonResponse:
    return _list(request, _served())


@require_safe
def server_versions(request: HttpRequest, name: str) -> JsonResponse:
    return _versions(_served(), name)


@require_safe
def server_version(request: HttpRequest, name: str, version: str) -> JsonResponse:
    return _version(_served(), name, version)


# --- a workspace's own registry ------------------------------------------------------------


def package_keys(document: dict[str, Any]) -> set[str]:
    """``{"npm:@scope/name", …}``: a server.json's packages as ``AllowedImage.registry_package``
    names them."""
    return {
        f"{package['registryType']}:{package['identifier']}"
        for package in document.get("packages") or []
        if isinstance(package, dict)
        and isinstance(package.get("registryType"), str)
        and isinstance(package.get("identifier"), str)
    }


def _remote_urls(document: dict[str, Any]) -> set[str]:
    return {
        remote["url"].rstrip("/")
        for remote in document.get("remotes") or []
        if isinstance(remote, dict) and isinstance(remote.get("url"), str)
    }


def approved_server_ids(workspace: Workspace) -> set[int]:
    """The marketplace servers ``workspace`` approved: one of its approved upstreams is the
    server's hosted endpoint, or one of its hosted instances (pending, starting or running)
    runs the server's package. Candidates are found by substring in the server.json (every
    database can), then checked exactly."""
    urls = {
        url.rstrip("/")
        for url in UpstreamServer.objects.filter(
            workspace=workspace, status=UpstreamServer.Status.APPROVED
        ).values_list("url", flat=True)
    }
    packages = set(
        AllowedImage.objects.filter(instances__workspace=workspace, instances__status__in=Instance.ACTIVE)
        .exclude(registry_package="")
        .values_list("registry_package", flat=True)
    )
    if not urls and not packages:
        return set()
    candidates = Q()
    for url in urls:
        candidates |= Q(server__remote=True, document__icontains=url)
    for package in packages:
        candidates |= Q(document__icontains=package.split(":", 1)[-1])
    found = set()
    for server_id, document in ServerVersion.objects.filter(candidates).values_list("server_id", "document"):
        if isinstance(document, dict) and (_remote_urls(document) & urls or package_keys(document) & packages):
            found.add(server_id)
    return found


def _unauthorized(detail: str) -> JsonResponse:
    response = _error(401, detail)
    response["WWW-Authenticate"] = 'Bearer realm="mcpnest-registry"'
    return response


def _workspace_versions(request: HttpRequest, slug: str) -> QuerySet[ServerVersion] | JsonResponse:
    """What the workspace's registry serves, for a usable token of that workspace; else the
    error to answer: 401 without one, 404 for another workspace (or none), whichever it is."""
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        return _unauthorized("Send a gateway token of the workspace: Authorization: Bearer mng_...")
    token = token_verify(raw.strip())  # constant-time; the secret is never logged
    if token is None:
        return _unauthorized("Invalid, expired or revoked token.")
    if token.workspace.slug != slug:
        return _error(404, f"No registry at /api/registry/{slug}/ for this token.")
    if token.user_id is not None and not Membership.objects.filter(workspace=token.workspace, user=token.user).exists():
        return _unauthorized("The token's owner is no longer a member of this workspace.")
    token_touch(token)
    return _served().filter(server_id__in=approved_server_ids(token.workspace))


def _private(response: JsonResponse) -> JsonResponse:
    # One workspace's answer must not be cached for another (nor by a shared cache).
    patch_cache_control(response, private=True, no_store=True)
    patch_vary_headers(response, ["Authorization"])
    return response


@require_safe
def workspace_servers(request: HttpRequest, workspace: str) -> JsonResponse:
    versions = _workspace_versions(request, workspace)
    return _private(versions if isinstance(versions, JsonResponse) else _list(request, versions))


@require_safe
def workspace_server_versions(request: HttpRequest, workspace: str, name: str) -> JsonResponse:
    versions = _workspace_versions(request, workspace)
    return _private(versions if isinstance(versions, JsonResponse) else _versions(versions, name))


@require_safe
def workspace_server_version(request: HttpRequest, workspace: str, name: str, version: str) -> JsonResponse:
    versions = _workspace_versions(request, workspace)
    return _private(versions if isinstance(versions, JsonResponse) else _version(versions, name, version))
