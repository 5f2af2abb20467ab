"""/api/v1/workspaces/<slug>/audit/…"""

from __future__ import annotations

from django.urls import path

from apps.audit.api import views

urlpatterns = [
    path("events/", views.AuditEventListView.as_view(), name="audit-event-list"),
    path("tool-calls/", views.ToolCallListView.as_view(), name="audit-tool-call-list"),
]
