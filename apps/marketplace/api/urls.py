"""/api/v1/marketplace/…"""

from __future__ import annotations

from django.urls import path

from apps.marketplace.api import views

urlpatterns = [
    path("servers/", views.ServerListView.as_view(), name="marketplace-server-list"),
    # Registry names hold a slash (namespace/name).
    path("servers/<path:name>/", views.ServerDetailView.as_view(), name="marketplace-server-detail"),
]
