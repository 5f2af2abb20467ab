"""/api/v1/marketplace/…"""

from __future__ import annotations

from django.urls import path, re_path

from apps.marketplace.api import views

urlpatterns = [
    path("servers/", views.ServerListView.as_view(), name="marketplace-server-list"),
    path("trending/", views.TrendingView.as_view(), name="marketplace-trending"),
    # Registry names hold exactly one slash (namespace/name): spelt out for the sub-resources,
    # so that a server named ``…/versions`` still reaches its detail below.
    re_path(
        r"^servers/(?P<name>[^/]+/[^/]+)/versions/$", views.ServerVersionsView.as_view(), name="marketplace-versions"
    ),
    re_path(
        r"^servers/(?P<name>[^/]+/[^/]+)/installs/$", views.InstallCreateView.as_view(), name="marketplace-installs"
    ),
    # Registry names hold a slash (namespace/name).
    path("servers/<path:name>/", views.ServerDetailView.as_view(), name="marketplace-server-detail"),
    path("collections/", views.CollectionListView.as_view(), name="marketplace-collection-list"),
    path("collections/<slug:slug>/", views.CollectionDetailView.as_view(), name="marketplace-collection-detail"),
    path("publishers/", views.PublisherListView.as_view(), name="marketplace-publisher-list"),
    path("publishers/<path:namespace>/", views.PublisherDetailView.as_view(), name="marketplace-publisher-detail"),
]
