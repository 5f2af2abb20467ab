"""Shapes of workspaces, members and invitations in the API. Input validation only: rules live in services."""

from __future__ import annotations

from rest_framework import serializers

from apps.rbac.roles import Role
from apps.workspaces.models import Enforcement, Invitation, Membership, Plan, Workspace


class WorkspaceSerializer(serializers.ModelSerializer):
    # Set by the views: an annotation on lists, the Access role on one workspace.
    role = serializers.ChoiceField(
        source="user_role", choices=Role.choices, read_only=True, help_text="Your role in this workspace."
    )

    class Meta:
        model = Workspace
        fields = [
            "slug",
            "name",
            "plan",
            "enforcement",
            "deny_by_default",
            "rate_limit_per_minute",
            "audit_retention_days",
            "created_at",
            "role",
        ]
        read_only_fields = fields


class WorkspaceCreateSerializer(serializers.Serializer):
    slug = serializers.CharField(max_length=50, help_text="Lowercase letters, digits and hyphens; never reused.")
    name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    plan = serializers.ChoiceField(choices=Plan.choices, default=Plan.TEAM)


class GatewayPolicySerializer(serializers.Serializer):
    """The gateway policy (``services.GatewayPolicy``). On input each field is optional; all change or none."""

    enforcement = serializers.ChoiceField(
        choices=Enforcement.choices, help_text="off, shadow (record would-be blocks) or enforce."
    )
    deny_by_default = serializers.BooleanField(
        help_text="Members without any allowlist rule may call nothing (otherwise: everything)."
    )
    rate_limit_per_minute = serializers.IntegerField(
        min_value=1, help_text="Gateway requests per minute per client IP."
    )


class WorkspaceUpdateSerializer(GatewayPolicySerializer):
    """Any of the fields; the policy ones need an Admin, name and plan an Owner."""

    name = serializers.CharField(max_length=100, help_text="Owners only.")
    plan = serializers.ChoiceField(choices=Plan.choices, help_text="Owners only.")


class MemberSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "email", "role", "created_at"]
        read_only_fields = fields


class MemberUpdateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class InvitationSerializer(serializers.ModelSerializer):
    # A plain string, not an enum: drf-spectacular would name it StatusEnum like the tokens' status.
    status = serializers.CharField(read_only=True, help_text="pending, accepted, revoked or expired.")
    invited_by = serializers.EmailField(source="invited_by.email", read_only=True, allow_null=True)

    class Meta:
        model = Invitation
        fields = [
            "id",
            "email",
            "role",
            "status",
            "invited_by",
            "created_at",
            "expires_at",
            "accepted_at",
            "revoked_at",
        ]
        read_only_fields = fields


class InvitationCreateSerializer(serializers.Serializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)
    replace = serializers.BooleanField(
        default=False, help_text="Replace a pending invitation for this address (otherwise it is refused)."
    )
