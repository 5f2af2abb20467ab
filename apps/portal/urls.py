from __future__ import annotations

from django.urls import path

from apps.portal import views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("workspaces/new/", views.workspace_new, name="workspace-new"),
    path("w/<str:slug>/", views.workspace_overview, name="workspace"),
    path("w/<str:slug>/settings/", views.workspace_settings, name="workspace-settings"),
    path("w/<str:slug>/delete/", views.workspace_delete, name="workspace-delete"),
    path("w/<str:slug>/leave/", views.workspace_leave, name="workspace-leave"),
    path("w/<str:slug>/members/", views.members, name="members"),
    path("w/<str:slug>/members/invite/", views.member_invite, name="member-invite"),
    path("w/<str:slug>/members/<int:pk>/role/", views.member_role, name="member-role"),
    path("w/<str:slug>/members/<int:pk>/remove/", views.member_remove, name="member-remove"),
    path("w/<str:slug>/invitations/<int:pk>/revoke/", views.invitation_revoke, name="invitation-revoke"),
    path("w/<str:slug>/tokens/", views.tokens, name="tokens"),
    path("w/<str:slug>/tokens/<int:pk>/revoke/", views.token_revoke, name="token-revoke"),
    path("w/<str:slug>/audit/", views.audit, name="audit"),
    path("w/<str:slug>/audit/export/", views.audit_export, name="audit-export"),
    path("w/<str:slug>/calls/", views.tool_calls, name="calls"),
    path("w/<str:slug>/calls/export/", views.tool_calls_export, name="calls-export"),
    path("w/<str:slug>/connect/", views.connect, name="connect"),
    path("w/<str:slug>/security/", views.security, name="security"),
    path("w/<str:slug>/security/policy/", views.security_policy, name="security-policy"),
    path("w/<str:slug>/security/servers/add/", views.server_add, name="security-server-add"),
    path("w/<str:slug>/security/servers/<int:pk>/approve/", views.server_approve, name="security-server-approve"),
    path("w/<str:slug>/security/servers/<int:pk>/enabled/", views.server_enabled, name="security-server-enabled"),
    path("w/<str:slug>/security/servers/<int:pk>/health/", views.server_health, name="security-server-health"),
    path("w/<str:slug>/security/servers/<int:pk>/remove/", views.server_remove, name="security-server-remove"),
    path("w/<str:slug>/security/allowlist/<int:pk>/", views.allowlist_edit, name="security-allowlist"),
    path("w/<str:slug>/security/pins/<int:pk>/approve/", views.pin_approve, name="security-pin-approve"),
    path("w/<str:slug>/security/pins/<int:pk>/reject/", views.pin_reject, name="security-pin-reject"),
    path("invitations/<str:secret>/", views.invitation, name="invitation-accept"),
    path("account/api-keys/", views.api_keys, name="api-keys"),
    path("account/api-keys/<int:pk>/revoke/", views.api_key_revoke, name="api-key-revoke"),
]
