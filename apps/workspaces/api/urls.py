"""/api/v1/workspaces/…: workspaces, their members and invitations."""

from __future__ import annotations

from django.urls import path

from apps.workspaces.api import views

urlpatterns = [
    path("", views.WorkspaceListView.as_view(), name="workspace-list"),
    path("<slug:slug>/", views.WorkspaceDetailView.as_view(), name="workspace-detail"),
    path("<slug:slug>/members/", views.MemberListView.as_view(), name="member-list"),
    path("<slug:slug>/members/<int:pk>/", views.MemberDetailView.as_view(), name="member-detail"),
    path("<slug:slug>/invitations/", views.InvitationListView.as_view(), name="invitation-list"),
    path("<slug:slug>/invitations/<int:pk>/", views.InvitationDetailView.as_view(), name="invitation-detail"),
]
