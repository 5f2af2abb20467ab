"""/api/v1/workspaces/<slug>/gateway/…: upstream servers, allowlists, the policy and tool pins."""

from __future__ import annotations

from django.urls import path

from apps.gateway.api import views

urlpatterns = [
    path("servers/", views.ServerListView.as_view(), name="gateway-server-list"),
    path("servers/<int:pk>/", views.ServerDetailView.as_view(), name="gateway-server-detail"),
    path("servers/<int:pk>/approve/", views.ServerApproveView.as_view(), name="gateway-server-approve"),
    path("servers/<int:pk>/reject/", views.ServerRejectView.as_view(), name="gateway-server-reject"),
    path("servers/<int:pk>/enable/", views.ServerEnableView.as_view(), name="gateway-server-enable"),
    path("servers/<int:pk>/disable/", views.ServerDisableView.as_view(), name="gateway-server-disable"),
    path("servers/<int:pk>/health-check/", views.ServerHealthCheckView.as_view(), name="gateway-server-health-check"),
    path("allowlists/", views.AllowlistListView.as_view(), name="gateway-allowlist-list"),
    path("allowlists/<int:pk>/", views.AllowlistDetailView.as_view(), name="gateway-allowlist-detail"),
    path("policy/", views.PolicyView.as_view(), name="gateway-policy"),
    path("pins/", views.PinListView.as_view(), name="gateway-pin-list"),
    path("pins/<int:pk>/approve/", views.PinApproveView.as_view(), name="gateway-pin-approve"),
    path("pins/<int:pk>/reject/", views.PinRejectView.as_view(), name="gateway-pin-reject"),
]
