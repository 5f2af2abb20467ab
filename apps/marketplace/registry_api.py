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
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from django.db.models import Q, QuerySet
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe

from apps.marketplace.models import ServerVersion
from apps.marketplace.registry import OFFICIAL

DEFAULT_LIMIT, MAX_LIMIT = 30, 100


def _error(status: int, detail: str) -> JsonResponse:
    # The official API answers errors as RFC 7807 problem details.
    return JsonResponse(
        {"title": "Bad Request" if status == 400 else "Not Found", "status": status, "detail": detail}, status=status
    )


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


@require_safe
def servers(request: HttpRequest) -> JsonResponse:
    params = request.GET
    try:
        limit = int(params.get("limit", DEFAULT_LIMIT))
    except ValueError:
        return _error(400, f"limit must be a whole number from 1 to {MAX_LIMIT}")
    if not 1 <= limit <= MAX_LIMIT:
        return _error(400, f"limit must be a whole number from 1 to {MAX_LIMIT}")
    versions = _served()
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


@require_safe
def server_versions(request: HttpRequest, name: str) -> JsonResponse:
    found = list(_served().filter(server__name=name).order_by("-published_at", "version"))
    if not found:
        return _error(404, f"No server named {name}.")
    return JsonResponse({"servers": [_item(v) for v in found], "metadata": {"count": len(found)}})


@require_safe
def server_version(request: HttpRequest, name: str, version: str) -> JsonResponse:
    versions = _served().filter(server__name=name)
    found = (
        versions.order_by("-is_latest", "-published_at").first()
        if version == "latest"
        else versions.filter(version=version).first()
    )
    if found is None:
        return _error(404, f"No version {version} of {name}.")
    return JsonResponse(_item(found))
