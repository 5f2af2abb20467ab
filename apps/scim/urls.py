"""/scim/v2/ (mounted in mcpnest/urls.py). The route names are django-scim2's own: its
adapters and views reverse them (``scim:users``, ``scim:groups``, …)."""

from __future__ import annotations

from django.urls import re_path
from django_scim import views as scim

from apps.scim import views

app_name = "scim"

urlpatterns = [
    re_path(r"^$", views.NotImplementedView.as_view(), name="root"),
    re_path(r"^\.search$", views.NotImplementedView.as_view(), name="search"),
    re_path(r"^Users/\.search$", views.UserSearchView.as_view(), name="users-search"),
    re_path(r"^Users(?:/(?P<uuid>[^/]+))?$", views.UsersView.as_view(), name="users"),
    re_path(r"^Groups/\.search$", views.GroupSearchView.as_view(), name="groups-search"),
    re_path(r"^Groups(?:/(?P<uuid>[^/]+))?$", views.GroupsView.as_view(), name="groups"),
    re_path(r"^Me$", views.NotImplementedView.as_view(), name="me"),
    re_path(r"^ServiceProviderConfig$", scim.ServiceProviderConfigView.as_view(), name="service-provider-config"),
    re_path(r"^ResourceTypes(?:/(?P<uuid>[^/]+))?$", views.ResourceTypesView.as_view(), name="resource-types"),
    re_path(r"^Schemas(?:/(?P<uuid>[^/]+))?$", views.SchemasView.as_view(), name="schemas"),
    re_path(r"^Bulk$", views.NotImplementedView.as_view(), name="bulk"),
    re_path(r"^.+$", views.NotFoundView.as_view(), name="not-found"),
]
