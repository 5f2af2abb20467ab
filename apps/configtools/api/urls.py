"""/api/v1/tools/…"""

from __future__ import annotations

from django.urls import path

from apps.configtools.api import compose, generate, views

urlpatterns = [
    path("validate/", views.ValidateView.as_view(), name="tools-validate"),
    path("scan/", views.ScanView.as_view(), name="tools-scan"),
    path("compose/", compose.ComposeView.as_view(), name="tools-compose"),
    path("compose/<str:share_id>/", compose.CompositionView.as_view(), name="tools-composition"),
    path("generate/", generate.GenerateView.as_view(), name="tools-generate"),
    path("generations/", generate.GenerationListView.as_view(), name="tools-generations"),
]
