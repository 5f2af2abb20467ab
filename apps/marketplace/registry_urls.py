"""/v0.1/: the official MCP registry's read API, from our index (``registry_api``); and the
same API for one workspace (``workspace_urlpatterns``, under /api/registry/<slug>/v0.1/)."""

from django.urls import path, re_path

from apps.marketplace import registry_api

urlpatterns = [
    path("servers", registry_api.servers, name="registry-servers"),
    # A name holds a slash (namespace/name; clients send it as %2F, which arrives decoded).
    re_path(r"^servers/(?P<name>.+)/versions$", registry_api.server_versions, name="registry-server-versions"),
    re_path(
        r"^servers/(?P<name>.+)/versions/(?P<version>[^/]+)$",
        registry_api.server_version,
        name="registry-server-version",
    ),
]

workspace_urlpatterns = [
    path("servers", registry_api.workspace_servers, name="workspace-registry-servers"),
    re_path(
        r"^servers/(?P<name>.+)/versions$",
        registry_api.workspace_server_versions,
        name="workspace-registry-server-versions",
    ),
    re_path(
        r"^servers/(?P<name>.+)/versions/(?P<version>[^/]+)$",
        registry_api.workspace_server_version,
        name="workspace-registry-server-version",
    ),
]
