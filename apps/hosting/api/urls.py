"""/api/v1/workspaces/<slug>/hosting/…: the catalog, the plan's usage, instances and their logs."""

from __future__ import annotations

from django.urls import path

from apps.hosting.api import views

urlpatterns = [
    path("catalog/", views.CatalogView.as_view(), name="hosting-catalog"),
    path("usage/", views.UsageView.as_view(), name="hosting-usage"),
    path("instances/", views.InstanceListView.as_view(), name="hosting-instance-list"),
    path("instances/<int:pk>/", views.InstanceDetailView.as_view(), name="hosting-instance-detail"),
    path("instances/<int:pk>/approve/", views.InstanceApproveView.as_view(), name="hosting-instance-approve"),
    path("instances/<int:pk>/reject/", views.InstanceRejectView.as_view(), name="hosting-instance-reject"),
    path("instances/<int:pk>/terminate/", views.InstanceTerminateView.as_view(), name="hosting-instance-terminate"),
    path("instances/<int:pk>/logs/", views.InstanceLogsView.as_view(), name="hosting-instance-logs"),
]
