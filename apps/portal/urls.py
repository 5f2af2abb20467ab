from __future__ import annotations

from django.urls import path

from apps.portal.views import (
    api_keys,
    audit,
    connect,
    connections,
    hosting,
    marketplace,
    members,
    security,
    servers,
    tokens,
    workspaces,
)

app_name = "portal"

urlpatterns = [
    path("", workspaces.home, name="home"),
    path("workspaces/new/", workspaces.workspace_new, name="workspace-new"),
    path("w/<str:slug>/", workspaces.workspace_overview, name="workspace"),
    path("w/<str:slug>/settings/", workspaces.workspace_settings, name="workspace-settings"),
    path("w/<str:slug>/delete/", workspaces.workspace_delete, name="workspace-delete"),
    path("w/<str:slug>/leave/", workspaces.workspace_leave, name="workspace-leave"),
    path("w/<str:slug>/members/", members.members, name="members"),
    path("w/<str:slug>/members/invite/", members.member_invite, name="member-invite"),
    path("w/<str:slug>/members/<int:pk>/role/", members.member_role, name="member-role"),
    path("w/<str:slug>/members/<int:pk>/remove/", members.member_remove, name="member-remove"),
    path("w/<str:slug>/invitations/<int:pk>/revoke/", members.invitation_revoke, name="invitation-revoke"),
    path("w/<str:slug>/tokens/", tokens.tokens, name="tokens"),
    path("w/<str:slug>/tokens/<int:pk>/revoke/", tokens.token_revoke, name="token-revoke"),
    path("w/<str:slug>/clients/", connections.connections, name="connections"),
    path("w/<str:slug>/clients/<int:pk>/disconnect/", connections.connection_disconnect, name="connection-disconnect"),
    path("w/<str:slug>/audit/", audit.audit, name="audit"),
    path("w/<str:slug>/audit/export/", audit.audit_export, name="audit-export"),
    path("w/<str:slug>/calls/", audit.tool_calls, name="calls"),
    path("w/<str:slug>/calls/export/", audit.tool_calls_export, name="calls-export"),
    path("w/<str:slug>/connect/", connect.connect, name="connect"),
    path("w/<str:slug>/security/", security.security, name="security"),
    path("w/<str:slug>/security/policy/", security.security_policy, name="security-policy"),
    path("w/<str:slug>/security/servers/add/", servers.server_add, name="security-server-add"),
    path("w/<str:slug>/security/servers/<int:pk>/approve/", servers.server_approve, name="security-server-approve"),
    path("w/<str:slug>/security/servers/<int:pk>/enabled/", servers.server_enabled, name="security-server-enabled"),
    path("w/<str:slug>/security/servers/<int:pk>/health/", servers.server_health, name="security-server-health"),
    path("w/<str:slug>/security/servers/<int:pk>/remove/", servers.server_remove, name="security-server-remove"),
    path("w/<str:slug>/security/allowlist/<int:pk>/", security.allowlist_edit, name="security-allowlist"),
    path("w/<str:slug>/security/pins/<int:pk>/approve/", security.pin_approve, name="security-pin-approve"),
    path("w/<str:slug>/security/pins/<int:pk>/reject/", security.pin_reject, name="security-pin-reject"),
    path("w/<str:slug>/hosted/", hosting.hosted, name="hosted"),
    path("w/<str:slug>/hosted/deploy/<slug:image_slug>/", hosting.hosted_deploy, name="hosted-deploy"),
    path("w/<str:slug>/hosted/<int:pk>/", hosting.hosted_instance, name="hosted-instance"),
    path("w/<str:slug>/hosted/<int:pk>/approve/", hosting.hosted_approve, name="hosted-approve"),
    path("w/<str:slug>/hosted/<int:pk>/reject/", hosting.hosted_reject, name="hosted-reject"),
    path("w/<str:slug>/hosted/<int:pk>/terminate/", hosting.hosted_terminate, name="hosted-terminate"),
    # Registry names hold a slash: the path converter takes it.
    path("marketplace/add/<path:name>", marketplace.add_to_workspace, name="marketplace-add"),
    path("invitations/<str:secret>/", members.invitation, name="invitation-accept"),
    path("account/api-keys/", api_keys.api_keys, name="api-keys"),
    path("account/api-keys/<int:pk>/revoke/", api_keys.api_key_revoke, name="api-key-revoke"),
]
