"""/tools/…: the config validator, the scanner, the composer and the generator."""

from __future__ import annotations

from django.urls import path

from apps.configtools import views, views_compose, views_generate

app_name = "configtools"

urlpatterns = [
    path("", views.index, name="index"),
    path("validate/", views.validate, name="validate"),
    path("scan/", views.scan, name="scan"),
    path("compose/", views_compose.compose, name="compose"),
    path("compose/<str:share_id>/", views_compose.composition, name="composition"),
    path("generate/", views_generate.generate, name="generate"),
    path("generate/<int:pk>/", views_generate.generation, name="generation"),
]
