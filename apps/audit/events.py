"""The governance actions the audit trail knows. One enumeration; values never change."""

from __future__ import annotations

from enum import StrEnum, unique


@unique
class Action(StrEnum):
    # Workspaces
    WORKSPACE_CREATED = "workspace.created"
    WORKSPACE_UPDATED = "workspace.updated"
    WORKSPACE_DELETED = "workspace.deleted"
    PLAN_CHANGED = "workspace.plan_changed"
    # The gateway policy (enforcement mode, deny-by-default, rate limit): one row per change,
    # its metadata ``changes: {field: [before, after]}`` (workspace_set_policy).
    ENFORCEMENT_CHANGED = "workspace.enforcement_changed"
    RATE_LIMIT_CHANGED = "workspace.rate_limit_changed"  # rows written before the policy had one service
    # People
    MEMBER_INVITED = "member.invited"
    INVITATION_REVOKED = "member.invitation_revoked"
    MEMBER_JOINED = "member.joined"
    MEMBER_ADDED = "member.added"
    ROLE_CHANGED = "member.role_changed"
    MEMBER_REMOVED = "member.removed"
    # Gateway tokens
    TOKEN_CREATED = "token.created"  # noqa: S105 - an event name, not a secret
    TOKEN_REVOKED = "token.revoked"  # noqa: S105 - an event name, not a secret
    # Upstream servers and rules (the gateway)
    SERVER_ADDED = "server.added"
    SERVER_REQUESTED = "server.requested"
    SERVER_APPROVED = "server.approved"
    SERVER_UPDATED = "server.updated"
    SERVER_DISABLED = "server.disabled"
    SERVER_REMOVED = "server.removed"
    HEALTH_CHECKED = "server.health_checked"
    ALLOWLIST_CHANGED = "allowlist.changed"
    TOOL_DEFINITION_CHANGED = "tool.definition_changed"
    TOOL_REAPPROVED = "tool.reapproved"
    TOOL_PIN_REJECTED = "tool.rejected"
    # Hosted servers (apps.hosting)
    INSTANCE_REQUESTED = "instance.requested"
    INSTANCE_APPROVED = "instance.approved"
    INSTANCE_REJECTED = "instance.rejected"
    INSTANCE_DEPLOYED = "instance.deployed"
    INSTANCE_FAILED = "instance.failed"
    INSTANCE_TERMINATED = "instance.terminated"

    # The marketplace: not a workspace's, so on the global chain.
    SUBMISSION_CREATED = "submission.created"
    SUBMISSION_APPROVED = "submission.approved"
    SUBMISSION_REJECTED = "submission.rejected"
    PUBLISHER_VERIFIED = "publisher.verified"
    PUBLISHER_UNVERIFIED = "publisher.unverified"
    # Sign-in and the audit trail itself
    API_KEY_CREATED = "auth.api_key_created"
    API_KEY_REVOKED = "auth.api_key_revoked"
    SIGNED_IN = "auth.signed_in"
    SIGN_IN_FAILED = "auth.sign_in_failed"
    # OAuth: MCP clients connected on a member's behalf
    OAUTH_CLIENT_REGISTERED = "oauth.client_registered"
    OAUTH_CONSENTED = "oauth.consented"
    OAUTH_CONSENT_REFUSED = "oauth.consent_refused"
    OAUTH_TOKEN_ISSUED = "oauth.token_issued"  # noqa: S105 - an event name, not a secret
    OAUTH_REFRESH_REUSED = "oauth.refresh_reused"
    OAUTH_CLIENT_REVOKED = "oauth.client_revoked"
    # Single sign-on and SCIM provisioning
    SSO_SIGNED_IN = "sso.signed_in"
    SSO_CONNECTION_CHANGED = "sso.connection_changed"
    SCIM_TOKEN_CREATED = "scim.token_created"  # noqa: S105 - an event name, not a secret
    SCIM_TOKEN_REVOKED = "scim.token_revoked"  # noqa: S105 - an event name, not a secret
    SCIM_USER_PROVISIONED = "scim.user_provisioned"
    SCIM_USER_UPDATED = "scim.user_updated"
    SCIM_USER_DEPROVISIONED = "scim.user_deprovisioned"
    SCIM_GROUP_CHANGED = "scim.group_changed"
    AUDIT_EXPORTED = "audit.exported"
    AUDIT_RETENTION_APPLIED = "audit.retention_applied"

    @property
    def label(self) -> str:
        return self.value.replace(".", " ").replace("_", " ").capitalize()


ACTION_CHOICES = [(action.value, action.value) for action in Action]
