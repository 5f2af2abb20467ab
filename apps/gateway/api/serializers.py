"""Upstream servers, allowlists, the gateway policy and tool pins in the API.

Input validation only: the rules live in services. A server's headers are write-only: the
API takes them when a server is added and only ever returns their names.
"""

from __future__ import annotations

from rest_framework import serializers

from apps.core.errors import RuleViolation
from apps.gateway.models import ToolPin, UpstreamServer
from apps.gateway.services import parse_header, url_without_credentials
from apps.rbac.roles import Role


class ServerSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="Where the gateway reaches it; never carries credentials.")
    # A plain string, not an enum: drf-spectacular would name it StatusEnum like the tokens' status.
    status = serializers.CharField(read_only=True, help_text="requested (waiting for approval) or approved.")
    header_names = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Names of the headers sent to the server. Their values are encrypted and never returned.",
    )
    requested_by = serializers.EmailField(source="requested_by.email", read_only=True, allow_null=True)
    approved_by = serializers.EmailField(source="approved_by.email", read_only=True, allow_null=True)
    checking = serializers.BooleanField(
        read_only=True,
        help_text="A check or an approval was asked for and has not finished yet: read the server again later.",
    )
    check_kind = serializers.CharField(
        read_only=True, help_text="What was last asked for: approve or health (empty: nothing yet)."
    )
    check_state = serializers.CharField(
        read_only=True,
        help_text="How it goes: queued, running, done or failed (check_error says why). The upstream's answer "
        "is in health_ok and health_detail.",
    )
    check_requested_by = serializers.EmailField(source="check_requested_by.email", read_only=True, allow_null=True)
    offered_tools = serializers.JSONField(
        read_only=True,
        allow_null=True,
        help_text="A requested server's tools as its last check listed them, for whoever decides; "
        "null once approved (its pins then say what it offers).",
    )

    class Meta:
        model = UpstreamServer
        fields = [
            "id",
            "slug",
            "url",
            "prefix",
            "position",
            "transport",
            "status",
            "enabled",
            "header_names",
            "timeout_seconds",
            "max_concurrency",
            "requested_by",
            "created_at",
            "approved_by",
            "approved_at",
            "checking",
            "check_kind",
            "check_state",
            "check_requested_at",
            "check_requested_by",
            "check_started_at",
            "check_finished_at",
            "check_error",
            "health_checked_at",
            "health_ok",
            "health_detail",
            "offered_tools",
        ]
        read_only_fields = fields

    def get_url(self, obj: UpstreamServer) -> str:
        # New URLs carry no credentials (server_url_check); one saved before that check may.
        return url_without_credentials(obj.url)


class ServerCreateSerializer(serializers.Serializer):
    slug = serializers.CharField(
        max_length=40, help_text="Lowercase letters, digits and hyphens. Allowlist rules name it: slug:tool."
    )
    url = serializers.URLField(
        max_length=500,
        help_text="The server's Streamable HTTP (or legacy SSE) endpoint, without credentials: put those in headers.",
    )
    prefix = serializers.CharField(
        max_length=40, required=False, allow_blank=True, default="", help_text="Put before each of its tool names."
    )
    headers = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        default=dict,
        write_only=True,
        help_text='Sent to the server on every call, e.g. {"Authorization": "Bearer …"}. '
        "Encrypted at rest and never returned; responses list their names only.",
    )
    timeout_seconds = serializers.IntegerField(
        min_value=1, max_value=3600, required=False, allow_null=True, help_text="Omit for the gateway's default."
    )
    max_concurrency = serializers.IntegerField(
        min_value=1, max_value=1000, required=False, allow_null=True, help_text="Omit for the gateway's default."
    )

    def validate_headers(self, headers: dict[str, str]) -> dict[str, str]:
        seen: set[str] = set()
        clean: dict[str, str] = {}
        for number, (name, value) in enumerate(headers.items(), start=1):
            try:
                if ":" in name:
                    raise RuleViolation("no colon in a header name")
                name, value = parse_header(f"{name}:{value}")
            except RuleViolation:
                # Our own words, naming neither the header nor its value: either may be a secret.
                raise serializers.ValidationError(
                    f"Header {number}: a name has no spaces or colons, and a value is one line."
                ) from None
            if name.lower() in seen:
                raise serializers.ValidationError(f"Header {number}: the header {name} is given twice.")
            seen.add(name.lower())
            clean[name] = value
        return clean


class ServerUpdateSerializer(serializers.Serializer):
    """What ``server_update`` changes. A field left out keeps its value; null means the gateway's default."""

    url = serializers.URLField(max_length=500, required=False, help_text="Without credentials.")
    timeout_seconds = serializers.IntegerField(min_value=1, max_value=3600, required=False, allow_null=True)
    max_concurrency = serializers.IntegerField(min_value=1, max_value=1000, required=False, allow_null=True)


class AllowlistSerializer(serializers.Serializer):
    """One member's allowlist. ``id`` is the membership's id, as in the members API."""

    id = serializers.IntegerField(read_only=True)
    email = serializers.EmailField(source="user.email", read_only=True)
    role = serializers.ChoiceField(choices=Role.choices, read_only=True)
    rules = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="server:tool or server:*, sorted."
    )


class SavedAllowlistSerializer(AllowlistSerializer):
    warnings = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Rules saved as written but not checked (their server has no known tools yet).",
    )


class AllowlistUpdateSerializer(serializers.Serializer):
    rules = serializers.ListField(
        child=serializers.CharField(max_length=250),
        allow_empty=True,
        help_text="The member's whole allowlist: server:tool or server:* each, naming a server of the workspace "
        "and a tool it offers (as the upstream or as clients name it). An empty list removes every rule.",
    )


class PinSerializer(serializers.ModelSerializer):
    server = serializers.CharField(source="server.slug", read_only=True, help_text="The server's slug.")
    # A plain string, not an enum: drf-spectacular would name it StatusEnum like the tokens' status.
    status = serializers.CharField(
        source="state",
        read_only=True,
        help_text="approved; pending_change (a changed definition waits, the tool is withheld); new (a tool never "
        "approved waits, withheld); rejected (the pending definition was refused: the tool stays withheld until "
        "the upstream changes it again).",
    )
    approved_by = serializers.EmailField(source="approved_by.email", read_only=True, allow_null=True)
    rejected_by = serializers.EmailField(source="rejected_by.email", read_only=True, allow_null=True)

    class Meta:
        model = ToolPin
        fields = [
            "id",
            "server",
            "tool_name",
            "status",
            "fingerprint",
            "definition",
            "pending_fingerprint",
            "pending_definition",
            "pending_since",
            "approved_by",
            "approved_at",
            "rejected_by",
            "rejected_at",
        ]
        read_only_fields = fields


class PinFilters(serializers.Serializer):
    status = serializers.ChoiceField(choices=ToolPin.State.values, required=False, help_text="Only pins in this state.")
    server = serializers.CharField(required=False, help_text="Only the tools of the server with this slug.")
