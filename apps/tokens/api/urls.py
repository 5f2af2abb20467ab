"""/api/v1/workspaces/<slug>/tokens/…"""

from __future__ import annotations

from django.urls import path

from apps.tokens.api import views

urlpatterns = [
    path("", views.TokenListView.as_view(), name="token-list"),
    path("<int:pk>/revoke/", views.TokenRevokeView.as_view(), name="token-revoke"),
]
