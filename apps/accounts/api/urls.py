"""/api/v1/me/…"""

from __future__ import annotations

from django.urls import path

from apps.accounts.api import views

urlpatterns = [
    path("api-keys/", views.ApiKeyListView.as_view(), name="api-key-list"),
    path("api-keys/<int:pk>/revoke/", views.ApiKeyRevokeView.as_view(), name="api-key-revoke"),
]
