"""/api/v1/ routes, collected from each app's api/ package. Names live in the ``api`` namespace."""

from __future__ import annotations

from django.urls import include, path

app_name = "api"

urlpatterns = [
    path("workspaces/", include("apps.workspaces.api.urls")),
    path("workspaces/<slug:slug>/tokens/", include("apps.tokens.api.urls")),
    path("workspaces/<slug:slug>/audit/", include("apps.audit.api.urls")),
    path("workspaces/<slug:slug>/gateway/", include("apps.gateway.api.urls")),
    path("workspaces/<slug:slug>/hosting/", include("apps.hosting.api.urls")),
    path("me/", include("apps.accounts.api.urls")),
    path("marketplace/", include("apps.marketplace.api.urls")),
    path("tools/", include("apps.configtools.api.urls")),
]
